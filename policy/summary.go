package policy

import (
	"fmt"
	"io"
	"strings"
)

// WriteSummary writes a human-readable summary of p for reviewers: each namespace entry in precedence order with its
// key scope, what it encrypts and what it does with plaintext, then the access rules.
func (p *Policy) WriteSummary(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "policy %s (version %d)\n", p.File, p.Version)
	if p.Namespaces == nil {
		b.WriteString("namespaces: none listed; every namespace gets the defaults:\n")
		writeRules(&b, DefaultRules())
	} else {
		entries := p.Namespaces.Entries()
		fmt.Fprintf(&b, "namespaces: %d entries, in precedence order; other namespaces are refused\n", len(entries))
		for _, r := range entries {
			writeRules(&b, r)
		}
	}
	rules := p.Access.Rules()
	fmt.Fprintf(&b, "access: %d rules (deny wins; no match means deny)\n", len(rules))
	for _, r := range rules {
		who := append(prefixed("subject:", r.Subjects), prefixed("group:", r.Groups)...)
		ops := make([]string, len(r.Operations))
		for i, o := range r.Operations {
			ops[i] = string(o)
		}
		fmt.Fprintf(&b, "  %-5s %q (line %d): %s may %s namespaces %s\n", r.Effect, r.Name, r.Line,
			strings.Join(who, ", "), strings.Join(ops, "+"), strings.Join(r.Namespaces, ", "))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeRules(b *strings.Builder, r *NamespaceRules) {
	line := ""
	if r.Line > 0 {
		line = fmt.Sprintf(" (line %d)", r.Line)
	}
	fmt.Fprintf(b, "  %q%s:\n", r.Pattern, line)
	switch {
	case r.Tenant != nil:
		tmpl := r.Tenant.Scope
		if tmpl == "" {
			tmpl = DefaultTenantScope
		}
		src := r.Tenant.source()
		def := "requests without a tenant are refused"
		if r.Tenant.Default != "" {
			def = "default tenant " + r.Tenant.Default
		}
		allowed := "any tenant"
		if len(r.Tenant.Allowed) > 0 {
			allowed = "tenants " + strings.Join(r.Tenant.Allowed, ", ")
		}
		fmt.Fprintf(b, "    keys: per tenant (%s), scope %s; %s; %s\n", src, tmpl, allowed, def)
	case r.Scope != "":
		fmt.Fprintf(b, "    keys: scope %s\n", r.Scope)
	default:
		b.WriteString("    keys: the namespace's own scope\n")
	}
	switch r.Plaintext {
	case PlaintextPass:
		b.WriteString("    plaintext_from_sdk: pass — NOTHING is encrypted by the proxy (allow_plaintext: true)\n")
		return
	case PlaintextReject:
		b.WriteString("    plaintext_from_sdk: reject — SDKs must encrypt; plaintext requests are refused\n")
	default:
		b.WriteString("    plaintext_from_sdk: encrypt\n")
	}
	enc := []string{"payloads"}
	var plain []string
	for _, f := range []struct {
		on   bool
		name string
	}{{r.Encrypt.Memo, "memo"}, {r.Encrypt.Headers, "headers"}, {r.Encrypt.Failures, "failure text"}} {
		if f.on {
			enc = append(enc, f.name)
		} else {
			plain = append(plain, f.name)
		}
	}
	if len(r.Encrypt.SearchAttributes) > 0 {
		enc = append(enc, "search attributes "+strings.Join(r.Encrypt.SearchAttributes, ", "))
		plain = append(plain, "other search attributes")
	} else {
		plain = append(plain, "search attributes")
	}
	fmt.Fprintf(b, "    encrypted: %s\n    plaintext: %s\n", strings.Join(enc, ", "), strings.Join(plain, ", "))
	if r.AllowPlaintext {
		b.WriteString("    allow_plaintext: true\n")
	}
}

func prefixed(p string, ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = p + s
	}
	return out
}
