// Package authze2e holds the end-to-end acceptance tests of "who may call the proxy": caller identities (client
// certificates with SPIFFE IDs, OIDC bearer tokens) and the access policy enforced on both doors of the gateway, the
// gRPC proxy and the auditors' codec endpoint. Everything is real: the embedded Temporal server with two namespaces,
// the gateway as internal/gateway assembles it, TLS from a throwaway CA, an in-process OIDC issuer, the Go SDK.
//
//   - matrix_test.go: three identities × two namespaces × every action, each cell allowed or denied exactly as the
//     policy says, through raw WorkflowService calls, the SDK and the codec endpoint; refusals counted and audited.
//   - reload_test.go: revoking a worker in the policy file stops it at its next call while the other worker completes
//     every workflow, none lost; a revocation reaches both doors; an invalid file changes nothing.
//   - tokens_test.go: expired, wrong-audience, wrong-issuer, unsigned and unknown-key tokens are refused on both doors,
//     a valid token is no more than its identity, OIDC and static tokens combine, a cached token ends at its expiry,
//     and the codec endpoint limits requests per IP before it verifies a token.
//   - certs_test.go: client certificates that do not verify, or verify but name no one the policy lets in.
//   - leak_test.go: a caller's token stops at the proxy; the hostile backend never receives it.
//   - startup_test.go: the gateway refuses to start listeners that would let anyone in.
//
// The tests are skipped with -short: they start the embedded server.
package authze2e
