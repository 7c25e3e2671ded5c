package keys

import (
	"errors"

	"github.com/blindfold-dev/blindfold/codec"
)

// Errors callers branch on. Errors about key ids additionally wrap codec.ErrUnknownKey or codec.ErrKeyDestroyed. The sentinels
// that codec.Keyring's contract knows wrap its codec sentinel (errors.Is matches both), so callers that only know the codec package
// map them alike: ErrScopeNotFound is a codec.ErrUnknownKey, ErrUnwrap a codec.ErrKeyRejected, ErrUnavailable a
// codec.ErrKeyUnavailable, and ErrInvalidScope is codec.ErrInvalidScope.
var (
	// ErrInvalidScope: the scope name is not usable (see ValidateScope).
	ErrInvalidScope = codec.ErrInvalidScope
	// ErrScopeNotFound: the scope has no keyset and auto-creation is off.
	ErrScopeNotFound error = &kindError{msg: "scope has no keyset", kind: codec.ErrUnknownKey}
	// ErrScopeExists: Create was asked for a scope that already has a keyset.
	ErrScopeExists = errors.New("scope already has a keyset")
	// ErrUnwrap: a stored keyset could not be unwrapped: wrong master key/KEK, a tampered file, or a keyset moved from another scope.
	ErrUnwrap error = &kindError{msg: "keyset cannot be unwrapped", kind: codec.ErrKeyRejected}
	// ErrUnavailable: a scope's keyset could not be loaded (KEK or store failing) and no cached copy within its TTL is left.
	ErrUnavailable error = &kindError{msg: "keys unavailable", kind: codec.ErrKeyUnavailable}
	// ErrInsecurePermissions: the master key file is readable or writable by group or others.
	ErrInsecurePermissions = errors.New("insecure key file permissions")
	// ErrBadMasterKey: the master key (file or environment variable) is not 32 base64-encoded bytes.
	ErrBadMasterKey = errors.New("malformed master key")
	// ErrKEKKeyMissing: the KEK has no key for the scope (a Vault Transit key that was deleted by a shred, or never existed at the
	// configured address, namespace and mount). Ciphertext wrapped under a deleted KEK key can never be unwrapped again, so the
	// Manager treats it as a shredded scope.
	ErrKEKKeyMissing = errors.New("kek key not found")
	// ErrRewrapUnsupported: the KEK cannot re-wrap ciphertext inside itself (the local master key has no versions to re-wrap to).
	ErrRewrapUnsupported = errors.New("kek does not support rewrap")
)

// kindError is a sentinel of this package that is also one of the codec's: its message stays this package's (error texts
// are matched by operators and tests), and errors.Is finds the codec sentinel through Unwrap.
type kindError struct {
	msg  string
	kind error
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.kind }
