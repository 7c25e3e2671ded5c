// Package testenv holds the fixtures Blindfold's tests share, so that each is written once: a throwaway PKI, polling
// until a deadline, a raw gRPC forwarder, discard loggers, a log-capture buffer and loopback serving.
//
// It imports no Blindfold package, so every test may use it, the internal tests of proxy and policy included, and
// the bench (which is not a test) may use its forwarder. A gateway in front of a dev stack, started the way the
// binary starts it, is in the subpackage gatewayenv, which imports internal/gateway.
package testenv
