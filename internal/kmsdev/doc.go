// Package kmsdev runs a real AWS KMS implementation, local-kms (github.com/nsmithuk/local-kms, MIT), on loopback, for
// Blindfold's tests only.
//
// It lives in its own Go module so that local-kms and its dependencies (the v1 AWS SDK, leveldb) never enter the main
// module; the main module starts the kmsdev binary through internal/kmsdevproc instead. local-kms speaks the KMS JSON
// protocol that the AWS SDKs use, implements symmetric keys with encryption contexts, key states (enabled, disabled,
// pending deletion) and aliases, and keeps its keys in a leveldb directory, so a restarted process keeps them. It is a
// test fixture, never a production KMS: key material is stored unencrypted in that directory.
package kmsdev
