// Package keyse2e holds the workflow-level acceptance tests of the key-encryption keys, run once per KEK provider: the
// local master key, Vault Transit (vaultdev, file storage), AWS KMS (local-kms through kmsdev) and a PKCS#11 HSM
// (SoftHSM2), with a place for the KEK plugin. Each runs against the embedded Temporal server (one per test package), SDK
// clients and workers talking to it through the Blindfold proxy.
//
// The tests cover rotation mid-run (data keys everywhere; the KEK too where it rotates inside itself: Transit key
// versions with rewrap and min_decryption_version, a new KMS key with ReEncrypt), a KEK outage during a stream of
// workflows (within and past the key cache TTL, and recovery; for the KEKs that run as a service of their own), the KEK
// call count in steady state (zero per payload), and crypto-shredding a scope seen from a history read through the proxy,
// including a key directory restored from a backup once the KEK key is destroyed. They are skipped with -short.
package keyse2e
