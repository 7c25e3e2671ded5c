package policy

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/blindfold-dev/blindfold/codec"
)

func TestLoadValid(t *testing.T) {
	t.Parallel()
	p, err := Load("testdata/valid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if p.Version != 1 || len(p.Access.Rules()) != 3 {
		t.Fatalf("got version %d, %d rules", p.Version, len(p.Access.Rules()))
	}
	if r := p.Access.Rules()[1]; r.Name != "auditors-read-prod" || r.Line != 11 || r.Effect != EffectAllow {
		t.Fatalf("rule 1 = %+v", r)
	}
}

func TestAuthorize(t *testing.T) {
	t.Parallel()
	p, err := Load("testdata/valid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	alice := Identity{Subject: "alice@example.com"}
	bob := Identity{Subject: "bob", Groups: []string{"auditors"}}
	carol := Identity{Subject: "carol", Groups: []string{"auditors", "contractors"}}
	sre := Identity{Subject: "dan", Groups: []string{"sre"}}
	tests := []struct {
		name  string
		id    Identity
		ns    string
		op    Operation
		allow bool
		rule  string
	}{
		{"subject match", alice, "prod-eu", OpDecode, true, "auditors-read-prod"},
		{"group match", bob, "prod-us", OpDecode, true, "auditors-read-prod"},
		{"glob does not cross", bob, "prodx", OpDecode, false, ""},
		{"encode not granted", alice, "prod-eu", OpEncode, false, ""},
		{"other namespace", alice, "default", OpDecode, false, ""},
		{"deny wins over allow", carol, "payroll", OpDecode, false, "payroll-off-limits"},
		{"deny rule scoped", carol, "prod-eu", OpDecode, true, "auditors-read-prod"},
		{"single-char glob", sre, "staging-1", OpEncode, true, "sre-staging"},
		{"single-char glob too long", sre, "staging-12", OpEncode, false, ""},
		{"empty identity", Identity{}, "prod-eu", OpDecode, false, ""},
		{"unknown subject", Identity{Subject: "mallory"}, "prod-eu", OpDecode, false, ""},
		{"subject is not a group", Identity{Subject: "auditors"}, "prod-eu", OpDecode, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := p.Access.Authorize(context.Background(), tc.id, tc.ns, tc.op)
			if d.Allow != tc.allow || d.Rule != tc.rule || d.Reason == "" {
				t.Fatalf("got %+v, want allow=%v rule=%q", d, tc.allow, tc.rule)
			}
		})
	}
}

func TestDefaultDeny(t *testing.T) {
	t.Parallel()
	p, err := Parse("empty.yaml", []byte("version: 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if d := p.Access.Authorize(context.Background(), Identity{Subject: "root"}, "default", OpDecode); d.Allow {
		t.Fatalf("empty policy allowed: %+v", d)
	}
	var nilAccess *Access
	if d := nilAccess.Authorize(context.Background(), Identity{Subject: "root"}, "default", OpDecode); d.Allow {
		t.Fatal("nil access allowed")
	}
}

func TestDevAccess(t *testing.T) {
	t.Parallel()
	a := DevAccess()
	if d := a.Authorize(context.Background(), Identity{Subject: "dev"}, "anything", OpEncode); !d.Allow {
		t.Fatalf("dev access refused: %+v", d)
	}
	if d := a.Authorize(context.Background(), Identity{}, "anything", OpDecode); d.Allow {
		t.Fatal("dev access allowed an empty identity")
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		yaml string
		want []string // substrings of the joined error, each including file:line:col
	}{
		{"empty", "", []string{"p.yaml: policy file is empty"}},
		{"syntax", "version: 1\naccess: [\n", []string{"p.yaml: yaml: line"}},
		{"two documents", "version: 1\n---\nversion: 1\n", []string{"p.yaml:2:1: only one YAML document"}},
		{"not a mapping", "- a\n", []string{"p.yaml:1:1: expected a mapping, got a list"}},
		{"missing version", "access: {rules: []}\n", []string{"p.yaml:1:1: version: missing"}},
		{"bad version", "version: 2\n", []string{"p.yaml:1:10: version: unsupported policy version 2"}},
		{"version type", "version: one\n", []string{"p.yaml:1:10: version: expected an integer, got string \"one\""}},
		{"unknown section", "version: 1\nacess: {}\n", []string{"p.yaml:2:1: acess: unknown section"}},
		{"duplicate key", "version: 1\nversion: 1\n", []string{"p.yaml:2:1: version: duplicate key (first defined on line 1)"}},
		{"alias", "version: 1\naccess: &a {rules: []}\n", []string{"p.yaml:2:9: YAML anchors and aliases are not allowed"}},
		{"access unknown field", "version: 1\naccess:\n  rule: []\n", []string{"p.yaml:3:3: access.rule: unknown field (known: rules)"}},
		{"rules not a list", "version: 1\naccess:\n  rules: {}\n", []string{"p.yaml:3:10: access.rules: expected a list of rules, got a mapping"}},
		{"rule unknown field", `version: 1
access:
  rules:
    - name: r
      subject: [alice]
      subjects: [alice]
      namespaces: [default]
      operations: [decode]
`, []string{"p.yaml:5:7: access.rules[0].subject: unknown field"}},
		{"rule missing fields", `version: 1
access:
  rules:
    - effect: allow
`, []string{
			"p.yaml:4:7: access.rules[0].name: missing",
			"p.yaml:4:7: access.rules[0]: a rule needs subjects, groups or sans",
			"p.yaml:4:7: access.rules[0].namespaces: missing",
			"p.yaml:4:7: access.rules[0].operations: missing",
		}},
		{"bad values", `version: 1
access:
  rules:
    - name: r
      effect: permit
      groups: [""]
      namespaces: ["prod-[", 7]
      operations: [decode, delete]
`, []string{
			"p.yaml:5:15: access.rules[0].effect: must be \"allow\" or \"deny\", got \"permit\"",
			"p.yaml:6:16: access.rules[0].groups[0]: must not be empty",
			"p.yaml:7:20: access.rules[0].namespaces[0]: invalid namespace pattern \"prod-[\"",
			"p.yaml:7:30: access.rules[0].namespaces[1]: expected a string, got int 7",
			"p.yaml:8:28: access.rules[0].operations[1]: unknown operation \"delete\"",
		}},
		{"empty lists", `version: 1
access:
  rules:
    - name: r
      subjects: [a]
      namespaces: []
      operations: []
`, []string{
			"p.yaml:6:19: access.rules[0].namespaces: must list at least one namespace pattern",
			"p.yaml:7:19: access.rules[0].operations: must list at least one operation",
		}},
		{"duplicate rule name", `version: 1
access:
  rules:
    - {name: r, subjects: [a], namespaces: [x], operations: [decode]}
    - {name: r, subjects: [b], namespaces: [y], operations: [decode]}
`, []string{"p.yaml:5:7: access.rules[1].name: duplicate rule name \"r\" (first used on line 4)"}},
		{"name type", `version: 1
access:
  rules:
    - {name: [r], subjects: [a], namespaces: [x], operations: [decode]}
`, []string{"p.yaml:4:14: access.rules[0].name: expected a string, got a list"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("p.yaml", []byte(tc.yaml))
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
			var pe *Error
			if !errors.As(err, &pe) || pe.File != "p.yaml" {
				t.Errorf("error is not a *policy.Error naming the file: %#v", err)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("version: 1\naccess:\n  rules:\n    - {name: r, subjects: [a], namespaces: [x], operations: [decode]}\n"))
	f.Add([]byte("version: 1\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Add([]byte("version: 1\naccess: {rules: [{name: r, groups: [g], namespaces: ['[', 'a*'], operations: [encode]}]}"))
	f.Add([]byte("version: 1\nnamespaces:\n  \"*\": {}\n  \"prod-*\": {scope: prod, encrypt: {search_attributes: [N]}}\n  x: {tenant: {header: x-t, memo: m, default: d, allowed: [d, e], scope: \"{namespace}-{tenant}\"}}\n"))
	f.Add([]byte("version: 1\nnamespaces:\n  a: {encrypt: {memo: false, headers: false, failures: false}, allow_plaintext: true}\n  b: {plaintext_from_sdk: pass, allow_plaintext: true}\n  c: {plaintext_from_sdk: reject}\n"))
	f.Add([]byte("version: 1\nnamespaces:\n  a: {scope: s, tenant: {}}\n  \"[\": {plaintext_from_sdk: pass}\n"))
	f.Add([]byte("version: 1\naccess:\n  rules:\n    - {name: w, sans: ['spiffe://t/ns/a/sa/*'], namespaces: [a], operations: [worker, client-read]}\n    - {name: o, effect: deny, subjects: [x], namespaces: ['*'], operations: [admin, client-write]}\n"))
	f.Add([]byte("version: 1\nnamespaces:\n  a: {adoption: {accept_plaintext_before: 2026-12-01T00:00:00Z}, encrypt: {text: true}}\n  b: {adoption: {warn_only: true}, allow_plaintext: true}\n"))
	if seed, err := os.ReadFile("../deploy/policy.example.yaml"); err == nil {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("f.yaml", data)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("error is not a *policy.Error: %v", err)
			}
			return
		}
		if p.Access == nil {
			t.Fatal("valid policy without Access")
		}
		p.Access.Authorize(context.Background(), Identity{Subject: "a", Groups: []string{"g"}}, "x", OpDecode)
		for _, ns := range []string{"x", "prod-eu", "default", ""} {
			r, err := p.Namespace(ns)
			if err != nil {
				continue
			}
			if r.Plaintext == PlaintextPass && !r.AllowPlaintext {
				t.Fatalf("pass mode accepted without allow_plaintext: %+v", r)
			}
			if (!r.Encrypt.Memo || !r.Encrypt.Headers || !r.Encrypt.Failures) && !r.AllowPlaintext {
				t.Fatalf("plaintext accepted without allow_plaintext: %+v", r)
			}
			tenant := ""
			if r.Tenant != nil {
				if tenant, err = r.Tenant.ResolveTenant("e", true); err != nil {
					continue
				}
			}
			if sc, err := r.ScopeFor(ns, tenant); err == nil {
				if verr := codec.ValidateScope(sc); verr != nil {
					t.Fatalf("ScopeFor returned invalid scope %q: %v", sc, verr)
				}
			}
		}
		if err := p.WriteSummary(io.Discard); err != nil {
			t.Fatal(err)
		}
	})
}

// TestAuthorizeBothDoors: the gRPC actions and SAN matching (SPIFFE IDs of workers' certificates) in the same rules
// as the codec endpoint's operations.
func TestAuthorizeBothDoors(t *testing.T) {
	t.Parallel()
	p, err := Parse("p.yaml", []byte(`version: 1
access:
  rules:
    - name: payments-workers
      sans: ["spiffe://prod.example/ns/payments/sa/*"]
      namespaces: [payments]
      operations: [worker, client-read]
    - name: hr-clients
      groups: [hr]
      namespaces: ["hr-*"]
      operations: [client-write, client-read, decode]
    - name: platform-admin
      subjects: [ops]
      namespaces: ["*"]
      operations: [admin]
`))
	if err != nil {
		t.Fatal(err)
	}
	worker := Identity{Subject: "CN=payments-worker", SANs: []string{"payments-worker.internal", "spiffe://prod.example/ns/payments/sa/worker"}}
	hr := Identity{Subject: "erin", Groups: []string{"hr"}}
	for _, tc := range []struct {
		name  string
		id    Identity
		ns    string
		op    Operation
		allow bool
	}{
		{"worker polls its namespace", worker, "payments", OpWorker, true},
		{"worker reads its namespace", worker, "payments", OpClientRead, true},
		{"worker cannot start workflows", worker, "payments", OpClientWrite, false},
		{"payments workers cannot read HR", worker, "hr-payroll", OpWorker, false},
		{"SAN of another trust domain", Identity{SANs: []string{"spiffe://evil.example/ns/payments/sa/worker"}}, "payments", OpWorker, false},
		{"HR client writes HR", hr, "hr-payroll", OpClientWrite, true},
		{"HR client is no worker", hr, "hr-payroll", OpWorker, false},
		{"HR decodes HR", hr, "hr-payroll", OpDecode, true},
		{"admin", Identity{Subject: "ops"}, "anything", OpAdmin, true},
		{"admin is not client-read", Identity{Subject: "ops"}, "payments", OpClientRead, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if d := p.Access.Authorize(context.Background(), tc.id, tc.ns, tc.op); d.Allow != tc.allow {
				t.Fatalf("Authorize = %+v, want allow=%v", d, tc.allow)
			}
		})
	}
	if _, err := Parse("p.yaml", []byte("version: 1\naccess:\n  rules:\n    - {name: r, subjects: [a], namespaces: [x], operations: [poll]}\n")); err == nil ||
		!strings.Contains(err.Error(), `unknown operation "poll" (known: worker, client-write, client-read, admin, decode, encode)`) {
		t.Errorf("unknown operation: %v", err)
	}
}
