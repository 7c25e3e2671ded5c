package policy_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/blindfold-dev/blindfold/policy"
)

func ExampleParse() {
	p, err := policy.Parse("policy.yaml", []byte(`version: 1
access:
  rules:
    - name: auditors-read-prod
      groups: [auditors]
      namespaces: ["prod-*"]
      operations: [decode]
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	alice := policy.Identity{Subject: "alice", Groups: []string{"auditors"}}
	fmt.Println(p.Access.Authorize(context.Background(), alice, "prod-eu", policy.OpDecode).Reason)
	fmt.Println(p.Access.Authorize(context.Background(), alice, "prod-eu", policy.OpEncode).Allow)

	_, err = policy.Parse("policy.yaml", []byte("version: 1\naccess:\n  rulez: []\n"))
	fmt.Println(err)
	// Output:
	// allowed by rule "auditors-read-prod"
	// false
	// policy.yaml:3:3: access.rulez: unknown field (known: rules)
}

func ExampleVerifyAudit() {
	dir, _ := os.MkdirTemp("", "audit-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "audit.jsonl")

	log, err := policy.OpenAudit(path)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, who := range []string{"alice", "bob"} {
		if _, err := log.Append(policy.Record{Via: "example", Identity: policy.Identity{Subject: who}, Decision: policy.AuditAllow, Reason: "example"}); err != nil {
			fmt.Println(err)
		}
	}
	_, head := log.Head()
	log.Close()

	f, _ := os.Open(path)
	defer f.Close()
	sum, err := policy.VerifyAudit(f, policy.VerifyOptions{Anchor: head})
	fmt.Println(sum.Records, sum.Head == head, sum.AnchorSeq, err)
	// Output:
	// 2 true 2 <nil>
}

func ExamplePolicy_Namespace() {
	p, err := policy.Parse("policy.yaml", []byte(`version: 1
namespaces:
  "*": {}
  "prod-*":
    scope: prod
    encrypt: {search_attributes: [CustomerNotes]}
  saas:
    tenant: {header: x-tenant, allowed: [acme, globex]}
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	prod, _ := p.Namespace("prod-eu")
	scope, _ := prod.ScopeFor("prod-eu", "")
	fmt.Println(prod.Pattern, scope, prod.EncryptsSearchAttribute("CustomerNotes"), prod.Encrypt.Memo)

	saas, _ := p.Namespace("saas")
	tenant, _ := saas.Tenant.ResolveTenant("acme", true)
	scope, _ = saas.ScopeFor("saas", tenant)
	fmt.Println(saas.Pattern, scope)
	_, err = saas.Tenant.ResolveTenant("initech", true)
	fmt.Println(err)

	_, err = policy.Parse("policy.yaml", []byte("version: 1\nnamespaces:\n  legacy: {encrypt: {failures: false}}\n"))
	fmt.Println(err)
	// Output:
	// prod-* prod true true
	// saas saas.acme
	// tenant: "initech" is not an allowed tenant
	// policy.yaml:3:32: namespaces.legacy.encrypt.failures: stores failure messages and stack traces in plaintext, which lets plaintext leave the proxy: set allow_plaintext: true in this entry to accept that
}

func ExampleWatch() {
	dir, _ := os.MkdirTemp("", "policy-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "policy.yaml")
	_ = os.WriteFile(path, []byte("version: 1\nnamespaces:\n  default: {}\n"), 0o600)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reloaded := make(chan *policy.Policy, 1)
	store, err := policy.Watch(ctx, path, func(p *policy.Policy) { reloaded <- p }, policy.WithPollInterval(10*time.Millisecond), policy.WithStoreLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		fmt.Println(err)
		return
	}
	// Each RPC takes one snapshot: store.Current(). A reload swaps it for the RPCs that start afterwards.
	r, _ := store.Current().Namespace("default")
	fmt.Println(r.Plaintext)

	_ = os.WriteFile(path+".new", []byte("version: 1\nnamespaces:\n  default: {plaintext_from_sdk: reject}\n"), 0o600)
	_ = os.Rename(path+".new", path)
	r, _ = (<-reloaded).Namespace("default")
	fmt.Println(r.Plaintext)
	// Output:
	// encrypt
	// reject
}
