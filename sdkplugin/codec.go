package sdkplugin

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"

	"github.com/blindfold-dev/blindfold/codec"
)

// replayNamespace is the placeholder namespace the SDK's workflow replayer puts into serialization contexts
// (internal.ReplayNamespace, not exported). Sealing for it would make every replayed payload unreadable.
const replayNamespace = "ReplayNamespace"

// maxCachedNamespaces bounds the per-namespace codec cache; beyond it codecs are built per call, which is
// correct, only slower.
const maxCachedNamespaces = 1024

// backend seals and opens payload batches for one namespace: the local codec or a remote codec endpoint.
type backend interface {
	encode(ctx context.Context, namespace string, payloads []*commonpb.Payload) ([]*commonpb.Payload, error)
	decode(ctx context.Context, namespace string, payloads []*commonpb.Payload) ([]*commonpb.Payload, error)
}

// codecFactory hands out namespace-bound payload codecs and keeps one per namespace, so the SDK's frequent
// WithSerializationContext calls neither allocate nor defeat CodecDataConverter's "unchanged" shortcut.
type codecFactory struct {
	backend backend
	cache   sync.Map // namespace -> *boundCodec
	cached  atomic.Int64
}

func (f *codecFactory) forNamespace(namespace string) *boundCodec {
	if bc, ok := f.cache.Load(namespace); ok {
		return bc.(*boundCodec)
	}
	bc := &boundCodec{f: f, namespace: namespace}
	if f.cached.Load() >= maxCachedNamespaces {
		return bc
	}
	actual, loaded := f.cache.LoadOrStore(namespace, bc)
	if !loaded {
		f.cached.Add(1)
	}
	return actual.(*boundCodec)
}

// boundCodec is a converter.PayloadCodec sealing for one namespace. It implements
// converter.PayloadCodecWithSerializationContext: when the SDK names the namespace of the workflow or activity a
// payload belongs to, that namespace is used.
type boundCodec struct {
	f         *codecFactory
	namespace string
}

var (
	_ converter.PayloadCodec                         = (*boundCodec)(nil)
	_ converter.PayloadCodecWithSerializationContext = (*boundCodec)(nil)
)

// Encode seals payloads for the codec's namespace; payloads already in the Blindfold envelope are left as they are.
func (b *boundCodec) Encode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out, err := b.f.backend.encode(context.Background(), b.namespace, payloads)
	if err != nil {
		return payloads, fmt.Errorf("blindfold: encode payloads for namespace %q: %w", b.namespace, err)
	}
	return out, nil
}

// Decode opens payloads sealed for the codec's namespace; payloads not in the Blindfold envelope pass through.
func (b *boundCodec) Decode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out, err := b.f.backend.decode(context.Background(), b.namespace, payloads)
	if err != nil {
		return payloads, fmt.Errorf("blindfold: decode payloads for namespace %q: %w", b.namespace, err)
	}
	return out, nil
}

// WithSerializationContext returns the codec for the namespace the context names, or b itself.
func (b *boundCodec) WithSerializationContext(sc converter.SerializationContext) converter.PayloadCodec {
	ns := contextNamespace(sc)
	if ns == "" || ns == b.namespace {
		return b
	}
	return b.f.forNamespace(ns)
}

// contextNamespace is the namespace a serialization context names, or "" when it names none (Nexus contexts,
// the replayer's placeholder).
func contextNamespace(sc converter.SerializationContext) string {
	var ns string
	switch c := sc.(type) {
	case converter.WorkflowSerializationContext:
		ns = c.Namespace
	case *converter.WorkflowSerializationContext:
		if c != nil {
			ns = c.Namespace
		}
	case converter.ActivitySerializationContext:
		ns = c.Namespace
	case *converter.ActivitySerializationContext:
		if c != nil {
			ns = c.Namespace
		}
	}
	if ns == replayNamespace {
		return ""
	}
	return ns
}

// localBackend seals with the codec package and keys held in this process.
type localBackend struct{ c *codec.Codec }

func newLocalFactory(c *codec.Codec) *codecFactory {
	return &codecFactory{backend: localBackend{c: c}}
}

func (l localBackend) encode(ctx context.Context, ns string, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
	return l.c.Encode(ctx, ns, ps)
}

func (l localBackend) decode(ctx context.Context, ns string, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
	return l.c.Decode(ctx, ns, ps)
}

// remoteBackend calls a Blindfold codec endpoint through the SDK's own remote codec client, one per namespace
// because the namespace is part of the URL path.
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

func (r *remoteBackend) encode(_ context.Context, ns string, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
	if len(ps) == 0 {
		return ps, nil
	}
	out, err := r.remote(ns).Encode(ps)
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

func (r *remoteBackend) decode(_ context.Context, ns string, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
	if len(ps) == 0 {
		return ps, nil
	}
	out, err := r.remote(ns).Decode(ps)
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
