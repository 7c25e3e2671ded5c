// Package vaultdevproc builds and runs the vaultdev binary (a real Vault with
// Transit, from the separate module in internal/vaultdev) for tests and the
// dev stack, so the main module never links Vault's server code.
//
// Start(t, Options{}) gives a Vault on a free loopback port with a root token;
// Options.StorageDir makes Transit keys survive Restart, which outage tests
// need. Build compiles the nested module with the go command on first use
// (minutes on a cold build cache); set BLINDFOLD_VAULTDEV to a prebuilt binary
// to skip that.
package vaultdevproc
