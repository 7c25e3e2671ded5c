// Package keys holds Blindfold's data keys: per-scope Tink keysets wrapped by a key-encryption key, with rotation, caching and crypto-shredding, behind codec.Keyring.
//
// # Scopes
//
// A scope is a named key domain. Every seal names its scope explicitly in the
// codec.Target it gets (the proxy puts there the scope its policy chose for the
// namespace or tenant); a Target without a scope uses the namespace's own scope
// (see codec.ScopeForNamespace, also here as ScopeForNamespace, for how a
// namespace name becomes a scope name).
//
// # Keys and key ids
//
// Each scope has a Tink keyset of AES-256-GCM data keys (DEKs). Rotate adds a
// new primary key; older keys stay in the keyset for opening. A key id is
// "<scope>/<tink key id as 8 lowercase hex digits>", e.g. "default/1a2b3c4d".
//
// # Wrapping
//
// A keyset is stored only wrapped by a KEK, with the scope name (and the
// keys' creation times) as associated data, so a wrapped keyset copied into
// another scope's file does not unwrap. The local provider (LocalKEK, DirStore)
// keeps a 32-byte master key in <dir>/master.key (or BLINDFOLD_MASTER_KEY) and
// one file per scope in <dir>/scopes/<scope>.keyset.
//
// # Caching
//
// Unwrapped keysets are cached per scope (LRU, bounded, TTL). In steady state
// SealingKey and OpeningKey do no file and no KEK work. A cached keyset is
// refreshed after RefreshAfter (default half the TTL) and when an opening key id
// is not in it (rate-limited), so rotations by other processes are picked up. If
// a refresh fails the cached keyset keeps serving until its TTL ends; after that
// the Manager fails closed with an error wrapping ErrUnavailable.
//
// Key ids come from envelopes, which the backend may forge. Scopes with nothing
// stored are remembered apart from real ones (WithNegativeCacheSize), so forged
// scopes never evict real keysets; and an unknown id in a cached scope re-reads
// only the store, asking the KEK only if the stored keyset changed.
//
// # Crypto-shredding
//
// Shred deletes a scope's keyset and records a tombstone. Afterwards every key
// id of that scope fails with an error wrapping codec.ErrKeyDestroyed, in this
// process at once and in other processes at their next refresh (at most the
// cache TTL later). What the package cannot promise: overwriting and removing a
// file does not reliably erase it on journaling or copy-on-write filesystems,
// SSDs, snapshots or backups of the key directory. The durable guarantee comes
// from the KEK: once every copy of the wrapped keyset or of the KEK that wraps it
// is gone, the data keys are gone. With the local provider, back up the key
// directory with that in mind (a backup taken before a shred still opens the
// shredded keys); to make such copies useless too, re-wrap everything under a
// new master key and destroy the old one (no command does this yet). A Vault Transit KEK per scope gives
// the stronger guarantee: shredding deletes the Transit key itself.
//
// # Errors
//
// The sentinels codec.Keyring's contract names are what SealingKey and OpeningKey
// return, so callers that only know the codec package classify them:
// ErrScopeNotFound wraps codec.ErrUnknownKey, ErrUnwrap codec.ErrKeyRejected,
// ErrUnavailable codec.ErrKeyUnavailable, and ErrInvalidScope is codec.ErrInvalidScope.
//
// # Vault Transit
//
// The Vault Transit KEK is in the subpackage keys/vault, so that programs without
// Vault do not link its client: it wraps each scope's keyset with its own Transit
// key and implements ScopeDestroyer (Shred deletes the scope's Transit key first;
// a keyset whose Transit key is gone counts as shredded, even one restored from a
// backup) and Rewrapper (Rewrap moves stored keysets to the newest Transit key
// version inside Vault). StartRotation rotates data keys on a timer. See docs/vault.md.
//
// # KEK plugins
//
// Any other key service plugs in as a separate process speaking the gRPC protocol
// of the subpackage keys/kekplugin (Wrap, Unwrap, Health), whose KEK is a client of
// it. See docs/kek-plugin.md.
package keys
