// Package codec seals and opens Temporal payloads in the Blindfold envelope (format v1): Tink AEAD over the whole original payload, optionally compressed, bound to its key and namespace.
//
// The package is pure: it does no network or file I/O. Keys come from a Keyring, which the keys package implements.
//
// Codec.Encode and Codec.Decode take the namespace with every call; Codec.EncodeFor takes a Target, which also names the key scope to
// seal with (the scope a policy chose; empty for the keyring's default), so the scope is an explicit value, never a context value.
// Codec.ForNamespace gives a NamespaceCodec that fits the Temporal SDK's converter.PayloadCodec chain. Encoding an envelope again is a no-op, and decoding passes payloads that are not envelopes through unchanged.
// Errors for bad payloads wrap exactly one of the sentinel errors in keyring.go, which also names the errors a Keyring returns
// (ErrUnknownKey, ErrKeyDestroyed, ErrKeyRejected, ErrKeyUnavailable) so that callers map them without knowing the key provider.
// Scope names (ValidateScope, ScopeForNamespace) are defined here too: they are part of every key id in the envelope. The format is specified byte by byte in docs/format.md, with
// test vectors in testdata/. The codectest package offers an in-memory Keyring for tests.
package codec
