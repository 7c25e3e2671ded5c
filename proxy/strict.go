package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	historypb "go.temporal.io/api/history/v1"
	apiproxy "go.temporal.io/api/proxy"
	workflowpb "go.temporal.io/api/workflow/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/policy"
)

// Strict decode: the backend may write anything it returns, so in a namespace whose payloads are sealed, a payload that
// comes back unsealed, sealed for another namespace, or failing authentication is never handed over as a value. It is
// replaced by a codec.Refusal naming the field and the reason, so that only the workflow task, activity or call that
// needs the value fails; the rest of the response flows, and other workflows are not affected.

// KindRefused counts payloads (not RPCs) that strict decode replaced by a refusal.
const KindRefused ErrorKind = "refused_payload"

// KindPlaintextAdopted counts plaintext payloads from the backend that a namespace's adoption setting accepted.
const KindPlaintextAdopted ErrorKind = "plaintext_adopted"

// Reasons a payload is refused; they quote no payload content.
const (
	reasonPlaintext = "not sealed: the backend returned a plaintext payload in a namespace whose payloads are sealed"
)

// strictness is what one inbound walk does with payloads it meets.
type strictness struct {
	// enforce refuses plaintext payloads (search attributes excepted: the server writes and indexes them).
	enforce bool
	// open decrypts envelopes; false in reject mode, where the SDK opens them itself.
	open bool
	// warnOnly accepts plaintext, counting and logging it (adoption.warn_only).
	warnOnly bool
	// adoptable holds the plaintext payloads recorded before an adoption cut-over, which pass.
	adoptable map[*commonpb.Payload]bool
}

// strictnessFor decides the strictness of a response of a namespace under cp (nil: no policy, payloads sealed).
func strictnessFor(ctx context.Context, cp *callPolicy, msg proto.Message) strictness {
	if cp == nil {
		return strictness{enforce: true, open: true}
	}
	s := strictness{enforce: cp.rules.Plaintext != policy.PlaintextPass, open: cp.rules.Plaintext == policy.PlaintextEncrypt}
	if a := cp.rules.Adoption; a != nil {
		s.warnOnly = a.WarnOnly
		if !a.PlaintextBefore.IsZero() {
			s.adoptable = recordedBefore(ctx, msg, a.PlaintextBefore)
		}
	}
	return s
}

// recordedBefore returns the payloads of msg that the backend recorded before t: those of history events with an
// earlier event time, and the memo of workflows started earlier. Any values are not opened: no history event or
// execution info lives in one.
func recordedBefore(ctx context.Context, msg proto.Message, t time.Time) map[*commonpb.Payload]bool {
	set := map[*commonpb.Payload]bool{}
	add := func(m proto.Message) {
		_ = apiproxy.VisitPayloads(ctx, m, apiproxy.VisitPayloadsOptions{
			SkipSearchAttributes: true,
			Visitor: func(_ *apiproxy.VisitPayloadsContext, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
				for _, p := range ps {
					set[p] = true
				}
				return ps, nil
			},
			WellKnownAnyVisitor: func(*apiproxy.VisitPayloadsContext, *anypb.Any) error { return nil },
		})
	}
	walkMessages(msg.ProtoReflect(), func(m protoreflect.Message) bool {
		switch v := m.Interface().(type) {
		case *historypb.HistoryEvent:
			if et := v.GetEventTime(); et != nil && et.AsTime().Before(t) {
				add(v)
			}
			return false
		case *workflowpb.WorkflowExecutionInfo:
			if st := v.GetStartTime(); st != nil && st.AsTime().Before(t) && v.GetMemo() != nil {
				add(v.GetMemo())
			}
			return false
		}
		return true
	})
	return set
}

// walkMessages calls fn for m and every message below it (Any values unopened) until fn returns false for a subtree.
func walkMessages(m protoreflect.Message, fn func(protoreflect.Message) bool) {
	if !fn(m) {
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap():
			if fd.MapValue().Kind() == protoreflect.MessageKind {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					walkMessages(mv.Message(), fn)
					return true
				})
			}
		case fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind:
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				walkMessages(l.Get(i).Message(), fn)
			}
		default:
			walkMessages(v.Message(), fn)
		}
		return true
	})
}

// openInbound turns the payloads collected from a response into what the caller gets: sealed payloads opened,
// everything strict decode won't hand over replaced by refusals. send[i] is what the codec gets for in[i] (the envelope
// inside an encrypted search attribute), parents[i] the message holding in[i], for naming the field. A payload the
// codec leaves as it is (PayloadCodec's contract for payloads that are not its own) is plaintext. Errors a retry may
// cure (the key provider is down, the call was cancelled) fail the RPC instead: refusing then would fail a workflow
// task for a passing outage.
func (t *transformer) openInbound(ctx context.Context, opener PayloadCodec, namespace string, cp *callPolicy, st strictness, sites *sites, in, send []*commonpb.Payload, isSA []bool, parents []proto.Message) ([]*commonpb.Payload, error) {
	var (
		opened  []*commonpb.Payload
		refused refusals
	)
	if st.open {
		// Payloads are opened in the namespace of their site: nearly always the RPC's; a cross-namespace child's
		// result in the child's.
		opened = make([]*commonpb.Payload, len(send))
		groups := map[string][]int{}
		var order []string
		for i, p := range in {
			ns := sites.of(p).ns
			if ns == "" {
				ns = namespace
			}
			if _, ok := groups[ns]; !ok {
				order = append(order, ns)
			}
			groups[ns] = append(groups[ns], i)
		}
		for _, ns := range order {
			idx := groups[ns]
			if err := mayReadIn(ctx, namespace, ns); err != nil {
				for _, i := range idx {
					opened[i] = refused.refuse(parents[i], in[i], refusalReason(err))
					t.report(namespace, KindRefused)
				}
				continue
			}
			ps := make([]*commonpb.Payload, len(idx))
			for j, i := range idx {
				ps[j] = send[i]
			}
			r, err := decodeAt(ctx, opener, ns, ps, func(j int) site { return sites.of(in[idx[j]]) })
			if err == nil {
				if len(r) != len(ps) {
					return nil, fmt.Errorf("codec returned %d payloads for %d", len(r), len(ps))
				}
				for j, i := range idx {
					opened[i] = r[j]
				}
				continue
			}
			if !refusable(err) {
				return nil, err
			}
			// Some payload in the batch is bad: open them one by one, so each good one still reaches its caller.
			for _, i := range idx {
				r, err := t.openOne(ctx, opener, ns, cp, sites.of(in[i]), send[i])
				switch {
				case err == nil:
					opened[i] = r
				case !refusable(err):
					return nil, err
				default:
					opened[i] = refused.refuse(parents[i], in[i], refusalReason(err))
					t.report(namespace, KindRefused)
				}
			}
		}
	}
	out := make([]*commonpb.Payload, len(send))
	for i, p := range send {
		switch {
		case st.open && opened[i] != p:
			out[i] = opened[i] // opened, or refused above
		case !st.open && codec.IsEncrypted(p):
			out[i] = in[i] // reject mode: the SDK opens it (for a search attribute, the wrapper it sent)
		case isSA[i] || !st.enforce || !cp.sealsInbound(parents[i]):
			out[i] = p
		case st.adoptable[in[i]] || st.warnOnly:
			out[i] = p
			t.report(namespace, KindPlaintextAdopted)
			refused.note(parents[i], in[i], reasonPlaintext)
		default:
			out[i] = refused.refuse(parents[i], in[i], reasonPlaintext)
			t.report(namespace, KindRefused)
		}
	}
	refused.log(ctx, t.logger(), namespace)
	return out, nil
}

// openOne opens one payload at site st in namespace ns, and, for a Nexus site, in each of the policy's Nexus peers
// when it does not open there: the caller's and the handler's namespaces seal what crosses between them.
func (t *transformer) openOne(ctx context.Context, opener PayloadCodec, ns string, cp *callPolicy, st site, p *commonpb.Payload) (*commonpb.Payload, error) {
	r, err := decodeAt(ctx, opener, ns, []*commonpb.Payload{p}, func(int) site { return st })
	// A peer's envelope fails here as tampered (a shared scope name) or as an unknown key (its key id looked up in
	// this namespace's scope).
	if err != nil && st.peers && (errors.Is(err, codec.ErrTampered) || errors.Is(err, codec.ErrUnknownKey)) {
		for _, peer := range cp.nexusPeers() {
			if peer == ns {
				continue
			}
			if pr, perr := decodeAt(ctx, opener, peer, []*commonpb.Payload{p}, func(int) site { return st }); perr == nil {
				r, err = pr, nil
				break
			}
		}
	}
	if err != nil {
		return nil, err
	}
	if len(r) != 1 {
		return nil, fmt.Errorf("codec returned %d payloads for 1", len(r))
	}
	return r[0], nil
}

// budgetDecoder is a codec that caps decompressed bytes across calls (*codec.Codec is one).
type budgetDecoder interface {
	DecodeWithin(ctx context.Context, namespace string, ps []*commonpb.Payload, b *codec.DecodeBudget) ([]*commonpb.Payload, error)
	MaxDecodedTotal() int
}

// responseCodec returns the codec for one response (or request): with a codec that supports it, every Decode through
// it shares one budget of decompressed bytes, so opening a poisoned batch payload by payload, the sealed texts, the
// payloads and every detail of an error status together cannot expand more than one batch could.
func (t *transformer) responseCodec() PayloadCodec {
	bd, ok := t.codec.(budgetDecoder)
	if !ok {
		return t.codec
	}
	return sharedBudget{PayloadCodec: t.codec, bd: bd, b: codec.NewDecodeBudget(int64(bd.MaxDecodedTotal()))}
}

// sharedBudget is a PayloadCodec whose Decode calls share one decompression budget.
type sharedBudget struct {
	PayloadCodec
	bd budgetDecoder
	b  *codec.DecodeBudget
}

func (s sharedBudget) Decode(ctx context.Context, namespace string, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
	return s.bd.DecodeWithin(ctx, namespace, ps, s.b)
}

// DecodeFor is DecodeForWithin the shared budget, when the codec checks bindings.
func (s sharedBudget) DecodeFor(ctx context.Context, e codec.Expect, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
	if fb, ok := s.bd.(interface {
		DecodeForWithin(context.Context, codec.Expect, []*commonpb.Payload, *codec.DecodeBudget) ([]*commonpb.Payload, error)
	}); ok {
		return fb.DecodeForWithin(ctx, e, ps, s.b)
	}
	if bd, ok := s.PayloadCodec.(boundDecoder); ok {
		return bd.DecodeFor(ctx, e, ps)
	}
	return s.bd.DecodeWithin(ctx, e.Namespace, ps, s.b)
}

// openerOr is the walk's opener, or c when the walk has none.
func (w *walk) openerOr(c PayloadCodec) PayloadCodec {
	if w.opener != nil {
		return w.opener
	}
	return c
}

// refusable reports whether err is about the payload itself (forged, tampered, foreign, undecodable, its key gone),
// so the payload is refused, rather than about the proxy's means (key provider down, call cancelled).
func refusable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if errors.Is(err, codec.ErrKeyRejected) {
		return true // for good, unlike ErrKeyUnavailable, which may wrap it
	}
	if errors.Is(err, codec.ErrKeyUnavailable) {
		return false
	}
	for _, s := range []error{codec.ErrTampered, codec.ErrTruncated, codec.ErrMalformed, codec.ErrWrongNamespace,
		codec.ErrUnsupportedVersion, codec.ErrUnknownKey, codec.ErrKeyDestroyed, codec.ErrDecodedTooLarge, codec.ErrWrongBinding} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// refusalReason is the reason a refusal gives for a codec error: the error without its "decode payload 0" prefix.
// Codec errors name keys and namespaces (clipped when read from metadata), never payload content.
func refusalReason(err error) string {
	const prefix = "decode payload 0 "
	s := err.Error()
	if len(s) > len(prefix) && s[:len(prefix)] == prefix {
		s = s[len(prefix):]
	}
	return "not opened: " + s
}

// refusals gathers what one response refused, to log it once (a poisoned history may hold thousands).
type refusals struct {
	count, accepted int
	field, reason   string
}

func (r *refusals) refuse(parent proto.Message, p *commonpb.Payload, reason string) *commonpb.Payload {
	field := fieldName(parent, p)
	r.count++
	if r.field == "" {
		r.field, r.reason = field, reason
	}
	return codec.Refusal(field, reason)
}

func (r *refusals) note(parent proto.Message, p *commonpb.Payload, reason string) {
	r.accepted++
	if r.field == "" {
		r.field, r.reason = fieldName(parent, p), reason
	}
}

func (r *refusals) log(ctx context.Context, log *slog.Logger, namespace string) {
	switch {
	case r.count > 0:
		log.LogAttrs(ctx, slog.LevelWarn, "blindfold proxy refused payloads from the backend",
			slog.String("namespace", namespace), slog.Int("refused", r.count), slog.Int("accepted", r.accepted),
			slog.String("first_field", r.field), slog.String("first_reason", r.reason))
	case r.accepted > 0:
		log.LogAttrs(ctx, slog.LevelWarn, "blindfold proxy accepted plaintext from the backend (adoption.warn_only)",
			slog.String("namespace", namespace), slog.Int("accepted", r.accepted), slog.String("first_field", r.field))
	}
}

// fieldName names the field of parent that holds p, e.g. "WorkflowExecutionSignaledEventAttributes.input[0]" or
// "Memo.fields[note]". Map keys are memo and header names, which are visible to the backend anyway.
func fieldName(parent proto.Message, p *commonpb.Payload) string {
	if parent == nil {
		return "payload"
	}
	m := parent.ProtoReflect()
	name := string(m.Descriptor().Name())
	found := ""
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind {
			return true
		}
		is := func(v protoreflect.Value) bool {
			pm, ok := v.Message().Interface().(*commonpb.Payload)
			return ok && pm == p
		}
		switch {
		case fd.IsMap():
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				if fd.MapValue().Kind() == protoreflect.MessageKind && is(mv) {
					found = fmt.Sprintf("%s[%s]", fd.Name(), k.String())
					return false
				}
				return true
			})
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				if is(l.Get(i)) {
					found = fmt.Sprintf("%s[%d]", fd.Name(), i)
				}
			}
		case is(v):
			found = string(fd.Name())
		default:
			if ps, ok := v.Message().Interface().(*commonpb.Payloads); ok {
				for i, q := range ps.GetPayloads() {
					if q == p {
						found = fmt.Sprintf("%s[%d]", fd.Name(), i)
					}
				}
			}
		}
		return found == ""
	})
	if found == "" {
		return name
	}
	return name + "." + found
}

func (t *transformer) report(namespace string, kind ErrorKind) {
	if t.observer != nil {
		t.observer.Error(namespace, kind)
	}
}

func (t *transformer) logger() *slog.Logger {
	if t.log == nil {
		return slog.Default()
	}
	return t.log
}

// clientEnvelope returns the Blindfold envelope p is or carries (an encrypted search attribute), or nil: a payload
// a client sent already sealed, which must be authenticated before it is forwarded. Otherwise a client could store
// plaintext under an envelope's label, or plant a forged envelope for other workers to choke on.
func clientEnvelope(vc *apiproxy.VisitPayloadsContext, p *commonpb.Payload) *commonpb.Payload {
	// IsSealed, not IsEncrypted: another codec's binary/encrypted payload that only looks like format v2 (2^-16 of
	// random data) is sealed as plaintext, as codec.Encode does, rather than refused as a forgery.
	if codec.IsSealed(p) {
		return p
	}
	if _, sa := vc.Parent.(*commonpb.SearchAttributes); sa {
		return openSearchAttribute(p)
	}
	return nil
}

// verifyEnvelopes opens envelopes a client sent for namespace and drops the plaintext: only their authenticity is
// wanted. One that does not open refuses the request with InvalidArgument naming the field; plaintext from SDKs, the
// common case, never comes here.
func (t *transformer) verifyEnvelopes(ctx context.Context, opener PayloadCodec, namespace string, envs []*commonpb.Payload, parents []proto.Message, at []site) error {
	if namespace == "" {
		return &requestError{kind: KindInvalidRequest, code: codes.InvalidArgument, msg: "request carries payloads but no namespace"}
	}
	// An SDK plugin seals a child's input in the child's namespace, like the proxy: verify each in its site's.
	nsOf := func(i int) string {
		if ns := at[i].ns; ns != "" {
			return ns
		}
		return namespace
	}
	same := true
	for i := range envs {
		same = same && nsOf(i) == namespace
	}
	if same {
		opened, err := decodeAt(ctx, opener, namespace, envs, func(i int) site { return at[i] })
		if err == nil && len(opened) == len(envs) {
			for i := range envs {
				if opened[i] == envs[i] {
					return errForgedEnvelope(fieldName(parents[i], envs[i]), "the codec does not recognise it")
				}
			}
			return nil
		}
		if err == nil {
			return fmt.Errorf("codec returned %d payloads for %d", len(opened), len(envs))
		}
		if !refusable(err) || errors.Is(err, codec.ErrDecodedTooLarge) {
			// Too large is the request's size, not a forgery: ResourceExhausted, and no retry one by one (the
			// budget is spent).
			return err
		}
	}
	// One by one: to name the field of the one that fails, or because they belong to several namespaces.
	for i, env := range envs {
		opened, err := decodeAt(ctx, opener, nsOf(i), []*commonpb.Payload{env}, func(int) site { return at[i] })
		if err != nil {
			if !refusable(err) || errors.Is(err, codec.ErrDecodedTooLarge) {
				return err
			}
			return errForgedEnvelope(fieldName(parents[i], env), refusalReason(err))
		}
		if len(opened) != 1 || opened[0] == env {
			return errForgedEnvelope(fieldName(parents[i], env), "the codec does not recognise it")
		}
	}
	return nil
}

// KindForgedEnvelope: a client sent a payload labelled as a Blindfold envelope that does not open for its namespace.
const KindForgedEnvelope ErrorKind = "forged_envelope"

func errForgedEnvelope(field, reason string) error {
	return &requestError{kind: KindForgedEnvelope, code: codes.InvalidArgument, msg: fmt.Sprintf(
		"%s is labelled as a Blindfold envelope but is not one sealed for this namespace (%s); send plaintext and let the proxy seal it", field, reason)}
}
