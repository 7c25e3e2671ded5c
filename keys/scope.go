package keys

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/blindfold-dev/blindfold/codec"
)

// MaxScopeLen is the longest scope name accepted.
const MaxScopeLen = 200

// hashedScopePrefix starts every scope derived by hashing a namespace name. Verbatim scope names never start with it, so the mapping stays injective.
const hashedScopePrefix = "_"

// ValidateScope reports whether scope is a valid scope name: 1 to MaxScopeLen characters from [A-Za-z0-9._-], not starting with a dot.
// Scope names become file names, so anything else is refused.
func ValidateScope(scope string) error {
	if scope == "" {
		return fmt.Errorf("%w: empty", ErrInvalidScope)
	}
	if len(scope) > MaxScopeLen {
		return fmt.Errorf("%w: %d characters, at most %d allowed", ErrInvalidScope, len(scope), MaxScopeLen)
	}
	if scope[0] == '.' {
		return fmt.Errorf("%w: %q starts with a dot", ErrInvalidScope, scope)
	}
	for i := 0; i < len(scope); i++ {
		if !scopeByte(scope[i]) {
			return fmt.Errorf("%w: %q contains %q; allowed are A-Z a-z 0-9 . _ -", ErrInvalidScope, scope, scope[i])
		}
	}
	return nil
}

func scopeByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
}

// ScopeForNamespace is the default namespace-to-scope rule.
//
// A namespace that is a valid scope name and does not start with "_" is its own scope ("default" → "default").
// Any other namespace (other characters, a leading dot or underscore, longer than MaxScopeLen)
// maps to "_" followed by the hex SHA-256 of its name, so every namespace gets its own valid scope
// and no namespace can choose a name that lands in another namespace's scope.
func ScopeForNamespace(namespace string) string {
	if !strings.HasPrefix(namespace, hashedScopePrefix) && ValidateScope(namespace) == nil {
		return namespace
	}
	sum := sha256.Sum256([]byte(namespace))
	return hashedScopePrefix + hex.EncodeToString(sum[:])
}

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
