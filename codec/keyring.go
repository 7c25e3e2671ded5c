package codec

import (
	"context"
	"errors"

	"github.com/tink-crypto/tink-go/v2/tink"
)

// Keyring is what the codec needs from a key provider. The keys package implements it; tests may use any in-memory Tink keyset.
//
// Implementations must be safe for concurrent use and fast in steady state: both methods are on the hot path of every payload, so they are expected to answer from a cache.
type Keyring interface {
	// SealingKey returns the key new payloads of namespace are sealed with (the primary key of the namespace's scope).
	SealingKey(ctx context.Context, namespace string) (Key, error)
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

// Errors callers branch on. Every error the codec returns for bad input wraps exactly one of these.
var (
	// ErrTampered: the ciphertext, its metadata or its associated data was changed (authentication failed).
	ErrTampered = errors.New("payload authentication failed")
	// ErrTruncated: the envelope is shorter than its format allows.
	ErrTruncated = errors.New("payload envelope truncated")
	// ErrUnknownKey: the envelope names a key the keyring does not have.
	ErrUnknownKey = errors.New("unknown key")
	// ErrKeyDestroyed: the envelope's key was crypto-shredded; the payload can never be opened again.
	ErrKeyDestroyed = errors.New("key destroyed")
	// ErrWrongNamespace: the envelope was sealed for another namespace.
	ErrWrongNamespace = errors.New("payload sealed for another namespace")
	// ErrUnsupportedVersion: the envelope's format version is not one this codec reads.
	ErrUnsupportedVersion = errors.New("unsupported envelope format version")
	// ErrMalformed: the envelope's metadata or its decrypted content is not well formed.
	ErrMalformed = errors.New("malformed payload envelope")
)
