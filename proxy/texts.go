package proxy

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"

	commonpb "go.temporal.io/api/common/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/blindfold-dev/blindfold/codec"
)

const (
	// sealedTextPrefix starts every sealed string; what follows is base64 (standard alphabet, no padding) of a
	// marshalled envelope payload. The version is that of this string form, not of the envelope inside.
	sealedTextPrefix = "blindfold:text:v1:"
	// textEncoding is the encoding of the payload a text is sealed in.
	textEncoding = "text/plain"
	// refusedTextFormat is what a sealed text that cannot be opened is replaced by: a reason, never its bytes.
	refusedTextFormat = "blindfold: sealed text could not be opened (%s)"
)

// sealedTextEncoding decodes strictly, so each envelope has exactly one sealed form.
var sealedTextEncoding = base64.RawStdEncoding.Strict()

// sealTexts seals, in place, every non-empty string of msg that textFields classifies as sealed (user text such as a
// terminate reason or schedule notes), for target: each becomes sealedTextPrefix + base64 of an envelope that the
// codec made from a text/plain payload, all of msg's texts in one EncodeFor call. Empty strings stay empty. A string
// already in the sealed form is not sealed again but verified: it must open for target.Namespace as a text, or msg
// is refused with a *requestError (KindInvalidRequest, InvalidArgument) naming the field, since forwarding it would
// let a caller plant text that other callers of the namespace then read as sealed. Codec errors are returned wrapped
// (%w), for codecStatus. Only sub-messages whose type can contain a sealed field are visited (textPlanFor). On error
// msg may be partly sealed and must not be forwarded.
func sealTexts(ctx context.Context, c PayloadCodec, target codec.Target, msg proto.Message) error {
	return sealTextsWith(ctx, c, target, msg, sealPlans, nil)
}

// sealTextsAt is sealTexts with each text sealed for its place in msg as st (the request's outbound sites) says,
// in st's namespace for that place: a cancel-external command's reason for its target, like a signal's payloads.
// target's Binding is then unused; its Scope applies to the texts sealed in target.Namespace.
func sealTextsAt(ctx context.Context, c PayloadCodec, target codec.Target, msg proto.Message, st *sites) error {
	return sealTextsWith(ctx, c, target, msg, sealPlans, st)
}

// sealTextsWith is sealTextsAt over the fields plans picks (tests pick others to reach every shape of field). With
// no sites every text is sealed for target.
func sealTextsWith(ctx context.Context, c PayloadCodec, target codec.Target, msg proto.Message, plans *textPlans, st *sites) error {
	pick := func(s string) bool { return s != "" }
	slots := collectTexts(msg, plans, pick)
	if len(slots) == 0 {
		return nil
	}
	if target.Namespace == "" {
		return &requestError{kind: KindInvalidRequest, code: codes.InvalidArgument, msg: "request carries text to seal but no namespace"}
	}
	var plain, sealed []textSlot
	for _, s := range slots {
		if strings.HasPrefix(s.value, sealedTextPrefix) {
			sealed = append(sealed, s)
		} else {
			plain = append(plain, s)
		}
	}
	if err := verifySealedTexts(ctx, c, target.Namespace, sealed); err != nil {
		return err
	}
	if len(plain) == 0 {
		return nil
	}
	// One codec call per target: nearly always one.
	placed := st.textSites(plans, pick)
	type group struct {
		target codec.Target
		slots  []textSlot
	}
	var groups []*group
	for _, s := range plain {
		t := target
		if st != nil {
			at := st.textSite(placed, s)
			t.Binding = at.bind
			if at.ns != "" && at.ns != target.Namespace {
				// Another namespace gets its own default scope: the policy's choice is this one's.
				t.Namespace, t.Scope = at.ns, ""
			}
		}
		var g *group
		for _, h := range groups {
			if h.target == t {
				g = h
				break
			}
		}
		if g == nil {
			g = &group{target: t}
			groups = append(groups, g)
		}
		g.slots = append(g.slots, s)
	}
	for _, g := range groups {
		in := make([]*commonpb.Payload, len(g.slots))
		for i, s := range g.slots {
			in[i] = textPayload(s.value)
		}
		out, err := c.EncodeFor(ctx, g.target, in)
		if err != nil {
			return fmt.Errorf("seal text: %w", err)
		}
		if len(out) != len(in) {
			return fmt.Errorf("seal text: codec returned %d payloads for %d", len(out), len(in))
		}
		for i, s := range g.slots {
			text, err := sealedTextOf(out[i])
			if err != nil {
				return fmt.Errorf("seal text of %s: %w", s.fd.FullName(), err)
			}
			s.set(text)
		}
	}
	return nil
}

// textSites maps the messages that hold texts of msg's parts to the parts' sites (nil without parts).
func (s *sites) textSites(plans *textPlans, pick func(string) bool) map[proto.Message]site {
	if s == nil || len(s.parts) == 0 {
		return nil
	}
	placed := make(map[proto.Message]site)
	for _, p := range s.parts {
		for _, slot := range collectTexts(p.m, plans, pick) {
			placed[slot.m.Interface()] = p.st
		}
	}
	return placed
}

// textSite is the site of a text: its part's, or the default.
func (s *sites) textSite(placed map[proto.Message]site, slot textSlot) site {
	if st, ok := placed[slot.m.Interface()]; ok {
		return st
	}
	return s.def
}

// forText is the site a sealed text is opened at: st, and, at a workflow's or an activity's, also a text a batch job
// sealed, since the server copies a batch operation's reason into every workflow (and activity) the job touches.
// Elsewhere (a schedule, a batch job's own description) a batch job's text opens only where st names that job.
func (st site) forText() site {
	switch st.bind.Kind {
	case codec.BindWorkflow, codec.BindActivity:
		st.batch = true
	}
	return st
}

// textPayload is the payload a text is sealed in.
func textPayload(text string) *commonpb.Payload {
	return &commonpb.Payload{Metadata: map[string][]byte{codec.MetadataEncoding: []byte(textEncoding)}, Data: []byte(text)}
}

// sealedTextOf renders an envelope in the sealed string form. A payload that is not an envelope is an error: a
// codec that returned its input would otherwise forward the text in the clear.
func sealedTextOf(env *commonpb.Payload) (string, error) {
	if !codec.IsEncrypted(env) {
		return "", errors.New("codec returned a payload that is not an envelope")
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(env)
	if err != nil {
		return "", fmt.Errorf("marshal envelope: %w", err)
	}
	return sealedTextPrefix + sealedTextEncoding.EncodeToString(b), nil
}

// parseSealedText returns the envelope of a string in the sealed form. The error says why in a few words and never
// quotes the string.
func parseSealedText(s string) (*commonpb.Payload, error) {
	b, err := sealedTextEncoding.DecodeString(strings.TrimPrefix(s, sealedTextPrefix))
	if err != nil {
		return nil, fmt.Errorf("not base64: %w", codec.ErrMalformed)
	}
	var env commonpb.Payload
	if err := proto.Unmarshal(b, &env); err != nil {
		return nil, fmt.Errorf("not an envelope: %w", codec.ErrMalformed)
	}
	if !codec.IsEncrypted(&env) {
		return nil, fmt.Errorf("not an envelope: %w", codec.ErrMalformed)
	}
	return &env, nil
}

// openedText checks what the codec opened: a text/plain payload of valid UTF-8 (a string field can hold nothing
// else), and returns the text.
func openedText(p *commonpb.Payload) (string, error) {
	if p == nil || codec.IsEncrypted(p) || string(p.GetMetadata()[codec.MetadataEncoding]) != textEncoding {
		return "", fmt.Errorf("not a sealed text: %w", codec.ErrMalformed)
	}
	if !utf8.Valid(p.GetData()) {
		return "", fmt.Errorf("not valid UTF-8: %w", codec.ErrMalformed)
	}
	return string(p.GetData()), nil
}

// verifySealedTexts checks that every already-sealed text of a request opens for namespace as a text. Retryable
// codec errors are returned as they are; any other failure refuses the request, naming the field.
func verifySealedTexts(ctx context.Context, c PayloadCodec, namespace string, slots []textSlot) error {
	for _, s := range slots {
		env, err := parseSealedText(s.value)
		if err == nil {
			_, err = openOne(ctx, c, namespace, env)
		}
		if err == nil {
			continue
		}
		if retryableTextError(err) {
			return fmt.Errorf("verify sealed text of %s: %w", s.fd.FullName(), err)
		}
		return &requestError{kind: KindInvalidRequest, code: codes.InvalidArgument,
			msg: fmt.Sprintf("field %s is in the sealed text form but does not open for this namespace (%s)", s.fd.FullName(), textRefusalReason(err))}
	}
	return nil
}

// openOne opens one envelope as a text, whatever it is bound to.
func openOne(ctx context.Context, c PayloadCodec, namespace string, env *commonpb.Payload) (string, error) {
	return openOneAt(ctx, c, namespace, env, site{unchecked: true})
}

// openOneAt opens one envelope as a text where at accepts its binding.
func openOneAt(ctx context.Context, c PayloadCodec, namespace string, env *commonpb.Payload, at site) (string, error) {
	out, err := decodeAt(ctx, c, namespace, []*commonpb.Payload{env}, func(int) site { return at })
	if err != nil {
		return "", err
	}
	if len(out) != 1 {
		return "", fmt.Errorf("codec returned %d payloads for 1", len(out))
	}
	return openedText(out[0])
}

// openTexts opens, in place, every string of a response msg that is in the sealed form and that textFields classifies
// as sealed or as failure text (the server copies a reset or terminate reason into a failure's message), all in one
// Decode call for namespace (one by one if the batch fails, so one bad text does not cost the others). A text that
// cannot be opened (sealed for another namespace, tampered with, an unknown or destroyed key, not base64...) is
// replaced by a refusal naming the reason, never by any of its bytes, and counted in refused. Retryable errors
// (codec.ErrKeyUnavailable, except a key the service refuses for good, and context errors) are returned instead, and
// msg must then not be returned to the caller. Strings not in the sealed form are left as they are: the server
// writes texts of its own ("Workflow terminated by reset"). With no namespace nothing is opened.
func openTexts(ctx context.Context, c PayloadCodec, namespace string, msg proto.Message) (refused int, err error) {
	return openTextsWith(ctx, c, namespace, msg, openPlans, nil)
}

// openTextsAt is openTexts with each text's binding checked against its place in msg (st, the response's inbound
// sites, forText), and opened in that place's namespace: a text moved to another workflow is refused like a moved
// payload. With no sites nothing is checked (tests only).
func openTextsAt(ctx context.Context, c PayloadCodec, namespace string, msg proto.Message, st *sites) (refused int, err error) {
	return openTextsWith(ctx, c, namespace, msg, openPlans, st)
}

// openTextsWith is openTextsAt over the fields plans picks.
func openTextsWith(ctx context.Context, c PayloadCodec, namespace string, msg proto.Message, plans *textPlans, st *sites) (refused int, err error) {
	pick := func(s string) bool { return strings.HasPrefix(s, sealedTextPrefix) }
	slots := collectTexts(msg, plans, pick)
	if len(slots) == 0 || namespace == "" {
		return 0, nil
	}
	placed := st.textSites(plans, pick)
	type group struct {
		ns     string
		envs   []*commonpb.Payload
		slots  []textSlot
		accept []site
	}
	var groups []*group
	for _, s := range slots {
		env, err := parseSealedText(s.value)
		if err != nil {
			s.set(refusalText(err))
			refused++
			continue
		}
		at, ns := site{unchecked: true}, namespace
		if st != nil {
			at = st.textSite(placed, s).forText()
			if at.ns != "" {
				ns = at.ns
			}
		}
		var g *group
		for _, h := range groups {
			if h.ns == ns {
				g = h
				break
			}
		}
		if g == nil {
			g = &group{ns: ns}
			groups = append(groups, g)
		}
		g.envs, g.slots, g.accept = append(g.envs, env), append(g.slots, s), append(g.accept, at)
	}
	for _, g := range groups {
		if err := mayReadIn(ctx, namespace, g.ns); err != nil {
			for _, s := range g.slots {
				s.set(refusalText(err))
				refused++
			}
			continue
		}
		n, err := openTextGroup(ctx, c, g.ns, g.envs, g.slots, g.accept)
		refused += n
		if err != nil {
			return refused, err
		}
	}
	return refused, nil
}

// openTextGroup opens the texts of one namespace in one Decode call, one by one if the batch fails.
func openTextGroup(ctx context.Context, c PayloadCodec, namespace string, envs []*commonpb.Payload, slots []textSlot, accept []site) (refused int, err error) {
	out, batchErr := decodeAt(ctx, c, namespace, envs, func(i int) site { return accept[i] })
	if batchErr != nil && retryableTextError(batchErr) {
		return refused, fmt.Errorf("open sealed texts: %w", batchErr)
	}
	batched := batchErr == nil && len(out) == len(envs)
	for i, s := range slots {
		var text string
		var err error
		if batched {
			text, err = openedText(out[i])
		} else {
			// One by one: a batch stops at its first bad envelope, which must not cost the others.
			text, err = openOneAt(ctx, c, namespace, envs[i], accept[i])
		}
		if err == nil {
			s.set(text)
			continue
		}
		if retryableTextError(err) {
			return refused, fmt.Errorf("open sealed text of %s: %w", s.fd.FullName(), err)
		}
		s.set(refusalText(err))
		refused++
	}
	return refused, nil
}

// retryableTextError reports whether opening may work later: the key service is down, or the call ended.
func retryableTextError(err error) bool {
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return true
	case errors.Is(err, codec.ErrKeyRejected):
		return false // refused for good, even when it also wraps ErrKeyUnavailable (see codecStatus)
	}
	return errors.Is(err, codec.ErrKeyUnavailable)
}

// refusalText is what replaces a sealed text that cannot be opened.
func refusalText(err error) string { return fmt.Sprintf(refusedTextFormat, textRefusalReason(err)) }

// textRefusalReason names why a text does not open, in fixed words: the codec's error names keys and namespaces, which
// a forged envelope chooses, so it is not quoted.
func textRefusalReason(err error) string {
	for _, r := range []struct {
		err    error
		reason string
	}{
		{codec.ErrWrongNamespace, "sealed for another namespace"},
		{codec.ErrWrongBinding, "sealed for another workflow, schedule or job"},
		{codec.ErrTampered, "tampered with"},
		{codec.ErrTruncated, "truncated"},
		{codec.ErrUnknownKey, "unknown key"},
		{codec.ErrKeyDestroyed, "key destroyed"},
		{codec.ErrKeyRejected, "key rejected"},
		{codec.ErrUnsupportedVersion, "unsupported envelope version"},
		{codec.ErrMalformed, "malformed"},
		{codec.ErrDecodedTooLarge, "decompresses past the limit of one response"},
	} {
		if errors.Is(err, r.err) {
			return r.reason
		}
	}
	return "codec error"
}

// textSlot is one string of a message that the walk found: a string field, or the value of a map entry.
type textSlot struct {
	m     protoreflect.Message
	fd    protoreflect.FieldDescriptor
	mp    protoreflect.Map // nil for a string field
	key   protoreflect.MapKey
	value string
}

// set replaces the string in its place.
func (s textSlot) set(v string) {
	if s.mp != nil {
		s.mp.Set(s.key, protoreflect.ValueOfString(v))
		return
	}
	s.m.Set(s.fd, protoreflect.ValueOfString(v))
}

// textPlan is, per message type, where a walk looks: the type's own string fields of the wanted classes, its maps
// whose string values are of them, and the message fields whose types can (transitively) hold any.
type textPlan struct {
	strings  []protoreflect.FieldDescriptor
	mapTexts []protoreflect.FieldDescriptor
	children []textChild
	// oneofs holds the children that are members of a real oneof, by oneof: one WhichOneof finds the set member
	// instead of a Has per member (a history event's attributes are a oneof of some 60 types).
	oneofs []textOneof
}

type textOneof struct {
	od      protoreflect.OneofDescriptor
	members map[protoreflect.FieldNumber]*textPlan
}

// addChild files a child under its oneof, or with the plain children.
func (p *textPlan) addChild(fd protoreflect.FieldDescriptor, plan *textPlan) {
	od := fd.ContainingOneof()
	if od == nil || od.IsSynthetic() {
		p.children = append(p.children, textChild{fd: fd, plan: plan})
		return
	}
	for i := range p.oneofs {
		if p.oneofs[i].od == od {
			p.oneofs[i].members[fd.Number()] = plan
			return
		}
	}
	p.oneofs = append(p.oneofs, textOneof{od: od, members: map[protoreflect.FieldNumber]*textPlan{fd.Number(): plan}})
}

type textChild struct {
	fd   protoreflect.FieldDescriptor
	plan *textPlan
}

// textPlans caches the plans of one kind of walk. A nil plan means the type holds no wanted text at any depth.
type textPlans struct {
	want  func(textRule) bool
	mu    sync.Mutex
	cache sync.Map // protoreflect.MessageDescriptor -> *textPlan (nil: nothing to do)
}

var (
	sealPlans = &textPlans{want: func(r textRule) bool { return r.class == textSealed }}
	openPlans = &textPlans{want: func(r textRule) bool { return r.class == textSealed || r.class == textFailure }}
)

// planFor returns the plan of md, building on first use the plans of every type reachable from it.
func (tp *textPlans) planFor(md protoreflect.MessageDescriptor) *textPlan {
	if p, ok := tp.cache.Load(md); ok {
		return p.(*textPlan)
	}
	tp.mu.Lock()
	defer tp.mu.Unlock()
	if p, ok := tp.cache.Load(md); ok {
		return p.(*textPlan)
	}
	plans := tp.build(md)
	for d, p := range plans {
		tp.cache.LoadOrStore(d, p)
	}
	return plans[md]
}

// build decides, for every type reachable from root that has no plan yet, whether it can hold a wanted text (a least
// fixpoint, so cycles such as a failure's cause end), then links the plans of those that can.
func (tp *textPlans) build(root protoreflect.MessageDescriptor) map[protoreflect.MessageDescriptor]*textPlan {
	var order []protoreflect.MessageDescriptor
	seen := map[protoreflect.MessageDescriptor]bool{}
	var discover func(protoreflect.MessageDescriptor)
	discover = func(md protoreflect.MessageDescriptor) {
		if seen[md] {
			return
		}
		seen[md] = true
		if _, ok := tp.cache.Load(md); ok {
			return // decided before; its plan is reused as it is
		}
		order = append(order, md)
		for _, child := range messageValueTypes(md) {
			discover(child)
		}
	}
	discover(root)

	holds := map[protoreflect.MessageDescriptor]bool{}
	decided := func(md protoreflect.MessageDescriptor) (bool, bool) {
		if p, ok := tp.cache.Load(md); ok {
			return p.(*textPlan) != nil, true
		}
		return holds[md], false
	}
	for _, md := range order {
		holds[md] = tp.ownTexts(md)
	}
	for changed := true; changed; {
		changed = false
		for _, md := range order {
			if holds[md] {
				continue
			}
			for _, child := range messageValueTypes(md) {
				if h, _ := decided(child); h {
					holds[md], changed = true, true
					break
				}
			}
		}
	}

	plans := make(map[protoreflect.MessageDescriptor]*textPlan, len(order))
	for _, md := range order {
		if holds[md] {
			plans[md] = &textPlan{}
		} else {
			plans[md] = nil
		}
	}
	planOf := func(md protoreflect.MessageDescriptor) *textPlan {
		if p, ok := tp.cache.Load(md); ok {
			return p.(*textPlan)
		}
		return plans[md]
	}
	for _, md := range order {
		p := plans[md]
		if p == nil {
			continue
		}
		fields := md.Fields()
		for i := range fields.Len() {
			fd := fields.Get(i)
			switch {
			case fd.IsMap():
				if fd.MapValue().Kind() == protoreflect.StringKind && tp.want(textRuleOf(fd, "[value]")) {
					p.mapTexts = append(p.mapTexts, fd)
				}
				if vd := fd.MapValue().Message(); vd != nil && planOf(vd) != nil {
					p.children = append(p.children, textChild{fd: fd, plan: planOf(vd)})
				}
			case fd.Kind() == protoreflect.StringKind:
				if !fd.IsList() && tp.want(textRuleOf(fd, "")) {
					p.strings = append(p.strings, fd)
				}
			case fd.Message() != nil:
				if cp := planOf(fd.Message()); cp != nil {
					p.addChild(fd, cp)
				}
			}
		}
	}
	return plans
}

// ownTexts reports whether md itself has a string field (or map of strings) of a wanted class.
func (tp *textPlans) ownTexts(md protoreflect.MessageDescriptor) bool {
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		switch {
		case fd.IsMap():
			if fd.MapValue().Kind() == protoreflect.StringKind && tp.want(textRuleOf(fd, "[value]")) {
				return true
			}
		case fd.Kind() == protoreflect.StringKind && !fd.IsList():
			if tp.want(textRuleOf(fd, "")) {
				return true
			}
		}
	}
	return false
}

// messageValueTypes lists the message types of md's fields, map values included.
func messageValueTypes(md protoreflect.MessageDescriptor) []protoreflect.MessageDescriptor {
	var out []protoreflect.MessageDescriptor
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if fd.IsMap() {
			fd = fd.MapValue()
		}
		if m := fd.Message(); m != nil {
			out = append(out, m)
		}
	}
	return out
}

// collectTexts walks msg along its plans and returns the slots whose string pick accepts. Any values are not
// unpacked: no type packed in Any on this API holds sealed text (TestNoSealedTextInAnyBodies).
func collectTexts(msg proto.Message, tp *textPlans, pick func(string) bool) []textSlot {
	if msg == nil {
		return nil
	}
	m := msg.ProtoReflect()
	if !m.IsValid() {
		return nil
	}
	plan := tp.planFor(m.Descriptor())
	if plan == nil {
		return nil
	}
	var slots []textSlot
	walkTexts(m, plan, pick, &slots)
	return slots
}

func walkTexts(m protoreflect.Message, p *textPlan, pick func(string) bool, slots *[]textSlot) {
	if !m.IsValid() {
		return
	}
	for _, fd := range p.strings {
		if v := m.Get(fd).String(); pick(v) {
			*slots = append(*slots, textSlot{m: m, fd: fd, value: v})
		}
	}
	for _, fd := range p.mapTexts {
		if !m.Has(fd) {
			continue
		}
		mp := m.Get(fd).Map()
		mp.Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
			if s := v.String(); pick(s) {
				*slots = append(*slots, textSlot{m: m, fd: fd, mp: mp, key: k, value: s})
			}
			return true
		})
	}
	for _, c := range p.children {
		if !m.Has(c.fd) {
			continue
		}
		switch {
		case c.fd.IsMap():
			m.Get(c.fd).Map().Range(func(_ protoreflect.MapKey, v protoreflect.Value) bool {
				walkTexts(v.Message(), c.plan, pick, slots)
				return true
			})
		case c.fd.IsList():
			l := m.Get(c.fd).List()
			for i := range l.Len() {
				walkTexts(l.Get(i).Message(), c.plan, pick, slots)
			}
		default:
			walkTexts(m.Get(c.fd).Message(), c.plan, pick, slots)
		}
	}
	for _, o := range p.oneofs {
		if fd := m.WhichOneof(o.od); fd != nil {
			if cp := o.members[fd.Number()]; cp != nil {
				walkTexts(m.Get(fd).Message(), cp, pick, slots)
			}
		}
	}
}
