// Package vaulte2e holds the workflow-level acceptance tests of the Vault Transit KEK: a real Vault (vaultdev, file storage),
// the embedded Temporal server, and SDK clients and workers talking to it through the Blindfold proxy.
//
// The tests cover rotation mid-run (Transit key versions and data keys, rewrap, min_decryption_version), a Vault outage
// during a stream of workflows (within and past the key cache TTL, and recovery), the Vault call count in steady state,
// and crypto-shredding a scope seen from a history read through the proxy. They are skipped with -short.
package vaulte2e
