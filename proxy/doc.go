// Package proxy is the Blindfold gRPC proxy: it serves Temporal's WorkflowService by forwarding every call to an upstream
// frontend, encrypting every payload (and failure text) on requests and decrypting them on responses, so the backend only
// ever stores ciphertext.
//
// The namespace of a call is always taken from the request message itself, never from a caller-supplied header, and it
// is handed to the codec so that every ciphertext is bound to it. OperatorService calls and the namespace-less
// WorkflowService calls pass through unchanged; gRPC health is served by the proxy itself.
//
// With Config.Policy (a policy.Store, see docs/policy.md) each RPC takes one snapshot of the policy when it is admitted:
// the namespace's entry decides whether it is served at all, what is encrypted (memo, headers, failure text, which
// search attributes), whether plaintext from SDKs is encrypted, rejected or passed, and the key scope (fixed or per
// tenant, passed to the codec with every seal as codec.Target.Scope). Codec errors become gRPC codes by the codec
// package's sentinels alone (codec.ErrKeyUnavailable is Unavailable; a rejected, unknown or destroyed key
// FailedPrecondition; tampering DataLoss).
//
// With Config.Auth the proxy also knows its callers: the identity of a verified client certificate (SPIFFE ID or
// subject DN, with its SANs) or of a bearer token (TokenVerifier: the codec endpoint's OIDC and static-token
// verifiers), and every WorkflowService and OperatorService call is authorized by the access rules of the same
// policy snapshot: the caller needs one of the method's actions (MethodActions: worker, client-write, client-read,
// admin) on the request's namespace. Refusals are PermissionDenied or Unauthenticated, audited and counted.
//
// The proxy fails closed: a request whose payloads cannot all be encrypted is rejected with a gRPC status and nothing is
// forwarded; a response that cannot be decrypted is replaced by a status naming the cause (for example the key id).
package proxy
