// Package gateway builds the running Blindfold gateway from one Config: it opens the keys, builds the codec, the gRPC
// proxy, the auditors' codec endpoint, metrics, health and tracing, and owns their start, drain and stop.
//
// It is the one assembly: `blindfold proxy`, `blindfold dev` (through internal/dev), the bench and the test fixtures
// all start the gateway here, so what the tests exercise is what the binary ships. Start rolls back whatever it
// started when a later part fails. The package links neither the Temporal server nor the Web UI server, so the
// production binary built without the dev stack stays small.
//
// Where things go: a new key-encryption key provider is one more KEKKind in keys.go (OpenKeys); a new proxy setting is
// a ProxyConfig field passed to proxy.Config in Start; a new codec-endpoint setting is a CodecEndpointConfig field.
package gateway
