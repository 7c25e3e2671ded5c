package observe

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/blindfold-dev/blindfold/keys"
	"github.com/blindfold-dev/blindfold/proxy"
)

// MaxNamespaceLabels bounds the distinct namespace label values Metrics records. Namespaces come from callers'
// requests, so without a bound a caller could grow the metrics without limit; namespaces beyond the bound are counted
// under OtherNamespace.
const MaxNamespaceLabels = 256

// OtherNamespace is the namespace label of everything past MaxNamespaceLabels distinct namespaces.
const OtherNamespace = "_other"

// Metrics collects the proxy's Prometheus metrics in a registry of its own. It implements proxy.Observer; add
// UnaryServerInterceptor to proxy.Config.UnaryInterceptors for per-RPC metrics, and WatchKeys for the key cache.
// Serve Handler on an HTTP listener for Prometheus to scrape.
type Metrics struct {
	reg *prometheus.Registry

	rpcs          *prometheus.CounterVec
	rpcDuration   *prometheus.HistogramVec
	payloads      *prometheus.CounterVec
	bytes         *prometheus.CounterVec
	errors        *prometheus.CounterVec
	codecRefusals *prometheus.CounterVec

	mu         sync.Mutex
	namespaces map[string]struct{}
}

var _ proxy.Observer = (*Metrics)(nil)

// NewMetrics returns Metrics registered in a new registry, together with the Go runtime and process collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg:        prometheus.NewRegistry(),
		namespaces: map[string]struct{}{},
		rpcs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "blindfold", Subsystem: "proxy", Name: "rpcs_total",
			Help: "RPCs the proxy served, by gRPC service, method and status code.",
		}, []string{"service", "method", "code"}),
		rpcDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "blindfold", Subsystem: "proxy", Name: "rpc_duration_seconds",
			Help:    "Time from receiving an RPC to answering it, upstream call included (long polls wait up to a minute).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 90},
		}, []string{"service", "method"}),
		payloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "blindfold", Subsystem: "proxy", Name: "payloads_total",
			Help: "Payloads encrypted (op=encode) on requests and decrypted (op=decode) on responses, by namespace.",
		}, []string{"namespace", "op"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "blindfold", Subsystem: "proxy", Name: "payload_bytes_total",
			Help: "Plaintext bytes of the payloads encrypted (op=encode) and decrypted (op=decode), by namespace.",
		}, []string{"namespace", "op"}),
		codecRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "blindfold", Subsystem: "codec_endpoint", Name: "refusals_total",
			Help: "Requests the codec endpoint refused, by HTTP status (401 unauthenticated, 403 not allowed, 429 rate limited, 413 too large, 400 malformed).",
		}, []string{"status"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "blindfold", Subsystem: "proxy", Name: "errors_total",
			Help: "RPCs the proxy failed itself (not upstream errors), by kind (encode, decode, unknown_key, key_destroyed, tampered, namespace_denied, ...).",
		}, []string{"kind"}),
	}
	m.reg.MustRegister(m.rpcs, m.rpcDuration, m.payloads, m.bytes, m.errors, m.codecRefusals,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is the registry the metrics live in, for adding more collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// nsLabel returns namespace, or OtherNamespace once MaxNamespaceLabels others have been seen.
func (m *Metrics) nsLabel(namespace string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.namespaces[namespace]; ok {
		return namespace
	}
	if len(m.namespaces) >= MaxNamespaceLabels {
		return OtherNamespace
	}
	m.namespaces[namespace] = struct{}{}
	return namespace
}

// Encoded implements proxy.Observer.
func (m *Metrics) Encoded(namespace string, payloads, bytes int) {
	ns := m.nsLabel(namespace)
	m.payloads.WithLabelValues(ns, "encode").Add(float64(payloads))
	m.bytes.WithLabelValues(ns, "encode").Add(float64(bytes))
}

// Decoded implements proxy.Observer.
func (m *Metrics) Decoded(namespace string, payloads, bytes int) {
	ns := m.nsLabel(namespace)
	m.payloads.WithLabelValues(ns, "decode").Add(float64(payloads))
	m.bytes.WithLabelValues(ns, "decode").Add(float64(bytes))
}

// CodecRefused counts a request the codec endpoint refused with status (codecserver.Config.OnRefused).
func (m *Metrics) CodecRefused(status int) {
	m.codecRefusals.WithLabelValues(strconv.Itoa(status)).Inc()
}

// Error implements proxy.Observer. The namespace is not a label: a denied namespace is whatever a caller sent.
func (m *Metrics) Error(_ string, kind proxy.ErrorKind) {
	m.errors.WithLabelValues(string(kind)).Inc()
}

// UnaryServerInterceptor counts every RPC by method and status code and observes its duration.
func (m *Metrics) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		service, method := splitMethod(info.FullMethod)
		m.rpcs.WithLabelValues(service, method, status.Code(err).String()).Inc()
		m.rpcDuration.WithLabelValues(service, method).Observe(time.Since(start).Seconds())
		return resp, err
	}
}

// splitMethod turns "/temporal.api.workflowservice.v1.WorkflowService/StartWorkflowExecution" into
// ("WorkflowService", "StartWorkflowExecution"). Only registered methods reach an interceptor, so the label set is
// bounded by the services the proxy serves.
func splitMethod(full string) (service, method string) {
	full = strings.TrimPrefix(full, "/")
	service, method, ok := strings.Cut(full, "/")
	if !ok {
		return "unknown", full
	}
	if i := strings.LastIndexByte(service, '.'); i >= 0 {
		service = service[i+1:]
	}
	return service, method
}

// KeyStatser is what WatchKeys reads: *keys.Manager implements it.
type KeyStatser interface {
	Stats() keys.Stats
}

// WatchKeys exports the key manager's counters: cache hits and misses, KEK calls (steady state makes none per
// payload), refreshes, key file reads and the number of cached scopes. Call it once per Metrics.
func (m *Metrics) WatchKeys(src KeyStatser) error {
	counter := func(name, help string, f func(keys.Stats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "blindfold", Subsystem: "keys", Name: name, Help: help},
			func() float64 { return float64(f(src.Stats())) })
	}
	cs := []prometheus.Collector{
		counter("cache_hits_total", "Key lookups answered from the data-key cache.", func(s keys.Stats) uint64 { return s.CacheHits }),
		counter("cache_misses_total", "Key lookups that had to load a scope's keyset.", func(s keys.Stats) uint64 { return s.CacheMisses }),
		counter("kek_calls_total", "Calls to the key-encryption key (local master key or Vault Transit).", func(s keys.Stats) uint64 { return s.KEKCalls }),
		counter("refreshes_total", "Background reloads of a cached scope.", func(s keys.Stats) uint64 { return s.Refreshes }),
		counter("refresh_failures_total", "Reloads of a cached scope that failed (the cached keys stay in use until their TTL).", func(s keys.Stats) uint64 { return s.RefreshFailures }),
		counter("keyset_reads_total", "Reads of a scope's keyset from the key store.", func(s keys.Stats) uint64 { return s.KeyFileReads }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "blindfold", Subsystem: "keys", Name: "cached_scopes", Help: "Scopes whose data keys are cached now."},
			func() float64 { return float64(src.Stats().CachedScopes) }),
	}
	for _, c := range cs {
		if err := m.reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
