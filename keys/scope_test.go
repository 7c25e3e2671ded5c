package keys_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/keys"
)

func TestValidateScope(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		scope string
		ok    bool
	}{
		{"default", true},
		{"Tenant-42_prod.v2", true},
		{"_x", true},
		{strings.Repeat("a", keys.MaxScopeLen), true},
		{"", false},
		{".hidden", false},
		{"..", false},
		{"a/b", false},
		{"../etc", false},
		{"a b", false},
		{"naïve", false},
		{"a\x00b", false},
		{strings.Repeat("a", keys.MaxScopeLen+1), false},
	} {
		err := keys.ValidateScope(tc.scope)
		if tc.ok != (err == nil) {
			t.Errorf("ValidateScope(%q) = %v, want ok=%v", tc.scope, err, tc.ok)
		}
		if err != nil && !errors.Is(err, keys.ErrInvalidScope) {
			t.Errorf("ValidateScope(%q) = %v, want ErrInvalidScope", tc.scope, err)
		}
	}
}

func TestScopeForNamespace(t *testing.T) {
	t.Parallel()
	seen := map[string]string{}
	for _, tc := range []struct {
		ns       string
		verbatim bool
	}{
		{"default", true},
		{"payments.prod", true},
		{"my ns", false},
		{"_reserved", false},
		{".dot", false},
		{"ns/with/slash", false},
		{"ünïcode", false},
		{strings.Repeat("n", 300), false},
		{"", false},
	} {
		s := keys.ScopeForNamespace(tc.ns)
		if err := keys.ValidateScope(s); err != nil {
			t.Errorf("ScopeForNamespace(%q) = %q: %v", tc.ns, s, err)
		}
		if tc.verbatim != (s == tc.ns) {
			t.Errorf("ScopeForNamespace(%q) = %q, verbatim want %v", tc.ns, s, tc.verbatim)
		}
		if !tc.verbatim && !strings.HasPrefix(s, "_") {
			t.Errorf("ScopeForNamespace(%q) = %q, want the hashed form", tc.ns, s)
		}
		if prev, dup := seen[s]; dup {
			t.Errorf("namespaces %q and %q share scope %q", prev, tc.ns, s)
		}
		seen[s] = tc.ns
	}
	// A namespace named like another's hashed scope must not land in it.
	hashed := keys.ScopeForNamespace("my ns")
	if keys.ScopeForNamespace(hashed) == hashed {
		t.Errorf("namespace %q maps to the hashed scope of \"my ns\"", hashed)
	}
}

func TestParseKeyID(t *testing.T) {
	t.Parallel()
	scope, n, err := keys.ParseKeyID("default/1a2b3c4d")
	if err != nil || scope != "default" || n != 0x1a2b3c4d {
		t.Fatalf("ParseKeyID = %q %x %v", scope, n, err)
	}
	if got := keys.KeyID("default", 0x1a2b3c4d); got != "default/1a2b3c4d" {
		t.Fatalf("KeyID = %q", got)
	}
	if got := keys.KeyID("s", 7); got != "s/00000007" {
		t.Fatalf("KeyID = %q", got)
	}
	for _, id := range []string{
		"",
		"default",
		"default/",
		"/1a2b3c4d",
		"default/1a2b3c4",
		"default/1a2b3c4d5",
		"default/1A2B3C4D",
		"default/zzzzzzzz",
		"default/+1a2b3c4",
		"default/0x1a2b3c",
		".hidden/1a2b3c4d",
		"a/b/1a2b3c4d",
		"../../etc/1a2b3c4d",
		strings.Repeat("x", 1000) + "/1a2b3c4d",
	} {
		if _, _, err := keys.ParseKeyID(id); !errors.Is(err, codec.ErrUnknownKey) {
			t.Errorf("ParseKeyID(%q) = %v, want ErrUnknownKey", id, err)
		}
	}
}
