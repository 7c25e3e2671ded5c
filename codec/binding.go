package codec

import (
	"context"
	"errors"
	"fmt"

	commonpb "go.temporal.io/api/common/v1"
)

// BindingKind says what an envelope is bound to inside its namespace (format v2; docs/format.md). The binding is part of
// the associated data, so an envelope the backend copies somewhere else fails to open there unless the opener accepts
// its binding (Expect.Accept).
type BindingKind uint8

// The binding kinds. Their numbers are part of the format: never renumber.
const (
	// BindNamespace: bound to the namespace only. Every v1 envelope, and v2 envelopes sealed without a context (the
	// codec endpoint's /encode, an SDK codec used outside a serialization context).
	BindNamespace BindingKind = 0
	// BindWorkflow: ID is a workflow id. All runs of the workflow share it (continue-as-new, reset, retries).
	BindWorkflow BindingKind = 1
	// BindActivity: ID is the activity id of a standalone activity, which belongs to no workflow.
	BindActivity BindingKind = 2
	// BindSchedule: ID is a schedule id; the schedule's own memo.
	BindSchedule BindingKind = 3
	// BindScheduledWorkflow: ID is the workflow id of a schedule's action. The server starts each scheduled workflow
	// as "<ID>-<RFC 3339 time>", so the value opens in those workflows and in the schedule's description.
	BindScheduledWorkflow BindingKind = 4
	// BindBatch: ID is a batch job id; a batch signal's input and header, which the server delivers to many workflows.
	BindBatch BindingKind = 5
	// BindQuery: a legacy query answer (RespondQueryTaskCompleted), whose task token names no workflow. ID is empty.
	BindQuery BindingKind = 6
	// BindNexus: a Nexus operation's input (ID is "<service>/<operation>") or a handler's synchronous result (ID empty),
	// which cross from the caller's namespace to the handler's and back.
	BindNexus BindingKind = 7

	maxBindingKind = BindNexus
)

// MaxBindingIDLen is the longest binding id accepted (Temporal caps workflow ids at 1,000 bytes by default).
const MaxBindingIDLen = 4096

// Binding is what an envelope is bound to inside its namespace.
type Binding struct {
	Kind BindingKind
	ID   string
}

// Workflow is the binding of a payload that belongs to workflow id.
func Workflow(id string) Binding { return Binding{Kind: BindWorkflow, ID: id} }

// String names the binding for error messages, with the id quoted and clipped.
func (b Binding) String() string {
	switch b.Kind {
	case BindNamespace:
		return "the namespace only"
	case BindWorkflow:
		return fmt.Sprintf("workflow %q", clip([]byte(b.ID)))
	case BindActivity:
		return fmt.Sprintf("standalone activity %q", clip([]byte(b.ID)))
	case BindSchedule:
		return fmt.Sprintf("schedule %q", clip([]byte(b.ID)))
	case BindScheduledWorkflow:
		return fmt.Sprintf("workflows scheduled as %q", clip([]byte(b.ID)))
	case BindBatch:
		return fmt.Sprintf("batch job %q", clip([]byte(b.ID)))
	case BindQuery:
		return "a query answer"
	case BindNexus:
		if b.ID == "" {
			return "a Nexus result"
		}
		return fmt.Sprintf("Nexus operation %q", clip([]byte(b.ID)))
	}
	return fmt.Sprintf("binding kind %d", b.Kind)
}

// Validate reports whether b can be sealed: a known kind, an id within MaxBindingIDLen, and no id for BindNamespace and
// BindQuery (which name nothing; their headers must carry an empty id).
func (b Binding) Validate() error {
	if b.Kind > maxBindingKind {
		return fmt.Errorf("%w: unknown binding kind %d", ErrMalformed, b.Kind)
	}
	if len(b.ID) > MaxBindingIDLen {
		return fmt.Errorf("%w: binding id of %d bytes, at most %d", ErrMalformed, len(b.ID), MaxBindingIDLen)
	}
	if b.ID != "" && (b.Kind == BindNamespace || b.Kind == BindQuery) {
		return fmt.Errorf("%w: %s takes no id", ErrMalformed, b)
	}
	return nil
}

// ErrWrongBinding: the envelope is authentic for its namespace but bound to something else than where it is being
// opened (a value the backend moved from one workflow to another). The error names both.
var ErrWrongBinding = errors.New("payload bound elsewhere")

// Expect says where envelopes are being opened: the namespace, and which bindings are acceptable there.
type Expect struct {
	// Namespace is the namespace the payloads are opened in.
	Namespace string
	// Accept decides whether the envelope at index i of the batch, claiming binding b, may be opened here; it is called
	// before decryption, and the binding is then authenticated by it. A non-nil error refuses the envelope, and the
	// decode fails with an error wrapping ErrWrongBinding and that error. v1 envelopes claim BindNamespace. Nil Accept
	// opens every binding (the codec endpoint, which reports the binding in its audit record instead).
	Accept func(i int, b Binding) error
}

// DecodeFor opens the envelopes of payloads in e.Namespace, refusing those whose binding e.Accept refuses (ErrWrongBinding).
// It is Decode otherwise. Each envelope's claimed binding is read from its header and offered to e.Accept before the key is looked
// up or anything is decrypted; the associated data is then built from that claim, so an envelope opens only if its claim is true.
func (c *Codec) DecodeFor(ctx context.Context, e Expect, payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	b := DecodeBudget{limit: int64(c.maxDecodedTotal)}
	return c.decode(ctx, e, payloads, &b)
}

// DecodeForWithin is DecodeFor charging decompressed bytes to b (see DecodeWithin).
func (c *Codec) DecodeForWithin(ctx context.Context, e Expect, payloads []*commonpb.Payload, b *DecodeBudget) ([]*commonpb.Payload, error) {
	if b == nil {
		b = NewDecodeBudget(int64(c.maxDecodedTotal))
	}
	return c.decode(ctx, e, payloads, b)
}

// BindingOf returns the binding envelope p claims, for auditing and error messages; v1 envelopes claim BindNamespace.
// It reports false when p is not an envelope, is of a later format version, or its header is malformed. Like KeyID, the
// value is authenticated only by a successful decode.
func BindingOf(p *commonpb.Payload) (Binding, bool) {
	switch f, _ := envelopeFormat(p); f {
	case formatV1:
		return Binding{Kind: BindNamespace}, true
	case formatV2:
		h, err := parseEnvelopeV2(p)
		if err != nil {
			return Binding{}, false
		}
		return Binding{Kind: h.kind, ID: string(h.id)}, true
	}
	return Binding{}, false
}
