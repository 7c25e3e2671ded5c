package policy

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/blindfold-dev/blindfold/codec"
)

func TestExamplePolicy(t *testing.T) {
	t.Parallel()
	p, err := Load("../deploy/policy.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		ns, pattern string
		scope       string // for tenant entries: the scope of tenant "acme"
		mode        PlaintextMode
	}{
		{"default", "default", "default", PlaintextEncrypt},
		{"prod-eu", "prod-*", "prod", PlaintextEncrypt},
		{"saas", "saas", "saas.acme", PlaintextEncrypt},
		{"payments-us", "payments-*", "payments-us", PlaintextReject},
		{"legacy-reporting", "legacy-reporting", "legacy-reporting", PlaintextEncrypt},
	}
	for _, tc := range tests {
		r, err := p.Namespace(tc.ns)
		if err != nil {
			t.Fatalf("%s: %v", tc.ns, err)
		}
		if r.Pattern != tc.pattern || r.Plaintext != tc.mode {
			t.Errorf("%s: entry %q mode %s", tc.ns, r.Pattern, r.Plaintext)
		}
		if sc, err := r.ScopeFor(tc.ns, "acme"); err != nil || sc != tc.scope {
			t.Errorf("%s: scope %q, %v; want %q", tc.ns, sc, err, tc.scope)
		}
	}
	if _, err := p.Namespace("staging"); !errors.Is(err, ErrNoNamespaceRule) {
		t.Errorf("unlisted namespace: %v", err)
	}
	r, _ := p.Namespace("prod-eu")
	if !r.EncryptsSearchAttribute("CustomerNotes") || r.EncryptsSearchAttribute("CustomerId") {
		t.Error("search attribute choice wrong")
	}
	if r, _ := p.Namespace("legacy-reporting"); r.Encrypt.Failures || !r.Encrypt.Memo || !r.AllowPlaintext {
		t.Errorf("legacy-reporting: %+v", r)
	}
	var b bytes.Buffer
	if err := p.WriteSummary(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"saas" (line`, "keys: per tenant (header x-tenant or memo field tenant), scope {namespace}.{tenant}",
		"plaintext_from_sdk: reject", "plaintext: failure text", "access: 3 rules"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, b.String())
		}
	}
}

func TestNoNamespacesSection(t *testing.T) {
	t.Parallel()
	p, err := Parse("p.yaml", []byte("version: 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := p.Namespace("anything")
	if err != nil {
		t.Fatal(err)
	}
	if !r.Encrypt.Memo || !r.Encrypt.Headers || !r.Encrypt.Failures || r.Plaintext != PlaintextEncrypt || len(r.Encrypt.SearchAttributes) != 0 {
		t.Fatalf("defaults: %+v", r)
	}
	if sc, _ := r.ScopeFor("a b", ""); sc != codec.ScopeForNamespace("a b") {
		t.Fatalf("default scope %q", sc)
	}
	var nilPolicy *Policy
	if _, err := nilPolicy.Namespace("x"); err != nil {
		t.Fatal(err)
	}
}

func TestPrecedence(t *testing.T) {
	t.Parallel()
	p, err := Parse("p.yaml", []byte(`version: 1
namespaces:
  "*": {scope: catchall}
  "prod-*": {scope: prod}
  "prod-e?": {scope: prod-e}
  "prod-eu": {scope: exact}
  "p*": {scope: p}
  "prod-[a-z]*": {scope: same-literals-later}
  "*-us": {scope: us}
`))
	if err != nil {
		t.Fatal(err)
	}
	for ns, want := range map[string]string{
		"prod-eu":  "exact",    // exact name beats every pattern
		"prod-es":  "prod-e",   // 6 literal characters beat 5
		"prod-us":  "prod",     // "prod-*" and "prod-[a-z]*" tie at 5; "prod-*" was written first; "*-us" has 3
		"dev-us":   "us",       //
		"pizza":    "p",        //
		"staging":  "catchall", // "*" has no literal characters: last
		"prod-9x":  "prod",     //
		"prod-eux": "prod",     // "prod-e?" does not match
		"":         "catchall", //
		"prod-e":   "prod",     //
		"prodx-us": "us",       // "prod-*" does not match
		"p":        "p",        //
		"x-us":     "us",       //
		"prod-ab":  "prod",     //
		"prod-":    "prod",     //
		"prod-eX":  "prod-e",   //
		"q":        "catchall", //
		"prod-eu ": "prod",     // not the exact name
		"PROD-EU":  "catchall", // case-sensitive, as Temporal namespaces are
		"prod-eu2": "prod",     //
		"ppp":      "p",        //
		"prod-us2": "prod",     //
		"a-us":     "us",       //
		"p-us":     "us",       // "*-us" (3 literals) beats "p*" (1)
	} {
		r, err := p.Namespace(ns)
		if err != nil {
			t.Fatalf("%q: %v", ns, err)
		}
		if r.Scope != want {
			t.Errorf("%q matched %q (scope %s), want scope %s", ns, r.Pattern, r.Scope, want)
		}
	}
	var order []string
	for _, e := range p.Namespaces.Entries() {
		order = append(order, e.Pattern)
	}
	if got := strings.Join(order, " "); got != "prod-eu prod-e? prod-* prod-[a-z]* *-us p* *" {
		t.Errorf("precedence order: %s", got)
	}
}

func TestScopeAndTenant(t *testing.T) {
	t.Parallel()
	p, err := Parse("p.yaml", []byte(`version: 1
namespaces:
  fixed: {scope: "shared-{namespace}"}
  saas:
    tenant: {header: X-Tenant, default: free, allowed: [acme, free]}
  open:
    tenant: {memo: customer, scope: "t-{tenant}"}
`))
	if err != nil {
		t.Fatal(err)
	}
	fixed, _ := p.Namespace("fixed")
	if sc, err := fixed.ScopeFor("fixed", ""); err != nil || sc != "shared-fixed" {
		t.Errorf("fixed: %q %v", sc, err)
	}
	saas, _ := p.Namespace("saas")
	if saas.Tenant.Header != "x-tenant" {
		t.Errorf("header not lower-cased: %q", saas.Tenant.Header)
	}
	tests := []struct {
		rules   *NamespaceRules
		value   string
		found   bool
		want    string
		wantErr string
	}{
		{saas, "acme", true, "saas.acme", ""},
		{saas, "", false, "saas.free", ""},
		{saas, "", true, "saas.free", ""},
		{saas, "globex", true, "", `"globex" is not an allowed tenant`},
		{saas, "a.b", true, "", "not a valid tenant name"},
		{saas, "../x", true, "", "not a valid tenant name"},
		{saas, strings.Repeat("x", 65), true, "", "not a valid tenant name"},
	}
	open, _ := p.Namespace("open")
	tests = append(tests,
		struct {
			rules   *NamespaceRules
			value   string
			found   bool
			want    string
			wantErr string
		}{open, "anyone", true, "t-anyone", ""},
		struct {
			rules   *NamespaceRules
			value   string
			found   bool
			want    string
			wantErr string
		}{open, "", false, "", "names no tenant (memo field customer)"})
	for _, tc := range tests {
		tn, err := tc.rules.Tenant.ResolveTenant(tc.value, tc.found)
		if tc.wantErr != "" {
			if err == nil || !errors.Is(err, ErrTenant) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s %q: error %v, want %q", tc.rules.Pattern, tc.value, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s %q: %v", tc.rules.Pattern, tc.value, err)
			continue
		}
		sc, err := tc.rules.ScopeFor(tc.rules.Pattern, tn)
		if err != nil || sc != tc.want {
			t.Errorf("%s %q: scope %q %v, want %q", tc.rules.Pattern, tc.value, sc, err, tc.want)
		}
	}
	// A namespace that is not a valid scope name is hashed, as codec.ScopeForNamespace does, so the tenant scope stays valid.
	wild, err := Parse("p.yaml", []byte("version: 1\nnamespaces:\n  \"*\": {tenant: {header: x-t}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	r, _ := wild.Namespace("_x")
	if sc, err := r.ScopeFor("_x", "acme"); err != nil || sc != codec.ScopeForNamespace("_x")+".acme" || !strings.HasPrefix(sc, "_") {
		t.Errorf("hashed namespace: %q %v", sc, err)
	}
}

func TestSealScope(t *testing.T) {
	t.Parallel()
	p, err := Parse("p.yaml", []byte(`version: 1
namespaces:
  fixed: {scope: shared}
  saas: {tenant: {header: x-tenant}}
  withdefault: {tenant: {header: x-tenant, default: house}}
  "*": {}
`))
	if err != nil {
		t.Fatal(err)
	}
	store := StaticStore(p)
	for ns, want := range map[string]string{"fixed": "shared", "saas": "saas", "withdefault": "withdefault.house", "other": "other"} {
		if got, err := store.SealScope(ns); got != want || err != nil {
			t.Errorf("%s: %q %v, want %q", ns, got, err, want)
		}
	}
	empty, _ := Parse("p.yaml", []byte("version: 1\nnamespaces: {x: {}}\n"))
	if got, err := StaticStore(empty).SealScope("unlisted"); got != "unlisted" || err != nil {
		t.Errorf("unlisted namespace: %q %v", got, err)
	}
}

func TestNamespaceErrors(t *testing.T) {
	t.Parallel()
	const head = "version: 1\nnamespaces:\n"
	tests := []struct {
		name string
		yaml string   // appended to head; line 3 is the first line of the section
		want []string // substrings, each with file:line:col
	}{
		{"not a mapping", "  - default\n", []string{"p.yaml:3:3: namespaces: expected a mapping, got a list"}},
		{"section null", "", []string{"p.yaml:2:12: namespaces: expected a mapping, got null"}},
		{"empty key", "  \"\": {}\n", []string{"p.yaml:3:3: namespaces.: namespace name or pattern must not be empty"}},
		{"non-string key", "  7: {}\n", []string{"p.yaml:3:3: namespaces: keys must be strings"}},
		{"bad pattern", "  \"prod-[\": {}\n", []string{`p.yaml:3:3: namespaces.prod-[: invalid namespace pattern "prod-["`}},
		{"duplicate entry", "  a: {}\n  a: {}\n", []string{"p.yaml:4:3: namespaces.a: duplicate key (first defined on line 3)"}},
		{"entry not a mapping", "  a: true\n", []string{"p.yaml:3:6: namespaces.a: expected a mapping, got bool true"}},
		{"unknown field", "  a: {scopes: x}\n", []string{"p.yaml:3:7: namespaces.a.scopes: unknown field (known: scope, tenant, encrypt, plaintext_from_sdk, adoption, nexus_peers, allow_plaintext)"}},
		{"scope type", "  a: {scope: [x]}\n", []string{"p.yaml:3:14: namespaces.a.scope: expected a string, got a list"}},
		{"scope chars", "  a: {scope: \"a/b\"}\n", []string{`p.yaml:3:14: namespaces.a.scope: "a/b" does not make a valid key scope`}},
		{"scope dot", "  a: {scope: \".hidden\"}\n", []string{`namespaces.a.scope: ".hidden" does not make a valid key scope`}},
		{"scope placeholder", "  a: {scope: \"{ns}\"}\n", []string{`p.yaml:3:14: namespaces.a.scope: unknown placeholder in "{ns}"`}},
		{"scope tenant placeholder", "  a: {scope: \"x-{tenant}\"}\n", []string{"p.yaml:3:14: namespaces.a.scope: {tenant} is only known in tenant.scope"}},
		{"scope and tenant", "  a:\n    scope: s\n    tenant: {header: x-t}\n", []string{"p.yaml:5:5: namespaces.a.tenant: scope and tenant are mutually exclusive"}},
		{"tenant not a mapping", "  a: {tenant: x-tenant}\n", []string{`p.yaml:3:15: namespaces.a.tenant: expected a mapping, got string "x-tenant"`}},
		{"tenant unknown field", "  a: {tenant: {header: x-t, hdr: y}}\n", []string{"p.yaml:3:29: namespaces.a.tenant.hdr: unknown field (known: header, memo, default, allowed, scope)"}},
		{"tenant source missing", "  a: {tenant: {default: x}}\n", []string{"p.yaml:3:15: namespaces.a.tenant: needs header or memo"}},
		{"tenant header chars", "  a: {tenant: {header: \"x tenant\"}}\n", []string{`p.yaml:3:24: namespaces.a.tenant.header: "x tenant" is not a valid gRPC metadata key`}},
		{"tenant header reserved", "  a: {tenant: {header: Authorization}}\n", []string{`namespaces.a.tenant.header: "Authorization" is reserved`}},
		{"tenant header binary", "  a: {tenant: {header: x-tenant-bin}}\n", []string{`namespaces.a.tenant.header: "x-tenant-bin" is reserved`}},
		{"tenant header grpc", "  a: {tenant: {header: grpc-timeout}}\n", []string{`namespaces.a.tenant.header: "grpc-timeout" is reserved`}},
		{"tenant memo empty", "  a: {tenant: {memo: \" \"}}\n", []string{"p.yaml:3:22: namespaces.a.tenant.memo: must not be empty"}},
		{"tenant default invalid", "  a: {tenant: {header: x-t, default: \"a.b\"}}\n", []string{`p.yaml:3:38: namespaces.a.tenant.default: "a.b" is not a valid tenant name`}},
		{"tenant allowed invalid", "  a: {tenant: {header: x-t, allowed: [ok, \"\"]}}\n", []string{`p.yaml:3:43: namespaces.a.tenant.allowed[1]: "" is not a valid tenant name`}},
		{"tenant allowed empty", "  a: {tenant: {header: x-t, allowed: []}}\n", []string{"p.yaml:3:38: namespaces.a.tenant.allowed: must list at least one tenant"}},
		{"tenant default not allowed", "  a: {tenant: {header: x-t, allowed: [b], default: c}}\n", []string{`p.yaml:3:52: namespaces.a.tenant.default: "c" is not in allowed`}},
		{"tenant scope without tenant", "  a: {tenant: {header: x-t, scope: shared}}\n", []string{"p.yaml:3:36: namespaces.a.tenant.scope: must contain {tenant}"}},
		{"tenant scope chars", "  a: {tenant: {header: x-t, scope: \"{tenant}/x\"}}\n", []string{`namespaces.a.tenant.scope: "{tenant}/x" does not make a valid key scope`}},
		{"encrypt not a mapping", "  a: {encrypt: all}\n", []string{`p.yaml:3:16: namespaces.a.encrypt: expected a mapping, got string "all"`}},
		{"encrypt unknown field", "  a: {encrypt: {memos: true}}\n", []string{"p.yaml:3:17: namespaces.a.encrypt.memos: unknown field (known: memo, headers, failures, text, search_attributes)"}},
		{"encrypt payloads", "  a: {encrypt: {payloads: false}}\n", []string{"p.yaml:3:17: namespaces.a.encrypt.payloads: payloads are always encrypted"}},
		{"encrypt bool type", "  a: {encrypt: {memo: yes}}\n", []string{`p.yaml:3:23: namespaces.a.encrypt.memo: expected true or false, got string "yes"`}},
		{"memo plaintext", "  a: {encrypt: {memo: false}}\n", []string{"p.yaml:3:23: namespaces.a.encrypt.memo: stores memo fields in plaintext, which lets plaintext leave the proxy: set allow_plaintext: true"}},
		{"headers plaintext", "  a: {encrypt: {headers: false}}\n", []string{"p.yaml:3:26: namespaces.a.encrypt.headers: stores header payloads in plaintext"}},
		{"failures plaintext", "  a: {encrypt: {failures: false}}\n", []string{"p.yaml:3:27: namespaces.a.encrypt.failures: stores failure messages and stack traces in plaintext"}},
		{"all plaintext reported", "  a: {encrypt: {memo: false, headers: false, failures: false}}\n", []string{"encrypt.memo: stores", "encrypt.headers: stores", "encrypt.failures: stores"}},
		{"search attributes type", "  a: {encrypt: {search_attributes: Notes}}\n", []string{`p.yaml:3:36: namespaces.a.encrypt.search_attributes: expected a list, got string "Notes"`}},
		{"search attribute empty", "  a: {encrypt: {search_attributes: [\"\"]}}\n", []string{"p.yaml:3:37: namespaces.a.encrypt.search_attributes[0]: must not be empty"}},
		{"search attribute duplicate", "  a: {encrypt: {search_attributes: [N, N]}}\n", []string{`p.yaml:3:40: namespaces.a.encrypt.search_attributes[1]: duplicate search attribute "N"`}},
		{"plaintext mode", "  a: {plaintext_from_sdk: drop}\n", []string{`p.yaml:3:27: namespaces.a.plaintext_from_sdk: must be "encrypt", "reject" or "pass", got "drop"`}},
		{"pass without marker", "  a: {plaintext_from_sdk: pass}\n", []string{"p.yaml:3:27: namespaces.a.plaintext_from_sdk: forwards plaintext payloads unchanged, which lets plaintext leave the proxy"}},
		{"pass with encrypt", "  a: {plaintext_from_sdk: pass, allow_plaintext: true, encrypt: {search_attributes: [N]}}\n", []string{"p.yaml:3:56: namespaces.a.encrypt: has no effect with plaintext_from_sdk: pass"}},
		{"text plaintext", "  a: {encrypt: {text: false}}\n", []string{"p.yaml:3:23: namespaces.a.encrypt.text: stores reasons and schedule notes in plaintext"}},
		{"adoption empty", "  a: {adoption: {}}\n", []string{"p.yaml:3:17: namespaces.a.adoption: sets neither accept_plaintext_before nor warn_only"}},
		{"adoption time", "  a: {adoption: {accept_plaintext_before: yesterday}}\n", []string{`p.yaml:3:43: namespaces.a.adoption.accept_plaintext_before: must be an RFC 3339 time such as 2026-12-01T00:00:00Z, got "yesterday"`}},
		{"adoption unknown", "  a: {adoption: {before: x}}\n", []string{"p.yaml:3:18: namespaces.a.adoption.before: unknown field (known: accept_plaintext_before, warn_only)"}},
		{"adoption both", "  a: {allow_plaintext: true, adoption: {warn_only: true, accept_plaintext_before: 2026-12-01T00:00:00Z}}\n", []string{"namespaces.a.adoption: accept_plaintext_before has no effect with warn_only: true"}},
		{"adoption warn without marker", "  a: {adoption: {warn_only: true}}\n", []string{"p.yaml:3:17: namespaces.a.adoption: hands plaintext from the backend to SDKs as values (warn_only), which lets plaintext leave the proxy"}},
		{"adoption cut-over without marker", "  a: {adoption: {accept_plaintext_before: 2026-12-01T00:00:00Z}}\n", []string{"namespaces.a.adoption: hands plaintext from the backend to SDKs as values when the backend dates it before the cut-over (which it can), which lets plaintext leave the proxy"}},
		{"adoption with pass", "  a: {plaintext_from_sdk: pass, allow_plaintext: true, adoption: {warn_only: true}}\n", []string{"namespaces.a.adoption: has no effect with plaintext_from_sdk: pass"}},
		{"marker type", "  a: {allow_plaintext: 1}\n", []string{"p.yaml:3:24: namespaces.a.allow_plaintext: expected true or false, got int 1"}},
		{"stale marker", "  a: {allow_plaintext: true}\n", []string{"p.yaml:3:24: namespaces.a.allow_plaintext: is true but nothing in this entry is plaintext"}},
		{"marker false does not allow", "  a: {allow_plaintext: false, encrypt: {memo: false}}\n", []string{"namespaces.a.encrypt.memo: stores memo fields in plaintext"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("p.yaml", []byte(head+tc.yaml))
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

func TestPlaintextAllowedWithMarker(t *testing.T) {
	t.Parallel()
	p, err := Parse("p.yaml", []byte(`version: 1
namespaces:
  a:
    encrypt: {memo: false, headers: false, failures: false}
    allow_plaintext: true
  b:
    plaintext_from_sdk: pass
    allow_plaintext: true
  c:
    plaintext_from_sdk: reject
    encrypt: {search_attributes: [Notes, Secret]}
`))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := p.Namespace("a")
	if a.Encrypt.Memo || a.Encrypt.Headers || a.Encrypt.Failures {
		t.Errorf("a: %+v", a.Encrypt)
	}
	b, _ := p.Namespace("b")
	c, _ := p.Namespace("c")
	if b.Plaintext != PlaintextPass || c.Plaintext != PlaintextReject || !c.EncryptsSearchAttribute("Secret") {
		t.Errorf("b %+v c %+v", b, c)
	}
}
