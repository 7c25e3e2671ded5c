// Package keystoree2e holds the acceptance tests of the shared key store (Vault KV version 2): several `blindfold proxy`
// processes, built from cmd/blindfold once per test binary, in front of the embedded Temporal server, their keysets in one
// KV folder and wrapped by Vault Transit (a real Vault: vaultdev).
//
// The tests cover timed rotation by three replicas at once under load (exactly one new primary key per rotation period, every
// payload still decodes on every replica) and a shred seen by two running replicas (both refuse the scope within their
// refresh period). They are skipped with -short.
package keystoree2e
