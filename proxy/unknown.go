package proxy

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	commonpb "go.temporal.io/api/common/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
)

const (
	// maxAnyNesting bounds Any values packed inside Any values. Each level is parsed on its own, so protobuf's own
	// recursion limit does not apply across levels; without a bound a small request could make the walk recurse
	// once per few bytes.
	maxAnyNesting = 32
	// maxUnknownNumbers bounds how many unknown field numbers one error lists.
	maxUnknownNumbers = 8
	// maxQuoted bounds how much of a caller-chosen string (a map key, a type URL) an error quotes.
	maxQuoted = 64
)

// anyFullName is the type whose values the walk unpacks.
var anyFullName = (&anypb.Any{}).ProtoReflect().Descriptor().FullName()

// checkUnknownFields refuses a request that carries protobuf fields the pinned API version does not know, at any depth:
// a newer SDK may put payloads in such fields, and they travel as unknown bytes that the payload visitor cannot see, so
// they would be forwarded unencrypted. Any values are unpacked with the global registry and checked too; an Any of a type
// the registry does not know (or whose value does not parse) is refused as well, since it cannot be inspected.
//
// The error is a *requestError (KindInvalidRequest, InvalidArgument) naming the first offending message's full name,
// the field path from the root (e.g. commands[2].schedule_activity_task_command_attributes.header) and the unknown field
// numbers; it never quotes their bytes. A nil or empty message passes. In the common case (no unknown fields, no Any)
// the walk allocates only for the repeated and map fields of messages it descends into.
func checkUnknownFields(msg proto.Message) error {
	if msg == nil {
		return nil
	}
	m := msg.ProtoReflect()
	if !m.IsValid() {
		return nil
	}
	if f := walkUnknown(m, planFor(m.Descriptor()), 0); f != nil {
		return f.requestError()
	}
	return nil
}

// unknownFinding is what the walk found wrong, and where. The path is collected on the way back up, innermost segment
// first, so that the walk itself never builds paths for messages that turn out to be clean.
type unknownFinding struct {
	name    protoreflect.FullName // the message that has unknown fields, or holds the Any that cannot be opened
	numbers []protowire.Number    // unknown field numbers; empty when reason is set
	more    bool                  // numbers was cut at maxUnknownNumbers
	reason  string                // why an embedded message cannot be inspected, instead of numbers
	path    []string              // innermost first
}

func (f *unknownFinding) at(segment string) *unknownFinding {
	f.path = append(f.path, segment)
	return f
}

func (f *unknownFinding) requestError() *requestError {
	where := "the request itself"
	if len(f.path) > 0 {
		var b strings.Builder
		for i := len(f.path) - 1; i >= 0; i-- {
			seg := f.path[i]
			if b.Len() > 0 && !strings.HasPrefix(seg, "(") { // an Any's content follows its field without a dot
				b.WriteByte('.')
			}
			b.WriteString(seg)
		}
		where = b.String()
	}
	if f.reason != "" {
		return &requestError{kind: KindInvalidRequest, code: codes.InvalidArgument,
			msg: fmt.Sprintf("message %s at %s: %s", f.name, where, f.reason)}
	}
	if len(f.numbers) == 0 {
		return &requestError{kind: KindInvalidRequest, code: codes.InvalidArgument,
			msg: fmt.Sprintf("message %s at %s carries unknown bytes that do not parse as fields", f.name, where)}
	}
	nums := make([]string, len(f.numbers), len(f.numbers)+1)
	for i, n := range f.numbers {
		nums[i] = strconv.Itoa(int(n))
	}
	if f.more {
		nums = append(nums, "...")
	}
	return &requestError{kind: KindInvalidRequest, code: codes.InvalidArgument,
		msg: fmt.Sprintf("message %s at %s carries unknown field(s) %s, which this proxy cannot inspect for plaintext payloads (is the SDK newer than the proxy's Temporal API?)",
			f.name, where, strings.Join(nums, ", "))}
}

// unknownPlan is, per message type, the fields that can hold messages: the only ones the walk needs to look at. Plans
// link to the plans of their fields' types, so the walk looks a plan up once per root message (and per Any), not once
// per message it visits.
type unknownPlan struct {
	fields []planField                    // message fields outside (non-synthetic) oneofs, maps with message values
	oneofs []protoreflect.OneofDescriptor // oneofs with at least one message member
	// members is, by field index, the plan field of each message member of those oneofs.
	members []*planField
	isAny   bool
	hot     hotKind
}

type planField struct {
	fd    protoreflect.FieldDescriptor
	child *unknownPlan // the plan of the field's message type (a map's value type)
}

var (
	unknownPlans  sync.Map   // protoreflect.MessageDescriptor -> *unknownPlan, complete plans only
	unknownPlanMu sync.Mutex // serialises building, so a plan is published only once all it links to is built
)

// planFor returns the plan of md, building it (and every plan it links to) on first use.
func planFor(md protoreflect.MessageDescriptor) *unknownPlan {
	if p, ok := unknownPlans.Load(md); ok {
		return p.(*unknownPlan)
	}
	unknownPlanMu.Lock()
	defer unknownPlanMu.Unlock()
	building := map[protoreflect.MessageDescriptor]*unknownPlan{}
	p := buildPlan(md, building)
	for d, bp := range building {
		unknownPlans.LoadOrStore(d, bp)
	}
	return p
}

// buildPlan builds the plan of md into building, reusing published plans; cycles (a failure's cause is a failure) end
// at the plan under construction.
func buildPlan(md protoreflect.MessageDescriptor, building map[protoreflect.MessageDescriptor]*unknownPlan) *unknownPlan {
	if p, ok := unknownPlans.Load(md); ok {
		return p.(*unknownPlan)
	}
	if p, ok := building[md]; ok {
		return p
	}
	p := &unknownPlan{isAny: md.FullName() == anyFullName, hot: hotKinds[md.FullName()]}
	building[md] = p
	fds := md.Fields()
	for i := range fds.Len() {
		fd := fds.Get(i)
		vd := fd.Message()
		if fd.IsMap() {
			vd = fd.MapValue().Message()
		}
		if vd == nil {
			continue // scalars, enums, maps of scalars: nothing below them can carry unknown fields
		}
		pf := planField{fd: fd, child: buildPlan(vd, building)}
		od := fd.ContainingOneof()
		if od == nil || od.IsSynthetic() {
			p.fields = append(p.fields, pf)
			continue
		}
		if p.members == nil {
			p.members = make([]*planField, fds.Len())
		}
		p.members[i] = &pf
		if !slices.Contains(p.oneofs, od) {
			p.oneofs = append(p.oneofs, od)
		}
	}
	return p
}

// walkUnknown checks m, whose plan is plan, and everything below it. anyNesting counts the Any values m is inside.
func walkUnknown(m protoreflect.Message, plan *unknownPlan, anyNesting int) *unknownFinding {
	if !m.IsValid() {
		return nil // a nil element of a list built in Go: nothing to forward
	}
	if u := m.GetUnknown(); len(u) > 0 {
		nums, more := unknownNumbers(u)
		return &unknownFinding{name: m.Descriptor().FullName(), numbers: nums, more: more}
	}
	if plan.hot != hotNone {
		if f, ok := walkHot(m, plan.hot); ok {
			return f
		}
	}
	if plan.isAny {
		return walkAny(m, anyNesting)
	}
	for i := range plan.fields {
		pf := &plan.fields[i]
		if !m.Has(pf.fd) {
			continue
		}
		if f := walkField(m, pf, anyNesting); f != nil {
			return f
		}
	}
	for _, od := range plan.oneofs {
		// One WhichOneof instead of a Has per member: command and event attributes are oneofs of dozens.
		fd := m.WhichOneof(od)
		if fd == nil {
			continue
		}
		if pf := plan.members[fd.Index()]; pf != nil {
			if f := walkField(m, pf, anyNesting); f != nil {
				return f
			}
		}
	}
	return nil
}

// walkField checks the messages in one populated field of m.
func walkField(m protoreflect.Message, pf *planField, anyNesting int) *unknownFinding {
	fd := pf.fd
	switch {
	case fd.IsMap():
		return walkMap(m.Get(fd).Map(), pf, anyNesting)
	case fd.IsList():
		l := m.Get(fd).List()
		for i := range l.Len() {
			if f := walkUnknown(l.Get(i).Message(), pf.child, anyNesting); f != nil {
				return f.at(string(fd.Name()) + "[" + strconv.Itoa(i) + "]")
			}
		}
		return nil
	default:
		if f := walkUnknown(m.Get(fd).Message(), pf.child, anyNesting); f != nil {
			return f.at(string(fd.Name()))
		}
		return nil
	}
}

// walkMap checks the message values of a map field.
func walkMap(mp protoreflect.Map, pf *planField, anyNesting int) *unknownFinding {
	var found *unknownFinding
	var key protoreflect.MapKey
	mp.Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
		found, key = walkUnknown(v.Message(), pf.child, anyNesting), k
		return found == nil
	})
	if found == nil {
		return nil
	}
	return found.at(string(pf.fd.Name()) + "[" + quoteKey(key) + "]")
}

// quoteKey renders a map key for a path: strings quoted and clipped (they are caller-chosen), other kinds as they are.
func quoteKey(k protoreflect.MapKey) string {
	if s, ok := k.Interface().(string); ok {
		return strconv.Quote(clipText(s))
	}
	return k.String()
}

// walkAny unpacks an Any and checks its content. The content's type is part of the path, as in text format.
func walkAny(m protoreflect.Message, anyNesting int) *unknownFinding {
	a, ok := m.Interface().(*anypb.Any)
	if !ok {
		// A dynamic message of the Any type: copy its two fields.
		fds := m.Descriptor().Fields()
		a = &anypb.Any{TypeUrl: m.Get(fds.ByNumber(1)).String(), Value: m.Get(fds.ByNumber(2)).Bytes()}
	}
	if a.GetTypeUrl() == "" && len(a.GetValue()) == 0 {
		return nil // an empty Any carries nothing
	}
	name := m.Descriptor().FullName()
	if anyNesting >= maxAnyNesting {
		return &unknownFinding{name: name, reason: fmt.Sprintf("embedded messages nest more than %d levels deep", maxAnyNesting)}
	}
	child, err := a.UnmarshalNew()
	if err != nil {
		why := "does not parse"
		if errors.Is(err, protoregistry.NotFound) {
			why = "is not a type this proxy knows"
		}
		return &unknownFinding{name: name, reason: fmt.Sprintf("embedded message of type %q %s, so it cannot be inspected for plaintext payloads", clipText(a.GetTypeUrl()), why)}
	}
	cm := child.ProtoReflect()
	if f := walkUnknown(cm, planFor(cm.Descriptor()), anyNesting+1); f != nil {
		return f.at("(" + string(cm.Descriptor().FullName()) + ")")
	}
	return nil
}

// unknownNumbers lists the distinct field numbers in raw unknown bytes, in order of appearance, at most
// maxUnknownNumbers of them (more reports that there were others). Bytes that do not parse end the list.
func unknownNumbers(b []byte) (nums []protowire.Number, more bool) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			break
		}
		b = b[n:]
		if !slices.Contains(nums, num) {
			if len(nums) == maxUnknownNumbers {
				return nums, true
			}
			nums = append(nums, num)
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			break
		}
		b = b[n:]
	}
	return nums, false
}

// clipText shortens a caller-chosen string before an error quotes it, on a rune boundary.
func clipText(s string) string {
	if len(s) <= maxQuoted {
		return s
	}
	cut := maxQuoted
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// hotKind names the message types that requests carry by the dozen, which the walk checks through their Go fields:
// the generic path allocates for every map it ranges over (and every string key it copies), these do not.
type hotKind uint8

const (
	hotNone hotKind = iota
	hotPayload
	hotPayloads
	hotHeader
	hotMemo
	hotSearchAttributes
)

var hotKinds = map[protoreflect.FullName]hotKind{
	"temporal.api.common.v1.Payload":          hotPayload,
	"temporal.api.common.v1.Payloads":         hotPayloads,
	"temporal.api.common.v1.Header":           hotHeader,
	"temporal.api.common.v1.Memo":             hotMemo,
	"temporal.api.common.v1.SearchAttributes": hotSearchAttributes,
}

// walkHot checks the fields below m (whose own unknown fields were checked) for a hot type. It reports false when m
// is not the generated Go type (a dynamic message), which the generic path then walks.
func walkHot(m protoreflect.Message, kind hotKind) (*unknownFinding, bool) {
	switch x := m.Interface().(type) {
	case *commonpb.Payload:
		if kind == hotPayload {
			return walkPayloadBelow(x), true
		}
	case *commonpb.Payloads:
		if kind == hotPayloads {
			for i, p := range x.GetPayloads() {
				if f := walkPayload(p); f != nil {
					return f.at("payloads[" + strconv.Itoa(i) + "]"), true
				}
			}
			return nil, true
		}
	case *commonpb.Header:
		if kind == hotHeader {
			return walkPayloadMap("fields", x.GetFields()), true
		}
	case *commonpb.Memo:
		if kind == hotMemo {
			return walkPayloadMap("fields", x.GetFields()), true
		}
	case *commonpb.SearchAttributes:
		if kind == hotSearchAttributes {
			return walkPayloadMap("indexed_fields", x.GetIndexedFields()), true
		}
	}
	return nil, false
}

// walkPayloadMap checks the payloads of a map field named name.
func walkPayloadMap(name string, ps map[string]*commonpb.Payload) *unknownFinding {
	for k, p := range ps {
		if f := walkPayload(p); f != nil {
			return f.at(name + "[" + strconv.Quote(clipText(k)) + "]")
		}
	}
	return nil
}

// walkPayload checks one payload (nil passes).
func walkPayload(p *commonpb.Payload) *unknownFinding {
	if p == nil {
		return nil
	}
	if u := p.ProtoReflect().GetUnknown(); len(u) > 0 {
		nums, more := unknownNumbers(u)
		return &unknownFinding{name: p.ProtoReflect().Descriptor().FullName(), numbers: nums, more: more}
	}
	return walkPayloadBelow(p)
}

// walkPayloadBelow checks the messages inside a payload: its external payload details (metadata is a map of bytes).
func walkPayloadBelow(p *commonpb.Payload) *unknownFinding {
	for i, e := range p.GetExternalPayloads() {
		if e == nil {
			continue
		}
		if u := e.ProtoReflect().GetUnknown(); len(u) > 0 {
			nums, more := unknownNumbers(u)
			f := &unknownFinding{name: e.ProtoReflect().Descriptor().FullName(), numbers: nums, more: more}
			return f.at("external_payloads[" + strconv.Itoa(i) + "]")
		}
	}
	return nil
}
