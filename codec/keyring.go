package codec

import (
	"context"
	"errors"

	"github.com/tink-crypto/tink-go/v2/tink"
)

// Target says what a payload is sealed for, the way the Temporal SDK's SerializationContext says what it serializes for: the
// namespace the envelope is bound to, and the key scope whose primary key seals it. It is passed explicitly with every seal, so a
// scope chosen by a policy cannot get lost between the caller and the keyring.
type Target struct {
	// Namespace is the Temporal namespace the envelope is bound to (through the associated data).
	Namespace string
	// Scope is the key scope to seal with. Empty means the keyring's default scope for Namespace (for the keys package,
	// ScopeForNamespace(Namespace)). A non-empty Scope must pass ValidateScope.
	Scope string
	// Binding is what the envelope belongs to inside Namespace (format v2): the workflow, schedule, batch job... whose
	// payload it is. The zero value binds to the namespace only.
	Binding Binding
}

// Keyring is what the codec needs from a key provider. The keys package implements it; tests may use any in-memory Tink keyset.
//
// Implementations must be safe for concurrent use and fast in steady state: both methods are on the hot path of every payload, so they are expected to answer from a cache.
//
// Errors are part of the contract, so that callers (the proxy) can map them to gRPC codes and HTTP statuses
// without knowing the provider. An error about a key wraps:
//   - ErrUnknownKey when the key (or its scope) does not exist;
//   - ErrKeyDestroyed when it was crypto-shredded;
//   - ErrKeyRejected when the key service refused to unwrap it (final);
//   - ErrKeyUnavailable when the key service could not be asked and no cached key is left (retryable);
//   - ErrInvalidScope when the Target's scope is not a valid scope name.
//
// An error may wrap both ErrKeyRejected and ErrKeyUnavailable (a refused reload past the cache's lifetime); it is final, so
// callers test ErrKeyRejected first. Any other error is the provider's own failure.
type Keyring interface {
	// SealingKey returns the key new payloads for t are sealed with: the primary key of t.Scope, or of the keyring's default scope
	// for t.Namespace when t.Scope is empty. A keyring must never seal with another scope than the one asked for.
	SealingKey(ctx context.Context, t Target) (Key, error)
	// OpeningKey returns the key whose ID is id, to open a payload of namespace.
	// It returns an error wrapping ErrUnknownKey when no such key exists and ErrKeyDestroyed when the key was shredded.
	OpeningKey(ctx context.Context, namespace, id string) (Key, error)
}

// Key is one data-encryption key as the codec uses it.
type Key struct {
	// ID names the key in the envelope metadata and in the associated data. It is printable ASCII, e.g. "default/1a2b3c4d" (scope, then the Tink key id in hex).
	ID string
	// AEAD seals and opens with this key. Its ciphertext may carry a Tink output prefix.
	AEAD tink.AEAD
}

// Errors callers branch on. Every error the codec returns for bad input wraps exactly one of the first eight or ErrWrongBinding (binding.go); the key errors
// (ErrUnknownKey, ErrKeyDestroyed, ErrKeyRejected, ErrKeyUnavailable, ErrInvalidScope) come from the Keyring (see its contract).
var (
	// ErrTampered: the ciphertext, its metadata, its header or its associated data was changed (authentication failed). A v2
	// envelope opened in another namespace than it was sealed for fails this way too (v2 does not store the namespace).
	ErrTampered = errors.New("payload authentication failed (tampered, or sealed for another namespace or key)")
	// ErrTruncated: the envelope is shorter than its format allows.
	ErrTruncated = errors.New("payload envelope truncated")
	// ErrUnknownKey: the envelope names a key the keyring does not have (or a scope that has no keys).
	ErrUnknownKey = errors.New("unknown key")
	// ErrKeyDestroyed: the envelope's key was crypto-shredded; the payload can never be opened again.
	ErrKeyDestroyed = errors.New("key destroyed")
	// ErrWrongNamespace: the v1 envelope says it was sealed for another namespace. (v2 envelopes do not say: ErrTampered.)
	ErrWrongNamespace = errors.New("payload sealed for another namespace")
	// ErrUnsupportedVersion: the envelope's format version is not one this codec reads.
	ErrUnsupportedVersion = errors.New("unsupported envelope format version")
	// ErrMalformed: the envelope's metadata or its decrypted content is not well formed.
	ErrMalformed = errors.New("malformed payload envelope")
	// ErrDecodedTooLarge: a compressed body expands past the per-payload cap (WithMaxDecodedSize), or past what is
	// left of the decode's budget (WithMaxDecodedTotal, DecodeBudget). The envelope may be authentic; the limit refused it.
	ErrDecodedTooLarge = errors.New("decoded payloads too large")

	// ErrKeyRejected: the key service refused to unwrap the key (wrong key-encryption key, a tampered or moved keyset, a key
	// version below the service's minimum). Retrying does not help.
	ErrKeyRejected = errors.New("key rejected by the key service")
	// ErrKeyUnavailable: the key service (key-encryption key, key store) could not be reached and no cached key is left.
	// Retryable: nothing was sealed or opened.
	ErrKeyUnavailable = errors.New("key service unavailable")
)
