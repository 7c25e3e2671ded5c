// Package codec seals and opens Temporal payloads in the Blindfold envelope: Tink AEAD over the whole original payload, optionally
// compressed, bound to its key, its namespace and — from format v2, which it writes by default — to what it belongs to inside the
// namespace (a workflow, a schedule, a batch job...: a Binding). Format v1 envelopes stay readable forever; WithWriteFormat(1) keeps
// writing them while a fleet upgrades.
//
// The package is pure: it does no network or file I/O. Keys come from a Keyring, which the keys package implements.
//
// Codec.Encode and Codec.Decode take the namespace with every call; Codec.EncodeFor takes a Target, which also names the key scope to
// seal with (the scope a policy chose; empty for the keyring's default) and the Binding, so both are explicit values, never context
// values. Codec.DecodeFor takes an Expect, whose Accept callback sees the binding each envelope claims before anything is decrypted
// and may refuse it (ErrWrongBinding); the claim is authenticated by the decryption that follows.
// Codec.ForNamespace gives a NamespaceCodec that fits the Temporal SDK's converter.PayloadCodec chain. Encoding an envelope again is a no-op, and decoding passes payloads that are not envelopes through unchanged.
// Errors for bad payloads wrap exactly one of the sentinel errors in keyring.go and binding.go, which also names the errors a Keyring returns
// (ErrUnknownKey, ErrKeyDestroyed, ErrKeyRejected, ErrKeyUnavailable) so that callers map them without knowing the key provider.
// Scope names (ValidateScope, ScopeForNamespace) are defined here too: they are part of every key id. KeyIDIn, BindingOf and
// IsEncrypted read an envelope's claims without opening it; IsSealed is the strict test of whether a payload is already sealed. The formats are specified byte by byte in docs/format.md, with
// test vectors in testdata/. The codectest package offers an in-memory Keyring for tests.
package codec
