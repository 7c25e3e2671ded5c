package observe

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"
)

// Tracing holds the gRPC options that create OpenTelemetry spans for inbound calls and for the proxy's upstream calls.
// The zero Tracing (no exporter configured) has no options: tracing then costs nothing.
type Tracing struct {
	// ServerOptions go into proxy.Config.ServerOptions: a span per inbound call, continuing the caller's trace.
	ServerOptions []grpc.ServerOption
	// DialOptions go into proxy.Config.DialOptions: a span per upstream call, whose context travels upstream.
	DialOptions []grpc.DialOption

	provider *sdktrace.TracerProvider
}

// TracingEnabledByEnv reports whether the standard OpenTelemetry environment asks for trace export over OTLP:
// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set, and OTEL_TRACES_EXPORTER is not "none".
func TracingEnabledByEnv() bool {
	if strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER")), "none") {
		return false
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// StartTracing returns tracing options exporting spans over OTLP/gRPC when the environment configures an exporter
// (see TracingEnabledByEnv; the exporter reads the other standard OTEL_EXPORTER_OTLP_* variables itself, and the
// resource reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES), or the zero Tracing otherwise. serviceName is used
// when OTEL_SERVICE_NAME is not set. Call Shutdown to flush spans on exit.
func StartTracing(ctx context.Context, serviceName string) (*Tracing, error) {
	if !TracingEnabledByEnv() {
		return &Tracing{}, nil
	}
	exp, err := otlptracegrpc.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("create otlp trace exporter: %w", err)
	}
	res, err := resource.Merge(
		resource.NewSchemaless(attribute.String("service.name", serviceName)),
		resource.Environment(),
	)
	if err != nil {
		res = resource.Environment()
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return NewTracing(tp, tp), nil
}

// NewTracing returns tracing options that create spans with tp. owned, if not nil, is shut down by Shutdown (pass the
// provider StartTracing made; tests pass nil and keep ownership of theirs). Trace context travels in W3C traceparent and
// baggage headers, in and out.
func NewTracing(tp trace.TracerProvider, owned *sdktrace.TracerProvider) *Tracing {
	prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	return &Tracing{
		ServerOptions: []grpc.ServerOption{grpc.StatsHandler(otelgrpc.NewServerHandler(
			otelgrpc.WithTracerProvider(tp), otelgrpc.WithPropagators(prop), otelgrpc.WithFilter(notHealth)))},
		DialOptions: []grpc.DialOption{grpc.WithStatsHandler(otelgrpc.NewClientHandler(
			otelgrpc.WithTracerProvider(tp), otelgrpc.WithPropagators(prop)))},
		provider: owned,
	}
}

// notHealth leaves health checks untraced: load balancers call them every few seconds.
func notHealth(info *stats.RPCTagInfo) bool {
	return info == nil || !strings.HasPrefix(info.FullMethodName, "/grpc.health.v1.Health/")
}

// Enabled reports whether spans are being created.
func (t *Tracing) Enabled() bool { return len(t.ServerOptions) > 0 }

// Shutdown flushes buffered spans and stops the exporter. It is a no-op for the zero Tracing.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil || t.provider == nil {
		return nil
	}
	if err := t.provider.Shutdown(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("shut down tracing: %w", err)
	}
	return nil
}
