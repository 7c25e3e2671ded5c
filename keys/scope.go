package keys

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/blindfold-dev/blindfold/codec"
)

// MaxScopeLen is the longest scope name accepted (codec.MaxScopeLen).
const MaxScopeLen = codec.MaxScopeLen

// ValidateScope is codec.ValidateScope, kept here beside the key administration that takes scope names.
func ValidateScope(scope string) error { return codec.ValidateScope(scope) }

// ScopeForNamespace is codec.ScopeForNamespace: the default namespace-to-scope rule, the scope a Manager seals with for a
// codec.Target without a Scope.
func ScopeForNamespace(namespace string) string { return codec.ScopeForNamespace(namespace) }

// KeyID formats the id of Tink key tinkID in scope, e.g. "default/1a2b3c4d".
func KeyID(scope string, tinkID uint32) string {
	return fmt.Sprintf("%s/%08x", scope, tinkID)
}

// ParseKeyID splits a key id into its scope and Tink key id. Malformed ids return an error wrapping codec.ErrUnknownKey.
func ParseKeyID(id string) (scope string, tinkID uint32, err error) {
	i := strings.LastIndexByte(id, '/')
	if i < 0 {
		return "", 0, fmt.Errorf("%w: malformed key id %q: want SCOPE/8-HEX-DIGITS", codec.ErrUnknownKey, printable(id))
	}
	scope, hexID := id[:i], id[i+1:]
	if err := ValidateScope(scope); err != nil {
		return "", 0, fmt.Errorf("%w: malformed key id %q: %v", codec.ErrUnknownKey, printable(id), err)
	}
	if len(hexID) != 8 || strings.ToLower(hexID) != hexID {
		return "", 0, fmt.Errorf("%w: malformed key id %q: want 8 lowercase hex digits after the scope", codec.ErrUnknownKey, printable(id))
	}
	n, perr := strconv.ParseUint(hexID, 16, 32)
	if perr != nil {
		return "", 0, fmt.Errorf("%w: malformed key id %q: want 8 lowercase hex digits after the scope", codec.ErrUnknownKey, printable(id))
	}
	return scope, uint32(n), nil
}

// printable bounds and quotes untrusted ids before they reach error messages and logs.
func printable(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
