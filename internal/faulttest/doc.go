// Package faulttest holds Blindfold's fault-injection tests: proxy killed and restarted, upstream Temporal restarted,
// Vault stopped, and a slow upstream, each against real parts on loopback, with bounded loops.
//
// The tests re-execute their own test binary as child processes (an embedded Temporal server, or a proxy) so that a
// fault can kill a whole process, and so that the goroutine-leak check sees only the proxy. The package has no
// non-test code.
package faulttest
