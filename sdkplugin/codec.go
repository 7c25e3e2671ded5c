package sdkplugin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"

	"github.com/blindfold-dev/blindfold/codec"
)

// replayNamespace is the placeholder namespace the SDK's workflow replayer puts into serialization contexts
// (internal.ReplayNamespace, not exported). Sealing for it would make every replayed payload unreadable, and the
// replayer's workflow id is a placeholder too ("ReplayId"), so no binding can be checked there.
const replayNamespace = "ReplayNamespace"

// maxCachedNamespaces bounds the remote backend's per-namespace client cache; beyond it clients are built per
// call, which is correct, only slower.
const maxCachedNamespaces = 1024

// backend seals and opens payload batches: the local codec or a remote codec endpoint.
type backend interface {
	encode(ctx context.Context, t codec.Target, payloads []*commonpb.Payload) ([]*commonpb.Payload, error)
	decode(ctx context.Context, e codec.Expect, payloads []*commonpb.Payload) ([]*commonpb.Payload, error)
}

// codecFactory hands out the plugin's payload codecs.
type codecFactory struct {
	backend backend
	// nexusPeers are the namespaces whose Nexus values open in a Nexus context too (WithNexusPeers).
	nexusPeers []string
}

func (f *codecFactory) forNamespace(namespace string) boundCodec {
	return boundCodec{f: f, namespace: namespace}
}

// openRule says which bindings a codec opens (format v2, docs/binding.md). The SDK's serialization context names
// the workflow a payload belongs to but not the field it is in, so a workflow's codec accepts every binding the
// proxy accepts in some response about that workflow.
type openRule uint8

const (
	// openAny: no context (code that reads histories itself, the replayer): every binding, like the codec endpoint.
	openAny openRule = iota
	// openWorkflow: payloads of workflow id (its input, signals, queries, updates, activities, children's results):
	// BindWorkflow(id), and what the backend legitimately delivers into a workflow from elsewhere: BindBatch (a batch
	// signal), BindScheduledWorkflow(x) when id is x + "-" + an RFC 3339 time (a schedule's action), BindQuery (a
	// legacy query answer), BindNamespace (v1 history).
	openWorkflow
	// openStandaloneActivity: an activity outside any workflow; the SDK does not name its activity id, so any
	// BindActivity, and BindNamespace.
	openStandaloneActivity
	// openNexus: a Nexus operation's input (BindNexus(id)) or result: BindNexus("") (a handler's synchronous result),
	// BindWorkflow of any workflow (an asynchronous operation's result, sealed by the handler's workflow), and
	// BindNamespace.
	openNexus
)

// boundCodec is a converter.PayloadCodec sealing for one namespace and binding, and opening what its rule accepts. It
// implements converter.PayloadCodecWithSerializationContext: the SDK's context names the namespace and the workflow
// (or Nexus operation) a payload belongs to.
//
// It is a comparable value: the SDK calls WithSerializationContext for nearly every conversion, and a context that
// changes nothing gives an equal codec, which keeps CodecDataConverter's "unchanged" shortcut.
type boundCodec struct {
	f         *codecFactory
	namespace string
	seal      codec.Binding
	rule      openRule
	id        string // the workflow id (openWorkflow) or "<service>/<operation>" (openNexus)
}

var (
	_ converter.PayloadCodec                         = boundCodec{}
	_ converter.PayloadCodecWithSerializationContext = boundCodec{}
)

// Encode seals payloads for the codec's namespace and binding; payloads already in the Blindfold envelope are left as
// they are.
func (b boundCodec) Encode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out, err := b.f.backend.encode(context.Background(), codec.Target{Namespace: b.namespace, Binding: b.seal}, payloads)
	if err != nil {
		return payloads, fmt.Errorf("blindfold: encode payloads for namespace %q: %w", b.namespace, err)
	}
	return out, nil
}

// Decode opens payloads sealed for the codec's namespace whose binding the codec accepts (codec.ErrWrongBinding
// otherwise); payloads not in the Blindfold envelope pass through.
func (b boundCodec) Decode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	e := codec.Expect{Namespace: b.namespace}
	if b.rule != openAny {
		e.Accept = b.accept
	}
	out, err := b.f.backend.decode(context.Background(), e, payloads)
	if err != nil && b.rule == openNexus && len(b.f.nexusPeers) > 0 && sealedElsewhere(err) {
		out, err = b.decodeWithPeers(e, payloads)
	}
	if err != nil {
		return payloads, fmt.Errorf("blindfold: decode payloads for namespace %q: %w", b.namespace, err)
	}
	return out, nil
}

// sealedElsewhere reports whether err is how an envelope sealed for another namespace fails to open: v1 names the
// namespace; a v2 envelope's key is then looked up in the wrong scope, or its associated data does not match.
func sealedElsewhere(err error) bool {
	return errors.Is(err, codec.ErrWrongNamespace) || errors.Is(err, codec.ErrUnknownKey) || errors.Is(err, codec.ErrTampered)
}

// decodeWithPeers opens payloads one by one, each in the codec's namespace or else in the first Nexus peer it opens
// in. The binding rule is the same everywhere.
func (b boundCodec) decodeWithPeers(e codec.Expect, payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	ctx := context.Background()
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		r, err := b.f.backend.decode(ctx, e, []*commonpb.Payload{p})
		if err != nil && sealedElsewhere(err) {
			for _, peer := range b.f.nexusPeers {
				if peer == e.Namespace {
					continue
				}
				pe := e
				pe.Namespace = peer
				if pr, perr := b.f.backend.decode(ctx, pe, []*commonpb.Payload{p}); perr == nil {
					r, err = pr, nil
					break
				}
			}
		}
		if err != nil {
			// The own namespace's error: a value that opens nowhere is reported as it fails here.
			return nil, fmt.Errorf("payload %d: %w", i, err)
		}
		out[i] = r[0]
	}
	return out, nil
}

// accept is the codec's Expect.Accept.
func (b boundCodec) accept(_ int, bd codec.Binding) error {
	if bd.Kind == codec.BindNamespace {
		return nil
	}
	switch b.rule {
	case openWorkflow:
		switch bd.Kind {
		case codec.BindWorkflow:
			if bd.ID == b.id {
				return nil
			}
		case codec.BindBatch, codec.BindQuery:
			return nil
		case codec.BindScheduledWorkflow:
			if scheduledBy(b.id, bd.ID) {
				return nil
			}
		}
		return fmt.Errorf("bound to %s, opened in workflow %q", bd, clipID(b.id))
	case openStandaloneActivity:
		if bd.Kind == codec.BindActivity {
			return nil
		}
		return fmt.Errorf("bound to %s, opened in a standalone activity", bd)
	case openNexus:
		switch bd.Kind {
		case codec.BindWorkflow:
			return nil
		case codec.BindNexus:
			if bd.ID == "" || bd.ID == b.id {
				return nil
			}
		}
		return fmt.Errorf("bound to %s, opened in Nexus operation %q", bd, clipID(b.id))
	}
	return nil
}

// scheduledBy reports whether workflowID is one a schedule whose action names actionID starts: the server names each
// run actionID + "-" + the scheduled time in RFC 3339 (second precision, UTC). A value sealed with
// codec.BindScheduledWorkflow(actionID) opens in exactly those workflows.
func scheduledBy(workflowID, actionID string) bool {
	rest, ok := strings.CutPrefix(workflowID, actionID+"-")
	if !ok {
		return false
	}
	_, err := time.Parse(time.RFC3339, rest)
	return err == nil
}

// clipID bounds an id quoted in an error (workflow ids may be long; they are not secret).
func clipID(s string) string {
	const max = 200
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}

// WithSerializationContext returns the codec for the namespace and workflow (or Nexus operation) the context names.
//
//   - WorkflowSerializationContext: seal for the workflow (the child's id for a child workflow, the target's for an
//     external signal, as the SDK names them), open openWorkflow.
//   - ActivitySerializationContext of a workflow's activity: the same, for its workflow. Of a standalone activity
//     (no workflow id): the SDK does not name the activity id, so seal for the namespace only, open any activity's.
//   - NexusSerializationContext: seal BindNexus("<service>/<operation>"), open openNexus, in the codec's namespace
//     (the context names none).
//   - The replayer's placeholder namespace: the codec's namespace, no binding checked (its workflow id is a
//     placeholder too).
func (b boundCodec) WithSerializationContext(sc converter.SerializationContext) converter.PayloadCodec {
	out := boundCodec{f: b.f, namespace: b.namespace}
	var ns, workflowID string
	standalone := false
	switch c := sc.(type) {
	case converter.WorkflowSerializationContext:
		ns, workflowID = c.Namespace, c.WorkflowID
	case *converter.WorkflowSerializationContext:
		if c != nil {
			ns, workflowID = c.Namespace, c.WorkflowID
		}
	case converter.ActivitySerializationContext:
		ns, workflowID, standalone = c.Namespace, c.WorkflowID, c.WorkflowID == ""
	case *converter.ActivitySerializationContext:
		if c != nil {
			ns, workflowID, standalone = c.Namespace, c.WorkflowID, c.WorkflowID == ""
		}
	case converter.NexusSerializationContext:
		return b.forNexus(c.Service, c.Operation)
	case *converter.NexusSerializationContext:
		if c != nil {
			return b.forNexus(c.Service, c.Operation)
		}
	}
	if ns == replayNamespace {
		return out
	}
	if ns != "" {
		out.namespace = ns
	}
	switch {
	case workflowID != "":
		out.seal, out.rule, out.id = codec.Workflow(workflowID), openWorkflow, workflowID
	case standalone:
		out.rule = openStandaloneActivity
	}
	return out
}

func (b boundCodec) forNexus(service, operation string) boundCodec {
	id := service + "/" + operation
	return boundCodec{f: b.f, namespace: b.namespace, seal: codec.Binding{Kind: codec.BindNexus, ID: id}, rule: openNexus, id: id}
}

// localBackend seals with the codec package and keys held in this process.
type localBackend struct{ c *codec.Codec }

func newLocalFactory(c *codec.Codec) *codecFactory {
	return &codecFactory{backend: localBackend{c: c}}
}

func (l localBackend) encode(ctx context.Context, t codec.Target, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
	return l.c.EncodeFor(ctx, t, ps)
}

func (l localBackend) decode(ctx context.Context, e codec.Expect, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
	return l.c.DecodeFor(ctx, e, ps)
}

// remoteBackend calls a Blindfold codec endpoint through the SDK's own remote codec client, one per namespace
// because the namespace is part of the URL path. The remote codec protocol carries no binding: the endpoint seals
// for the namespace only (BindNamespace) and opens every binding, so a remote plugin neither binds nor checks.
type remoteBackend struct {
	endpoint string
	client   http.Client
	modify   func(*http.Request) error
	codecs   sync.Map // namespace -> converter.PayloadCodec
	cached   atomic.Int64
}

func newRemoteFactory(endpoint string, hc http.Client, modify func(*http.Request) error) *codecFactory {
	return &codecFactory{backend: &remoteBackend{endpoint: endpoint, client: hc, modify: modify}}
}

func (r *remoteBackend) remote(ns string) converter.PayloadCodec {
	if pc, ok := r.codecs.Load(ns); ok {
		return pc.(converter.PayloadCodec)
	}
	pc := converter.NewRemotePayloadCodec(converter.RemotePayloadCodecOptions{
		Endpoint:      r.endpoint + "/" + url.PathEscape(ns),
		ModifyRequest: r.modify,
		Client:        r.client,
	})
	if r.cached.Load() >= maxCachedNamespaces {
		return pc
	}
	actual, loaded := r.codecs.LoadOrStore(ns, pc)
	if !loaded {
		r.cached.Add(1)
	}
	return actual.(converter.PayloadCodec)
}

func (r *remoteBackend) encode(_ context.Context, t codec.Target, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
	if len(ps) == 0 {
		return ps, nil
	}
	out, err := r.remote(t.Namespace).Encode(ps)
	if err != nil {
		return nil, err
	}
	// Fail closed: whatever the endpoint answered, nothing leaves this process unless it is sealed.
	for i, p := range out {
		if p != nil && !codec.IsEncrypted(p) {
			return nil, fmt.Errorf("payload %d: the codec endpoint returned it unencrypted", i)
		}
	}
	return out, nil
}

func (r *remoteBackend) decode(_ context.Context, e codec.Expect, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
	if len(ps) == 0 {
		return ps, nil
	}
	out, err := r.remote(e.Namespace).Decode(ps)
	if err != nil {
		return nil, err
	}
	// The Blindfold endpoint answers 200 for a batch in which some payloads could not be opened, returning those
	// still sealed with a reason in their metadata; to the SDK that must be an error, as it is with local keys.
	for i, p := range out {
		if codec.IsEncrypted(p) {
			why := string(p.GetMetadata()[codec.MetadataDecodeError])
			if why == "" {
				why = "the codec endpoint returned it still encrypted"
			}
			return nil, fmt.Errorf("payload %d: %s", i, why)
		}
	}
	return out, nil
}
