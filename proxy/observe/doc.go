// Package observe makes the proxy operable: Prometheus metrics (RPCs, payloads, errors, key cache) and OpenTelemetry
// tracing that costs nothing unless an exporter is configured.
//
// It lives outside package proxy so that the proxy core depends on neither metrics nor tracing libraries: Metrics
// plugs in through proxy.Config.Observer and proxy.Config.UnaryInterceptors, and Tracing through
// proxy.Config.ServerOptions and proxy.Config.DialOptions.
package observe
