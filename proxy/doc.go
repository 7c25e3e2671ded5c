// Package proxy is the Blindfold gRPC proxy: it serves Temporal's WorkflowService by forwarding every call to an upstream
// frontend, encrypting every payload (and failure text) on requests and decrypting them on responses, so the backend only
// ever stores ciphertext.
//
// The namespace of a call is always taken from the request message itself, never from a caller-supplied header, and it
// is handed to the codec so that every ciphertext is bound to it. OperatorService calls and the namespace-less
// WorkflowService calls pass through unchanged; gRPC health is served by the proxy itself.
//
// The proxy fails closed: a request whose payloads cannot all be encrypted is rejected with a gRPC status and nothing is
// forwarded; a response that cannot be decrypted is replaced by a status naming the cause (for example the key id).
package proxy
