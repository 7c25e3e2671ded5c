package codec

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Scope names are defined here, beside the envelope, because they are part of it: a key id is "<scope>/<8 hex digits>". Packages
// that only name scopes (policy) use them without linking a key provider.

// MaxScopeLen is the longest scope name accepted.
const MaxScopeLen = 200

// hashedScopePrefix starts every scope derived by hashing a namespace name. Verbatim scope names never start with it, so the mapping stays injective.
const hashedScopePrefix = "_"

// ErrInvalidScope: the scope name is not usable (see ValidateScope).
var ErrInvalidScope = errors.New("invalid scope name")

// ValidateScope reports whether scope is a valid scope name: 1 to MaxScopeLen characters from [A-Za-z0-9._-], not starting with a dot.
// Scope names become file names, so anything else is refused with an error wrapping ErrInvalidScope.
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
