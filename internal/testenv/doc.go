// Package testenv holds the fixtures Blindfold's tests share, so that each is written once: a throwaway PKI, polling
// until a deadline, a raw gRPC forwarder, loopback serving and dialing, local keys with a codec, discard loggers and a
// log-capture buffer.
//
// Of Blindfold's packages it imports only codec and keys, so the tests of every other package may use it, the
// internal tests of proxy and policy included, and the bench (which is not a test) may use its forwarder. A gateway
// in front of a dev stack, started the way the binary starts it, is in the subpackage gatewayenv, which imports
// internal/gateway.
package testenv
