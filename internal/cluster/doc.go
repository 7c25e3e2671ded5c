// Package cluster runs Blindfold's production path on one machine, every part its own process on loopback: a real
// PostgreSQL (the Debian package's initdb and pg_ctl, in a temporary directory), a real Vault with Transit
// (vaultdev), the Temporal server on PostgreSQL with SQL visibility (`blindfold dev --db … --headless`, the same
// embedded server as the dev stack, in its own process so that it can be restarted), several `blindfold proxy`
// replicas wrapping their keys with Vault Transit, and `blindfold xds` load-balancing proxyless gRPC clients over
// them.
//
// Run drives it: a fault-free comparison of the same load through the replicas and straight to the frontend, then a
// run of workflows (activity, signal, timer each) during which a replica is SIGKILLed and restarted, the Temporal
// server is restarted and Vault is stopped; then it checks every result, that each workflow ran exactly once, and
// that pg_dump of the databases holds none of the plaintext the workflows carried.
//
// The end-to-end test (internal/e2e/clustere2e) and the bench scenario "cluster" both use it.
package cluster
