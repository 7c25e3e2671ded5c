// Package kmsdevproc builds and runs kmsdev (internal/kmsdev: local-kms, a real AWS KMS implementation, on loopback) as a
// subprocess for tests, so the main module never imports local-kms. Start builds the binary once per test binary (or
// takes $BLINDFOLD_KMSDEV), starts it on a free loopback port with a key database in a directory of the test's, and stops
// it when the test ends; Stop and Restart simulate a KMS outage, and the keys survive a restart.
package kmsdevproc
