package policy_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

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
