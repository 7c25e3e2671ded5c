// Package clustere2e is the acceptance test of the production path (internal/cluster): the Temporal server on a real
// PostgreSQL (Debian package) with SQL visibility, three `blindfold proxy` replicas wrapping keys with Vault Transit,
// Go workers and clients load-balanced over them by `blindfold xds`, and faults under load — a replica SIGKILLed and
// restarted, the Temporal server restarted, Vault stopped. Every workflow must complete once with the right result,
// and pg_dump of the databases must hold none of their plaintext.
//
// It runs a reduced size (see cluster_test.go); `go run ./bench --scenario cluster` runs the full one. Without
// PostgreSQL installed it is skipped, unless BLINDFOLD_REQUIRE_POSTGRES=1 (scripts/test sets it after installing
// the package), and it is skipped with -short.
package clustere2e
