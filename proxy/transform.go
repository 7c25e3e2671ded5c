package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	failurepb "go.temporal.io/api/failure/v1"
	historypb "go.temporal.io/api/history/v1"
	apiproxy "go.temporal.io/api/proxy"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/blindfold-dev/blindfold/codec"
)

// encodedFailureMessage is the visible message of a failure whose text was moved into encoded_attributes: the SDKs'
// "encode common attributes" convention.
const encodedFailureMessage = "Encoded failure"

// encodedFailure is the JSON object the SDKs put in Failure.encoded_attributes (go.temporal.io/sdk/converter
// EncodeCommonFailureAttributes), so SDKs configured for it read what the proxy writes and the reverse.
type encodedFailure struct {
	Message    string `json:"message"`
	StackTrace string `json:"stack_trace"`
}

// transformer converts messages in place: failure text and payloads, in the order that keeps both encrypted.
type transformer struct {
	codec    PayloadCodec
	observer Observer
	log      *slog.Logger
	// perField makes encode and decode call the codec once per visited field instead of once per message. Only
	// benchmarks set it, to measure what batching buys.
	perField bool
	// lenient turns off strict decode and client-envelope verification, the behaviour before they existed. Only
	// benchmarks set it, to measure what they cost in the same run.
	lenient bool
}

// direction says which way a message travels, which decides how unknown embedded messages are treated.
type direction int

const (
	outbound direction = iota // request, towards the upstream: fail closed
	inbound                   // response or error detail, towards the caller
)

// walk holds the state of one encode or decode of one message: the Any values unpacked so far, kept so that every pass
// over the message sees the same unpacked children (two-pass batching depends on payload pointer identity).
type walk struct {
	dir  direction
	anys map[*anypb.Any]proto.Message
	// strict is what an inbound walk does with payloads it cannot hand over as values.
	strict strictness
	// opener opens envelopes (to decode them, or to verify what a client sealed) under one decompression budget
	// for the whole response or request (responseCodec); nil: the transformer's codec.
	opener PayloadCodec
	// failure is what an outbound walk does to each failure: encodeFailure, or a policy's variant.
	failure func(*failurepb.Failure) error
	// sites says what each payload is sealed for or may be opened as (format v2 bindings); nil checks nothing.
	sites *sites
}

func (w *walk) unpack(a *anypb.Any) (proto.Message, error) {
	if child, ok := w.anys[a]; ok {
		return child, nil
	}
	child, err := a.UnmarshalNew()
	if err != nil {
		if w.dir == inbound && errors.Is(err, protoregistry.NotFound) {
			// Not a type this proxy knows, so not something it encrypted: pass it through as it is.
			return nil, nil
		}
		return nil, &requestError{kind: KindInvalidRequest, msg: fmt.Sprintf("embedded message of type %q cannot be inspected for payloads: %v", a.GetTypeUrl(), err)}
	}
	if w.anys == nil {
		w.anys = make(map[*anypb.Any]proto.Message)
	}
	w.anys[a] = child
	return child, nil
}

// requestError is an error the proxy raises itself, with the gRPC code and error kind it maps to.
type requestError struct {
	kind ErrorKind
	code codes.Code
	msg  string
}

func (e *requestError) Error() string { return e.msg }

// encodeRequest moves failure text into encoded attributes and then encrypts every payload of msg (search attributes
// excepted) for namespace, in one Codec call. A policy (cp, nil for none) may leave memo, headers or failure text
// alone, encrypt some search attributes, or only check that the SDK encrypted everything (reject mode). On error msg
// may be partly converted and must not be forwarded.
func (t *transformer) encodeRequest(ctx context.Context, namespace string, msg proto.Message) error {
	return t.encodeRequestFor(ctx, namespace, msg, nil)
}

// encodeRequestFor is encodeRequest under a policy decision (nil: none).
func (t *transformer) encodeRequestFor(ctx context.Context, namespace string, msg proto.Message, cp *callPolicy) error {
	// One decompression budget for everything this request makes the proxy open (client envelopes, sealed texts).
	opener := t.responseCodec()
	st, err := outboundSites(msg)
	if err != nil {
		return err
	}
	w := &walk{dir: outbound, failure: encodeFailure, opener: opener, sites: st}
	encode := func(ctx context.Context, namespace string, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
		// The scope the policy chose for this RPC travels with the call, not in ctx, so no keyring can miss it.
		return t.codec.EncodeFor(ctx, codec.Target{Namespace: namespace, Scope: cp.sealScope()}, ps)
	}
	switch {
	case cp.reject():
		w.failure = func(*failurepb.Failure) error { return nil }
		if cp.rules.Encrypt.Failures {
			w.failure = rejectPlaintextFailure
		}
	case !cp.encryptsFailures():
		w.failure = nil
	}
	if cp.sealsText() {
		c := opener
		if cp != nil && cp.tenantErr != nil {
			c = tenantRefusingCodec{cp.tenantErr} // no scope to seal a tenant's text with: refuse if there is any
		}
		if err := sealTextsAt(ctx, c, codec.Target{Namespace: namespace, Scope: cp.sealScope()}, msg, st); err != nil {
			return err
		}
	}
	switch {
	case cp.reject() && cp.rules.Encrypt.Failures:
		if err := rejectPlaintextQueryErrors(msg); err != nil {
			return err
		}
	case cp.encryptsFailures():
		sealQueryErrors(msg)
	}
	if w.failure != nil {
		// Failures first: the attributes this creates are payloads, which the payload pass then encrypts.
		if err := apiproxy.VisitFailures(ctx, msg, apiproxy.VisitFailuresOptions{
			Visitor: func(_ *apiproxy.VisitFailuresContext, f *failurepb.Failure) error { return w.failure(f) },
			WellKnownAnyVisitor: func(vc *apiproxy.VisitFailuresContext, a *anypb.Any) error {
				return w.visitAnyFailures(vc, a)
			},
		}); err != nil {
			return err
		}
		for _, f := range missedFailures(msg) {
			if err := apiproxy.VisitFailures(ctx, f, apiproxy.VisitFailuresOptions{
				Visitor: func(_ *apiproxy.VisitFailuresContext, f *failurepb.Failure) error { return w.failure(f) },
			}); err != nil {
				return err
			}
		}
	}
	if cp.encryptsFailures() {
		// Legacy Nexus failures hide a whole failure in JSON bytes: seal it, with its payloads, before the main pass.
		sealPayloads := func(ctx context.Context, m proto.Message) error {
			return t.transformPayloads(ctx, &walk{dir: outbound, failure: w.failure, opener: opener, sites: st}, namespace, m, encode, cp)
		}
		if err := sealLegacyNexusFailures(ctx, msg, encodeFailure, sealPayloads); err != nil {
			return err
		}
	} else if cp.reject() && cp.rules.Encrypt.Failures {
		for _, f := range legacyNexusFailures(msg) {
			for ; f != nil; f = f.GetCause() {
				if (f.GetMessage() != "" && f.GetMessage() != encodedFailureMessage) || f.GetStackTrace() != "" {
					return errRejectPlaintext("a Nexus failure message or stack trace")
				}
			}
		}
	}
	return t.transformPayloads(ctx, w, namespace, msg, encode, cp)
}

// decodeResponse decrypts every payload of msg for namespace in one Codec call (under a policy, encrypted search
// attributes too), then restores failure text from the (now decrypted) encoded attributes and clears them.
// Without the request, bindings are not checked: only tests call it.
func (t *transformer) decodeResponse(ctx context.Context, namespace string, msg proto.Message) error {
	return t.decodeResponseFor(ctx, namespace, nil, msg, nil)
}

// decodeResponseFor is decodeResponse under a policy decision (nil: none).
// req is the request msg answers: what the payloads' bindings are checked against.
func (t *transformer) decodeResponseFor(ctx context.Context, namespace string, req, msg proto.Message, cp *callPolicy) error {
	return t.decodeResponseWith(ctx, namespace, req, msg, cp, t.responseCodec())
}

// decodeResponseWith is decodeResponseFor opening everything through opener, whose decompression budget it shares
// with the other parts of the same response (the details of an error status).
func (t *transformer) decodeResponseWith(ctx context.Context, namespace string, req, msg proto.Message, cp *callPolicy, opener PayloadCodec) error {
	if err := inlineRawHistory(msg); err != nil {
		return err
	}
	st, err := inboundSites(req, msg)
	if err != nil {
		return err
	}
	if t.lenient {
		st = nil
	}
	if !cp.passes() && !t.lenient {
		refused, err := openTextsAt(ctx, opener, namespace, msg, st)
		if err != nil {
			return err
		}
		for range refused {
			t.report(namespace, KindRefused)
		}
	}
	w := &walk{dir: inbound, strict: strictnessFor(ctx, cp, msg), opener: opener, sites: st}
	if err := t.transformPayloads(ctx, w, namespace, msg, t.codec.Decode, cp); err != nil {
		return err
	}
	for _, f := range missedFailures(msg) {
		if err := apiproxy.VisitFailures(ctx, f, apiproxy.VisitFailuresOptions{
			Visitor: func(_ *apiproxy.VisitFailuresContext, f *failurepb.Failure) error { decodeFailure(f); return nil },
		}); err != nil {
			return err
		}
	}
	return apiproxy.VisitFailures(ctx, msg, apiproxy.VisitFailuresOptions{
		Visitor: func(_ *apiproxy.VisitFailuresContext, f *failurepb.Failure) error { decodeFailure(f); return nil },
		WellKnownAnyVisitor: func(vc *apiproxy.VisitFailuresContext, a *anypb.Any) error {
			// Payloads were already replaced in the unpacked children, so this is the last pass: repack.
			if err := w.visitAnyFailures(vc, a); err != nil {
				return err
			}
			return w.repack(a)
		},
	})
}

// inlineRawHistory turns the raw history blobs a frontend sends when "frontend.sendRawWorkflowHistory" is on into
// ordinary events, so their payloads can be decrypted: the visitor cannot see into bytes. SDKs read either form.
func inlineRawHistory(msg proto.Message) error {
	r, ok := msg.(*workflowservice.GetWorkflowExecutionHistoryResponse)
	if !ok || len(r.GetRawHistory()) == 0 {
		return nil
	}
	if r.History == nil {
		r.History = &historypb.History{}
	}
	for i, blob := range r.GetRawHistory() {
		if blob.GetEncodingType() != enumspb.ENCODING_TYPE_PROTO3 {
			return &requestError{kind: KindDecode, code: codes.Internal, msg: fmt.Sprintf("raw history blob %d has unsupported encoding %v", i, blob.GetEncodingType())}
		}
		var part historypb.History
		if err := proto.Unmarshal(blob.GetData(), &part); err != nil {
			return &requestError{kind: KindDecode, code: codes.Internal, msg: fmt.Sprintf("raw history blob %d: %v", i, err)}
		}
		r.History.Events = append(r.History.Events, part.GetEvents()...)
	}
	r.RawHistory = nil
	return nil
}

// missedFailures returns the failures of msg that go.temporal.io/api/proxy v1.63.5's VisitFailures skips: its
// generated walker has no case for a repeated Failure field, so RespondActivityTaskFailed(ById)Response.failures is never
// visited (found by TestEveryFieldEncrypted). Payloads in them are visited.
func missedFailures(msg proto.Message) []*failurepb.Failure {
	switch m := msg.(type) {
	case *workflowservice.RespondActivityTaskFailedResponse:
		return m.GetFailures()
	case *workflowservice.RespondActivityTaskFailedByIdResponse:
		return m.GetFailures()
	}
	return nil
}

func (w *walk) visitAnyFailures(vc *apiproxy.VisitFailuresContext, a *anypb.Any) error {
	child, err := w.unpack(a)
	if err != nil || child == nil {
		return err
	}
	return apiproxy.VisitFailures(vc.Context, child, apiproxy.VisitFailuresOptions{
		Visitor: func(_ *apiproxy.VisitFailuresContext, f *failurepb.Failure) error {
			if w.dir == outbound {
				return w.failure(f)
			}
			decodeFailure(f)
			return nil
		},
		WellKnownAnyVisitor: func(vc *apiproxy.VisitFailuresContext, a *anypb.Any) error {
			if err := w.visitAnyFailures(vc, a); err != nil {
				return err
			}
			if w.dir == inbound {
				return w.repack(a)
			}
			return nil
		},
	})
}

func (w *walk) repack(a *anypb.Any) error {
	child, ok := w.anys[a]
	if !ok {
		return nil
	}
	if err := a.MarshalFrom(child); err != nil {
		return fmt.Errorf("repack embedded %s: %w", a.GetTypeUrl(), err)
	}
	return nil
}

type codecFunc func(ctx context.Context, namespace string, ps []*commonpb.Payload) ([]*commonpb.Payload, error)

// transformPayloads runs fn over every payload of msg. The visitor hands over payloads field by field; to make one codec
// call per message, a first pass collects them, the codec runs once, and a second pass puts each result back where its
// input was (found by pointer: map iteration order differs between passes). Any values are unpacked once (in w) and
// repacked in the second pass. A policy (cp) decides which payloads go to the codec (callPolicy.prepare) and how
// results go back (callPolicy.finish); payloads it leaves alone are remembered, so the second pass can tell them from
// payloads that changed between visits.
func (t *transformer) transformPayloads(ctx context.Context, w *walk, namespace string, msg proto.Message, fn codecFunc, cp *callPolicy) error {
	if t.perField && cp == nil {
		return t.transformPayloadsPerField(ctx, w, namespace, msg, fn)
	}
	var (
		in, send []*commonpb.Payload
		isSA     []bool
		parents  []proto.Message
		keep     map[*commonpb.Payload]bool
		// verify holds the envelopes a client sent already sealed, to authenticate before anything is forwarded.
		verify        []*commonpb.Payload
		verifyParents []proto.Message
		verifySites   []site
	)
	collect := apiproxy.VisitPayloadsOptions{
		SkipSearchAttributes: !cp.visitsSearchAttributes(),
		Visitor: func(vc *apiproxy.VisitPayloadsContext, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
			for _, p := range ps {
				if p == nil {
					continue
				}
				if w.dir == outbound && !t.lenient {
					if env := clientEnvelope(vc, p); env != nil {
						verify, verifyParents = append(verify, env), append(verifyParents, vc.Parent)
						verifySites = append(verifySites, w.sites.of(p))
					}
				}
				s, sa, ok, err := cp.prepare(w.dir, vc, p)
				if err != nil {
					return nil, err
				}
				if !ok {
					if keep == nil {
						keep = make(map[*commonpb.Payload]bool)
					}
					keep[p] = true
					continue
				}
				in, send, isSA = append(in, p), append(send, s), append(isSA, sa)
				if w.dir == inbound {
					parents = append(parents, vc.Parent)
				}
			}
			return ps, nil
		},
	}
	collect.WellKnownAnyVisitor = func(vc *apiproxy.VisitPayloadsContext, a *anypb.Any) error {
		child, err := w.unpack(a)
		if err != nil || child == nil {
			return err
		}
		return apiproxy.VisitPayloads(vc.Context, child, collect)
	}
	if err := apiproxy.VisitPayloads(ctx, msg, collect); err != nil {
		return err
	}
	if len(verify) > 0 {
		if err := t.verifyEnvelopes(ctx, w.openerOr(t.codec), namespace, verify, verifyParents, verifySites); err != nil {
			return err
		}
	}
	if len(in) == 0 && len(w.anys) == 0 {
		return nil
	}
	var out []*commonpb.Payload
	if len(in) > 0 {
		if namespace == "" {
			if w.dir == inbound {
				// Nothing to bind a decryption to; leave the payloads as they came (ciphertext stays ciphertext).
				return nil
			}
			return &requestError{kind: KindInvalidRequest, code: codes.InvalidArgument, msg: "request carries payloads but no namespace"}
		}
		var err error
		if w.dir == inbound && !t.lenient {
			out, err = t.openInbound(ctx, w.openerOr(t.codec), namespace, cp, w.strict, w.sites, in, send, isSA, parents)
		} else if w.dir == outbound && w.sites != nil && !t.lenient {
			out, err = t.sealSited(ctx, t.codec, namespace, cp.sealScope(), w.sites, in, send)
		} else {
			out, err = fn(ctx, namespace, send)
		}
		if err != nil {
			return err
		}
		if len(out) != len(in) {
			return fmt.Errorf("codec returned %d payloads for %d", len(out), len(in))
		}
		t.observe(w.dir, namespace, send, out)
		for i := range out {
			if out[i], err = cp.finish(w.dir, isSA[i], in[i], out[i]); err != nil {
				return err
			}
		}
	}
	if len(w.anys) == 0 && !slices.Contains(out, nil) {
		// Nothing to repack: write each result into the payload it replaces, instead of a second walk of the whole
		// message (a third of the cost of a large history). A message from the wire never holds one payload in two
		// places; if a message built in Go does, both places get the last result, as with the second walk.
		for i, p := range in {
			overwritePayload(p, out[i])
		}
		return nil
	}
	result := make(map[*commonpb.Payload]*commonpb.Payload, len(in))
	for i, p := range in {
		result[p] = out[i]
	}
	replace := apiproxy.VisitPayloadsOptions{
		SkipSearchAttributes: !cp.visitsSearchAttributes(),
		Visitor: func(_ *apiproxy.VisitPayloadsContext, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
			for i, p := range ps {
				if p == nil || keep[p] {
					continue
				}
				r, ok := result[p]
				if !ok {
					return nil, errors.New("payload changed between visits")
				}
				ps[i] = r
			}
			return ps, nil
		},
	}
	replace.WellKnownAnyVisitor = func(vc *apiproxy.VisitPayloadsContext, a *anypb.Any) error {
		child, ok := w.anys[a]
		if !ok {
			return nil // unknown type on a response: left as it is
		}
		if err := apiproxy.VisitPayloads(vc.Context, child, replace); err != nil {
			return err
		}
		if w.dir == outbound {
			return w.repack(a)
		}
		return nil // decode repacks after restoring failure text
	}
	return apiproxy.VisitPayloads(ctx, msg, replace)
}

// payloadFieldsKnown reports whether Payload has exactly the fields overwritePayload copies directly; with any other
// (a later API version's), it copies through reflection.
var payloadFieldsKnown = func() bool {
	fds := (&commonpb.Payload{}).ProtoReflect().Descriptor().Fields()
	return fds.Len() == 3 && fds.ByNumber(1).Name() == "metadata" && fds.ByNumber(2).Name() == "data" &&
		fds.ByNumber(3).Name() == "external_payloads"
}()

// overwritePayload makes dst hold what src holds (src is dropped afterwards).
func overwritePayload(dst, src *commonpb.Payload) {
	if dst == src {
		return
	}
	dm, sm := dst.ProtoReflect(), src.ProtoReflect()
	if payloadFieldsKnown {
		dst.Metadata, dst.Data, dst.ExternalPayloads = src.Metadata, src.Data, src.ExternalPayloads
		if len(dm.GetUnknown()) > 0 || len(sm.GetUnknown()) > 0 {
			dm.SetUnknown(sm.GetUnknown())
		}
		return
	}
	dm.Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		dm.Clear(fd)
		return true
	})
	sm.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		dm.Set(fd, v)
		return true
	})
	dm.SetUnknown(sm.GetUnknown())
}

// transformPayloadsPerField is the unbatched variant: one codec call per visitor call.
func (t *transformer) transformPayloadsPerField(ctx context.Context, w *walk, namespace string, msg proto.Message, fn codecFunc) error {
	var opts apiproxy.VisitPayloadsOptions
	opts = apiproxy.VisitPayloadsOptions{
		SkipSearchAttributes: true,
		Visitor: func(_ *apiproxy.VisitPayloadsContext, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
			if len(ps) == 0 {
				return ps, nil
			}
			out, err := fn(ctx, namespace, ps)
			if err != nil {
				return nil, err
			}
			t.observe(w.dir, namespace, ps, out)
			return out, nil
		},
		WellKnownAnyVisitor: func(vc *apiproxy.VisitPayloadsContext, a *anypb.Any) error {
			child, err := w.unpack(a)
			if err != nil || child == nil {
				return err
			}
			if err := apiproxy.VisitPayloads(vc.Context, child, opts); err != nil {
				return err
			}
			if w.dir == outbound {
				return w.repack(a)
			}
			return nil
		},
	}
	return apiproxy.VisitPayloads(ctx, msg, opts)
}

func (t *transformer) observe(dir direction, namespace string, in, out []*commonpb.Payload) {
	if t.observer == nil {
		return
	}
	plain := in
	if dir == inbound {
		plain = out
	}
	size := 0
	for _, p := range plain {
		size += proto.Size(p)
	}
	if dir == outbound {
		t.observer.Encoded(namespace, len(plain), size)
	} else {
		t.observer.Decoded(namespace, len(plain), size)
	}
}

// encodeFailure moves a failure's message and stack trace into encoded_attributes as the SDKs do. A failure that
// already has encoded attributes (an SDK encoded it) is left alone, unless it also carries text: then which of the two
// is authoritative is unclear, and forwarding would leak the text, so the request is refused.
func encodeFailure(f *failurepb.Failure) error {
	if f.GetEncodedAttributes() != nil {
		if (f.GetMessage() == "" || f.GetMessage() == encodedFailureMessage) && f.GetStackTrace() == "" {
			return nil
		}
		return &requestError{kind: KindInvalidRequest, code: codes.InvalidArgument,
			msg: "a failure carries both encoded attributes and a plaintext message or stack trace"}
	}
	if f.GetMessage() == "" && f.GetStackTrace() == "" {
		return nil
	}
	p, err := converter.GetDefaultDataConverter().ToPayload(encodedFailure{Message: f.GetMessage(), StackTrace: f.GetStackTrace()})
	if err != nil {
		return fmt.Errorf("encode failure attributes: %w", err)
	}
	// The mark travels inside the sealed payload, so the backend can neither see nor add it: on the way back only
	// what the proxy moved is moved back, and a failure an SDK encoded itself reads back as the SDK wrote it.
	p.Metadata[metadataSealedByProxy] = []byte("1")
	f.EncodedAttributes = p
	f.Message = encodedFailureMessage
	f.StackTrace = ""
	return nil
}

// metadataSealedByProxy marks, inside the sealed encoded attributes, a failure whose text the proxy moved there.
const metadataSealedByProxy = "blindfold-failure-text"

// decodeFailure restores a failure's text from decrypted encoded attributes the proxy made and clears them, so that a
// caller sending the failure back (e.g. as a cause) sends text, which the proxy encrypts again, rather than stale
// attributes. Attributes without the proxy's mark (an SDK encoded them itself), or not exactly the SDK convention's
// JSON object, are left as they are.
func decodeFailure(f *failurepb.Failure) {
	p := f.GetEncodedAttributes()
	if p == nil || string(p.GetMetadata()[converter.MetadataEncoding]) != converter.MetadataEncodingJSON ||
		string(p.GetMetadata()[metadataSealedByProxy]) != "1" {
		return
	}
	dec := json.NewDecoder(bytes.NewReader(p.GetData()))
	dec.DisallowUnknownFields()
	var ef encodedFailure
	if err := dec.Decode(&ef); err != nil || dec.More() {
		return
	}
	f.Message = ef.Message
	f.StackTrace = ef.StackTrace
	f.EncodedAttributes = nil
}

// codecStatus turns a codec or transform error into the gRPC status returned to the caller, and its kind. The message
// names the namespace and the cause (codec errors name the key), never payload content.
func codecStatus(op string, namespace string, err error) (error, ErrorKind) {
	var re *requestError
	if errors.As(err, &re) {
		code := re.code
		if code == codes.OK {
			code = codes.InvalidArgument
		}
		return status.Errorf(code, "blindfold: %s namespace %q: %s", op, namespace, re.msg), re.kind
	}
	code, kind := codes.Internal, KindEncode
	if op == opDecode {
		kind = KindDecode
	}
	switch {
	case errors.Is(err, context.Canceled):
		code, kind = codes.Canceled, KindCanceled
	case errors.Is(err, context.DeadlineExceeded):
		code, kind = codes.DeadlineExceeded, KindCanceled
	case errors.Is(err, codec.ErrKeyRejected):
		// Checked before ErrKeyUnavailable, which may wrap it: a keyset the KEK refuses for good (e.g. below Vault's
		// min_decryption_version) must not look retryable, or SDKs would retry it forever.
		code, kind = codes.FailedPrecondition, KindKeyUnavailable
	case errors.Is(err, codec.ErrKeyUnavailable):
		// The key provider is down and no cached key is left: retryable, and nothing was forwarded.
		code, kind = codes.Unavailable, KindKeyUnavailable
	case errors.Is(err, codec.ErrUnknownKey):
		// Also a scope without keys (keys.ErrScopeNotFound) when the keyring may not create one.
		code, kind = codes.FailedPrecondition, KindUnknownKey
	case errors.Is(err, codec.ErrKeyDestroyed):
		code, kind = codes.FailedPrecondition, KindKeyDestroyed
	case errors.Is(err, codec.ErrWrongNamespace):
		code, kind = codes.FailedPrecondition, KindWrongNamespace
	case errors.Is(err, codec.ErrUnsupportedVersion):
		code, kind = codes.FailedPrecondition, KindUnsupportedVersion
	case errors.Is(err, codec.ErrDecodedTooLarge):
		// Authentic, perhaps, but over the decompression limits (per payload or per response): a resource refusal, not data loss.
		code = codes.ResourceExhausted
	case errors.Is(err, codec.ErrTampered), errors.Is(err, codec.ErrTruncated), errors.Is(err, codec.ErrMalformed):
		code, kind = codes.DataLoss, KindTampered
	}
	return status.Errorf(code, "blindfold: %s namespace %q: %v", op, namespace, err), kind
}

const (
	opEncode = "encrypt payloads for"
	opDecode = "decrypt payloads of"
)

// decodeStatus decrypts payloads and restores failure text inside the details of an upstream error (e.g.
// QueryFailedFailure, MultiOperationExecutionFailure). It returns the error to give the caller, or a decode error.
func (t *transformer) decodeStatus(ctx context.Context, namespace string, err error) (error, error) {
	return t.decodeStatusFor(ctx, namespace, nil, err, nil)
}

// decodeStatusFor is decodeStatus under a policy decision (nil: none).
func (t *transformer) decodeStatusFor(ctx context.Context, namespace string, req proto.Message, err error, cp *callPolicy) (error, error) {
	st, ok := status.FromError(err)
	if !ok || len(st.Proto().GetDetails()) == 0 {
		return err, nil
	}
	p := st.Proto()             // a copy
	opener := t.responseCodec() // one decompression budget for all the details
	for _, d := range p.GetDetails() {
		if err := t.decodeResponseWith(ctx, namespace, req, d, cp, opener); err != nil {
			return nil, err
		}
	}
	return status.ErrorProto(p), nil
}
