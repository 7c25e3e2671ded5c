package keys

import "errors"

// Errors callers branch on. Errors about key ids additionally wrap codec.ErrUnknownKey or codec.ErrKeyDestroyed.
var (
	// ErrInvalidScope: the scope name is not usable (see ValidateScope).
	ErrInvalidScope = errors.New("invalid scope name")
	// ErrScopeNotFound: the scope has no keyset and auto-creation is off.
	ErrScopeNotFound = errors.New("scope has no keyset")
	// ErrScopeExists: Create was asked for a scope that already has a keyset.
	ErrScopeExists = errors.New("scope already has a keyset")
	// ErrUnwrap: a stored keyset could not be unwrapped: wrong master key/KEK, a tampered file, or a keyset moved from another scope.
	ErrUnwrap = errors.New("keyset cannot be unwrapped")
	// ErrUnavailable: a scope's keyset could not be loaded (KEK or store failing) and no cached copy within its TTL is left.
	ErrUnavailable = errors.New("keys unavailable")
	// ErrInsecurePermissions: the master key file is readable or writable by group or others.
	ErrInsecurePermissions = errors.New("insecure key file permissions")
	// ErrBadMasterKey: the master key (file or environment variable) is not 32 base64-encoded bytes.
	ErrBadMasterKey = errors.New("malformed master key")
)
