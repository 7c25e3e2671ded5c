// Package codec seals and opens Temporal payloads in the Blindfold envelope (format v1): Tink AEAD over the whole original payload, optionally compressed, bound to its key and namespace.
//
// The package is pure: it does no network or file I/O. Keys come from a Keyring, which the keys package implements.
package codec
