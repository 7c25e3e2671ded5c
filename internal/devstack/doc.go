// Package devstack runs a Temporal server (SQLite in a data directory) and, optionally, the Temporal Web UI in the current process, for `blindfold dev` and for tests.
//
// It follows the Temporal CLI's dev server: the SQLite schema and the
// namespaces are written to the database before the server starts, every
// service (frontend, history, matching, worker) listens on its own loopback
// port, and the server logs through zap at error level only.
//
// With [Config.Postgres] the server keeps its state in PostgreSQL instead (a
// server the caller runs; SQL visibility in a second database): the databases
// are created if missing and the schema is set up or updated before start with
// the server's own schema tooling (temporal-sql-tool's code, as a library).
//
// The Web UI always reads from the raw frontend of this stack, never from the
// Blindfold proxy: pointed at the proxy it would show decrypted payloads to
// anyone who can open the page. Decoding in the UI goes through the codec
// endpoint configured with [Config.UICodecEndpoint].
//
// Tests in other packages should use the devstacktest subpackage, which
// shares one stack per test binary.
package devstack
