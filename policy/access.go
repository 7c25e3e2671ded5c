package policy

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Operation is what an identity asks to do with a namespace's payloads.
type Operation string

// Operations the codec endpoint and the offline decoder authorize (decode, encode), and the actions of the gRPC
// proxy's callers (every WorkflowService and OperatorService method is one of them): one model for both doors.
const (
	OpDecode Operation = "decode"
	OpEncode Operation = "encode"
	// OpWorker: polls, task responses, heartbeats — what a worker does.
	OpWorker Operation = "worker"
	// OpClientWrite: start, signal, update, cancel, terminate, reset, delete, schedules, batch operations.
	OpClientWrite Operation = "client-write"
	// OpClientRead: describe, history, query, list, count.
	OpClientRead Operation = "client-read"
	// OpAdmin: OperatorService, namespace and cluster operations, worker deployment and versioning configuration.
	OpAdmin Operation = "admin"
)

// Operations lists every operation a rule may name, in the order the docs give them.
func Operations() []Operation {
	return []Operation{OpWorker, OpClientWrite, OpClientRead, OpAdmin, OpDecode, OpEncode}
}

// Effect says whether a matching rule grants or refuses.
type Effect string

// Rule effects. A matching deny rule wins over any matching allow rule.
const (
	EffectAllow Effect = "allow"
	EffectDeny  Effect = "deny"
)

// Identity is an authenticated caller as the authorization rules see it.
type Identity struct {
	// Subject is the caller's unique name: the JWT subject claim, a static token's name, or the --as flag of the offline tool.
	Subject string `json:"subject"`
	// Groups are the caller's groups or roles (the configured JWT claim).
	Groups []string `json:"groups,omitempty"`
	// Method says how the identity was established: "oidc", "static", "anonymous" (dev only) or "local" (offline tool, self-asserted).
	Method string `json:"method,omitempty"`
	// Issuer is the OIDC issuer that vouched for the identity, if any.
	Issuer string `json:"issuer,omitempty"`
	// SANs are the DNS names and URIs (SPIFFE IDs among them) of a client certificate, for rules matching by SAN.
	SANs []string `json:"sans,omitempty"`
}

// Decision is the outcome of an authorization check, with a reason fit for the audit log and for the caller.
type Decision struct {
	Allow bool
	// Rule names the rule that decided, or is empty when no rule matched (default deny).
	Rule   string
	Reason string
}

// Rule is one access rule: identities (by subject or group) × namespaces (glob patterns) × operations.
type Rule struct {
	Name     string
	Effect   Effect
	Subjects []string
	Groups   []string
	// SANs are glob patterns (path.Match) matched against a client certificate's DNS and URI SANs, e.g.
	// "spiffe://prod.example/ns/payments/sa/*" ("*" does not cross a "/").
	SANs       []string
	Namespaces []string
	Operations []Operation
	// Line is the rule's line in the policy file (0 for rules built in code).
	Line int

	anyone bool
}

// Access is the ordered rule set the codec endpoint consults. The zero value denies everything.
// It is immutable after construction and safe for concurrent use.
type Access struct {
	rules []Rule
}

// Rules returns a copy of the rules in file order.
func (a *Access) Rules() []Rule { return slices.Clone(a.rules) }

// DevAccess returns an Access that lets every authenticated identity decode and encode every namespace.
// It exists for `blindfold dev` on loopback only; it cannot be expressed in a policy file, so a production policy can never grant it by mistake.
func DevAccess() *Access {
	return &Access{rules: []Rule{{
		Name:       "dev-allow-all",
		Effect:     EffectAllow,
		Namespaces: []string{"*"},
		Operations: []Operation{OpDecode, OpEncode},
		anyone:     true,
	}}}
}

// Authorize decides whether id may perform op on namespace: a matching deny rule refuses, otherwise a matching allow rule grants, otherwise the answer is no.
func (a *Access) Authorize(_ context.Context, id Identity, namespace string, op Operation) Decision {
	if a == nil {
		return Decision{Reason: "no access rules configured (default deny)"}
	}
	var allow *Rule
	for i := range a.rules {
		r := &a.rules[i]
		if !r.matches(id, namespace, op) {
			continue
		}
		if r.Effect == EffectDeny {
			return Decision{Rule: r.Name, Reason: fmt.Sprintf("denied by rule %q", r.Name)}
		}
		if allow == nil {
			allow = r
		}
	}
	if allow != nil {
		return Decision{Allow: true, Rule: allow.Name, Reason: fmt.Sprintf("allowed by rule %q", allow.Name)}
	}
	return Decision{Reason: fmt.Sprintf("no rule allows %s of namespace %q for subject %q (default deny)", op, namespace, id.Subject)}
}

func (r *Rule) matches(id Identity, namespace string, op Operation) bool {
	if id.Subject == "" && len(id.Groups) == 0 && len(id.SANs) == 0 {
		return false
	}
	if !slices.Contains(r.Operations, op) {
		return false
	}
	who := r.anyone || (id.Subject != "" && slices.Contains(r.Subjects, id.Subject))
	if !who {
		for _, g := range id.Groups {
			if slices.Contains(r.Groups, g) {
				who = true
				break
			}
		}
	}
	if !who {
		who = matchesAny(r.SANs, id.SANs)
	}
	if !who {
		return false
	}
	for _, pat := range r.Namespaces {
		if ok, _ := path.Match(pat, namespace); ok {
			return true
		}
	}
	return false
}

// matchesAny reports whether any value matches any glob pattern.
func matchesAny(patterns, values []string) bool {
	for _, pat := range patterns {
		for _, v := range values {
			if ok, _ := path.Match(pat, v); ok {
				return true
			}
		}
	}
	return false
}

func (p *parser) access(n *yaml.Node, field string) *Access {
	a := &Access{}
	p.mapping(n, field, func(key string, kn, vn *yaml.Node) {
		switch key {
		case "rules":
			f := field + ".rules"
			if vn.Kind != yaml.SequenceNode {
				p.errorf(vn, f, "expected a list of rules, got %s", kindName(vn))
				return
			}
			names := map[string]int{}
			for i, rn := range vn.Content {
				r, ok := p.rule(rn, fmt.Sprintf("%s[%d]", f, i))
				if !ok {
					continue
				}
				if prev, dup := names[r.Name]; dup {
					p.errorf(rn, fmt.Sprintf("%s[%d].name", f, i), "duplicate rule name %q (first used on line %d)", r.Name, prev)
					continue
				}
				names[r.Name] = r.Line
				a.rules = append(a.rules, r)
			}
		default:
			p.errorf(kn, field+"."+key, "unknown field (known: rules)")
		}
	})
	return a
}

func (p *parser) rule(n *yaml.Node, field string) (Rule, bool) {
	r := Rule{Effect: EffectAllow, Line: n.Line}
	before := len(p.errs)
	var seenName, seenNS, seenOps bool
	p.mapping(n, field, func(key string, kn, vn *yaml.Node) {
		f := field + "." + key
		switch key {
		case "name":
			seenName = true
			if s, ok := p.str(vn, f); ok {
				if strings.TrimSpace(s) == "" {
					p.errorf(vn, f, "must not be empty")
				}
				r.Name = s
			}
		case "effect":
			if s, ok := p.str(vn, f); ok {
				switch Effect(s) {
				case EffectAllow, EffectDeny:
					r.Effect = Effect(s)
				default:
					p.errorf(vn, f, "must be %q or %q, got %q", EffectAllow, EffectDeny, s)
				}
			}
		case "subjects":
			subs, nodes := p.strList(vn, f)
			for i, s := range subs {
				if s == "" {
					p.errorf(nodes[i], fmt.Sprintf("%s[%d]", f, i), "must not be empty")
				}
			}
			r.Subjects = subs
		case "groups":
			gs, nodes := p.strList(vn, f)
			for i, s := range gs {
				if s == "" {
					p.errorf(nodes[i], fmt.Sprintf("%s[%d]", f, i), "must not be empty")
				}
			}
			r.Groups = gs
		case "sans":
			pats, nodes := p.strList(vn, f)
			for i, pat := range pats {
				if _, err := path.Match(pat, ""); err != nil || pat == "" {
					p.errorf(nodes[i], fmt.Sprintf("%s[%d]", f, i), "invalid SAN pattern %q", pat)
				}
			}
			r.SANs = pats
		case "namespaces":
			seenNS = true
			pats, nodes := p.strList(vn, f)
			for i, pat := range pats {
				if _, err := path.Match(pat, ""); err != nil || pat == "" {
					p.errorf(nodes[i], fmt.Sprintf("%s[%d]", f, i), "invalid namespace pattern %q", pat)
				}
			}
			if len(pats) == 0 && vn.Kind == yaml.SequenceNode {
				p.errorf(vn, f, "must list at least one namespace pattern")
			}
			r.Namespaces = pats
		case "operations":
			seenOps = true
			ops, nodes := p.strList(vn, f)
			for i, op := range ops {
				if !slices.Contains(Operations(), Operation(op)) {
					p.errorf(nodes[i], fmt.Sprintf("%s[%d]", f, i), "unknown operation %q (known: worker, client-write, client-read, admin, decode, encode)", op)
					continue
				}
				r.Operations = append(r.Operations, Operation(op))
			}
			if len(ops) == 0 && vn.Kind == yaml.SequenceNode {
				p.errorf(vn, f, "must list at least one operation")
			}
		default:
			p.errorf(kn, f, "unknown field (known: name, effect, subjects, groups, sans, namespaces, operations)")
		}
	})
	if n.Kind == yaml.MappingNode {
		if !seenName {
			p.errorf(n, field+".name", "missing: every rule needs a name (it appears in the audit log)")
		}
		if len(r.Subjects) == 0 && len(r.Groups) == 0 && len(r.SANs) == 0 {
			p.errorf(n, field, "a rule needs subjects, groups or sans")
		}
		if !seenNS {
			p.errorf(n, field+".namespaces", "missing")
		}
		if !seenOps {
			p.errorf(n, field+".operations", "missing")
		}
	}
	return r, len(p.errs) == before
}
