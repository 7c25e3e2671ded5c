package policy

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/blindfold-dev/blindfold/codec"
)

// PlaintextMode says what the proxy does with payloads that arrive from SDKs in plaintext.
type PlaintextMode string

// The plaintext modes of a namespace entry ("plaintext_from_sdk").
const (
	// PlaintextEncrypt: the proxy encrypts plaintext payloads; payloads an SDK already encrypted pass unchanged (the default).
	PlaintextEncrypt PlaintextMode = "encrypt"
	// PlaintextReject: every payload the policy says must be encrypted must already be encrypted by the SDK (e.g. with
	// sdkplugin); a request carrying one in plaintext is refused. Responses pass unchanged: the SDK decrypts them.
	PlaintextReject PlaintextMode = "reject"
	// PlaintextPass: the proxy forwards requests and responses of the namespace unchanged, plaintext included. It lets
	// plaintext out, so it needs allow_plaintext: true.
	PlaintextPass PlaintextMode = "pass"
)

// DefaultTenantScope is the scope template of a tenant entry that names none.
const DefaultTenantScope = "{namespace}.{tenant}"

// ErrNoNamespaceRule is returned (wrapped) when the policy has a namespaces section and no entry matches a namespace.
var ErrNoNamespaceRule = errors.New("no policy entry for namespace")

// ErrTenant is wrapped by errors about the tenant of a request: missing, not allowed, or not a valid name.
var ErrTenant = errors.New("tenant")

// Encrypt says which parts of a namespace's messages are encrypted besides payloads (always encrypted).
type Encrypt struct {
	// Memo encrypts workflow and schedule memo fields (default true).
	Memo bool
	// Headers encrypts the payloads of workflow, activity and update headers (default true).
	Headers bool
	// Failures moves failure messages and stack traces into encrypted encoded attributes (default true).
	Failures bool
	// Text seals the free text users write outside payloads: terminate, cancel, reset, batch and pause reasons,
	// schedule notes (default true). docs/threat-model.md lists the fields.
	Text bool
	// SearchAttributes names the search attributes that are encrypted; all others stay plaintext, as the server must
	// index them. An encrypted Keyword or Text attribute can no longer be searched by value.
	SearchAttributes []string
}

// Tenant selects a per-tenant key scope for each request of a namespace.
type Tenant struct {
	// Header is the gRPC metadata key (lower case) whose value names the tenant, e.g. "x-tenant".
	Header string
	// Memo is the memo field whose value (a JSON string) names the tenant, on requests that carry a memo.
	Memo string
	// Default is the tenant of requests that name none; empty means such requests are refused if they carry
	// payloads to encrypt.
	Default string
	// Allowed, if not empty, is the only tenants accepted.
	Allowed []string
	// Scope is the scope template: "{namespace}" is replaced by codec.ScopeForNamespace of the namespace and "{tenant}"
	// by the tenant (DefaultTenantScope if empty).
	Scope string
}

// NamespaceRules is one entry of the namespaces section, as resolved for the namespaces it matches.
// It is immutable once parsed and safe for concurrent use.
type NamespaceRules struct {
	// Pattern is the entry's key: a namespace name or a glob pattern (path.Match syntax).
	Pattern string
	// Line is the entry's line in the policy file (0 for built-in defaults).
	Line int
	// Scope is the key scope template of the namespace ("{namespace}" is replaced by codec.ScopeForNamespace of the
	// namespace); empty means the default mapping (codec.ScopeForNamespace). Mutually exclusive with Tenant.
	Scope string
	// Tenant, if set, selects a key scope per tenant.
	Tenant *Tenant
	// Encrypt says what is encrypted besides payloads.
	Encrypt Encrypt
	// Plaintext is the plaintext_from_sdk mode.
	Plaintext PlaintextMode
	// AllowPlaintext is the explicit marker that the entry lets plaintext out on purpose.
	AllowPlaintext bool
	// Adoption, if set, relaxes strict decode while a namespace that ran without Blindfold still has plaintext in its
	// histories. Nil (the default) is strict: plaintext from the backend is never handed to an SDK as a value.
	Adoption *Adoption
	// NexusPeers are the namespaces whose Nexus values (operation inputs, handler results) may be opened in this one:
	// a Nexus call crosses from the caller's namespace to the handler's and back, and each side seals in its own.
	// Both namespaces list each other. Empty: Nexus works within one namespace only.
	NexusPeers []string
}

// Adoption says which plaintext payloads coming back from the backend are accepted as values in a namespace that
// adopts Blindfold while workflows are running. Turn it off (remove it) once the namespace is clean.
type Adoption struct {
	// PlaintextBefore accepts plaintext in history events recorded before this time and in the memo of workflows
	// started before it; plaintext anywhere else is refused. Zero means no cut-over. The times are the backend's own
	// (it can backdate what it injects), so this, like WarnOnly, needs allow_plaintext.
	PlaintextBefore time.Time
	// WarnOnly accepts plaintext anywhere, logging and counting each payload as strict decode would refuse it. It is
	// the weakest setting: a hostile backend can then inject values.
	WarnOnly bool
}

// DefaultRules returns the rules of a namespace when the policy has no namespaces section: payloads, memo, headers
// and failure text encrypted, search attributes plaintext, plaintext from SDKs encrypted, the namespace's own scope.
func DefaultRules() *NamespaceRules {
	return &NamespaceRules{Pattern: "*", Encrypt: Encrypt{Memo: true, Headers: true, Failures: true, Text: true}, Plaintext: PlaintextEncrypt}
}

var defaultRules = DefaultRules()

// Namespaces is the namespaces section: entries in precedence order.
type Namespaces struct {
	entries []*NamespaceRules
}

// Entries returns the entries in precedence order (the order Match tries them).
func (n *Namespaces) Entries() []*NamespaceRules {
	if n == nil {
		return nil
	}
	return slices.Clone(n.entries)
}

// Namespace returns the rules for namespace. Without a namespaces section every namespace gets DefaultRules.
// With one, the most specific matching entry wins (see Match); a namespace no entry matches gets an error wrapping
// ErrNoNamespaceRule, and the proxy refuses it.
func (p *Policy) Namespace(namespace string) (*NamespaceRules, error) {
	if p == nil || p.Namespaces == nil {
		return defaultRules, nil
	}
	if r := p.Namespaces.Match(namespace); r != nil {
		return r, nil
	}
	return nil, fmt.Errorf("%w %q", ErrNoNamespaceRule, namespace)
}

// Match returns the entry that governs namespace, or nil. Precedence: an entry whose key is the exact namespace name
// wins; otherwise, among glob patterns that match, the one with the most literal (non-wildcard) characters wins, and
// between equally specific patterns the one written first in the file. "*" therefore matches last.
func (n *Namespaces) Match(namespace string) *NamespaceRules {
	if n == nil {
		return nil
	}
	for _, e := range n.entries {
		if ok, _ := path.Match(e.Pattern, namespace); ok {
			return e
		}
	}
	return nil
}

// EncryptsSearchAttribute reports whether the search attribute name is encrypted.
func (r *NamespaceRules) EncryptsSearchAttribute(name string) bool {
	return slices.Contains(r.Encrypt.SearchAttributes, name)
}

// ScopeFor returns the key scope for payloads of namespace sealed for tenant (empty when the entry has no tenant
// section). It returns an error wrapping codec.ErrInvalidScope if the template yields no valid scope name.
func (r *NamespaceRules) ScopeFor(namespace, tenant string) (string, error) {
	var scope string
	switch {
	case r.Tenant != nil:
		tmpl := r.Tenant.Scope
		if tmpl == "" {
			tmpl = DefaultTenantScope
		}
		scope = expand(tmpl, codec.ScopeForNamespace(namespace), tenant)
	case r.Scope != "":
		scope = expand(r.Scope, codec.ScopeForNamespace(namespace), "")
	default:
		return codec.ScopeForNamespace(namespace), nil
	}
	if err := codec.ValidateScope(scope); err != nil {
		return "", fmt.Errorf("scope of namespace %q: %w", namespace, err)
	}
	return scope, nil
}

// SealScope returns the key scope new payloads of namespace are sealed with when no request names a tenant, as the codec
// endpoint's encode does: the entry's fixed scope, or its tenant default's scope; the namespace's own scope
// (codec.ScopeForNamespace) for a namespace without an entry, an entry without a scope or a tenant section without a
// default (never a guessed tenant's). It returns an error wrapping codec.ErrInvalidScope if the template yields no valid
// scope name, so a caller fails closed rather than sealing elsewhere. It only picks the scope new payloads are sealed
// with; opening a payload uses the scope named in its key id.
func (p *Policy) SealScope(namespace string) (string, error) {
	r, err := p.Namespace(namespace)
	if err != nil {
		return codec.ScopeForNamespace(namespace), nil
	}
	tenant := ""
	if r.Tenant != nil {
		if r.Tenant.Default == "" {
			return codec.ScopeForNamespace(namespace), nil
		}
		tenant = r.Tenant.Default
	}
	return r.ScopeFor(namespace, tenant)
}

func expand(tmpl, namespace, tenant string) string {
	return strings.NewReplacer("{namespace}", namespace, "{tenant}", tenant).Replace(tmpl)
}

// ResolveTenant applies the entry's tenant rules to the tenant a request named (value, found=false if it named none)
// and returns the tenant to use. Errors wrap ErrTenant; they quote the value only bounded, as it comes from the caller.
func (t *Tenant) ResolveTenant(value string, found bool) (string, error) {
	if !found || value == "" {
		if t.Default == "" {
			return "", fmt.Errorf("%w: the request names no tenant (%s) and the policy has no default tenant", ErrTenant, t.source())
		}
		return t.Default, nil
	}
	if !tenantName.MatchString(value) {
		return "", fmt.Errorf("%w: %q is not a valid tenant name (1-64 of A-Z a-z 0-9 _ -)", ErrTenant, clipValue(value))
	}
	if len(t.Allowed) > 0 && !slices.Contains(t.Allowed, value) {
		return "", fmt.Errorf("%w: %q is not an allowed tenant", ErrTenant, value)
	}
	return value, nil
}

func (t *Tenant) source() string {
	var s []string
	if t.Header != "" {
		s = append(s, "header "+t.Header)
	}
	if t.Memo != "" {
		s = append(s, "memo field "+t.Memo)
	}
	return strings.Join(s, " or ")
}

func clipValue(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// tenantName keeps tenants out of each other's scopes: no dot, so "{namespace}.{tenant}" cannot be reached from two
// different (namespace, tenant) pairs with the same namespace, and nothing a file name could misuse.
var tenantName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// metadataKey is what gRPC accepts as a metadata key, minus binary keys ("-bin"), whose values are not text.
var metadataKey = regexp.MustCompile(`^[a-z0-9_.-]+$`)

// literalChars counts the characters of a glob pattern that are not wildcards or inside a bracket expression.
func literalChars(pat string) int {
	n := 0
	for i := 0; i < len(pat); i++ {
		switch pat[i] {
		case '*', '?':
		case '\\':
			i++
			n++
		case '[':
			for i < len(pat) && pat[i] != ']' {
				i++
			}
		default:
			n++
		}
	}
	return n
}

func isGlob(pat string) bool { return strings.ContainsAny(pat, `*?[\`) }

// namespaces parses the namespaces section into entries in precedence order.
func (p *parser) namespaces(n *yaml.Node, field string) *Namespaces {
	ns := &Namespaces{}
	p.mapping(n, field, func(key string, kn, vn *yaml.Node) {
		f := field + "." + key
		if key == "" {
			p.errorf(kn, f, "namespace name or pattern must not be empty")
			return
		}
		if _, err := path.Match(key, ""); err != nil {
			p.errorf(kn, f, "invalid namespace pattern %q", key)
			return
		}
		if r, ok := p.namespaceEntry(vn, f, key); ok {
			r.Line = kn.Line
			ns.entries = append(ns.entries, r)
		}
	})
	slices.SortStableFunc(ns.entries, func(a, b *NamespaceRules) int {
		ga, gb := isGlob(a.Pattern), isGlob(b.Pattern)
		if ga != gb {
			if !ga {
				return -1
			}
			return 1
		}
		if !ga {
			return 0
		}
		return literalChars(b.Pattern) - literalChars(a.Pattern)
	})
	return ns
}

func (p *parser) bool(n *yaml.Node, field string) (bool, bool) {
	var v bool
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&v) != nil {
		p.errorf(n, field, "expected true or false, got %s", kindName(n))
		return false, false
	}
	return v, true
}

// plaintextField remembers where an entry lets plaintext out, to report it at that line unless allow_plaintext is set.
type plaintextField struct {
	node  *yaml.Node
	field string
	what  string
}

func (p *parser) namespaceEntry(n *yaml.Node, field, pattern string) (*NamespaceRules, bool) {
	r := &NamespaceRules{Pattern: pattern, Encrypt: Encrypt{Memo: true, Headers: true, Failures: true, Text: true}, Plaintext: PlaintextEncrypt}
	before := len(p.errs)
	var (
		leaks                  []plaintextField
		scopeNode, tenantNode  *yaml.Node
		allowNode, encryptNode *yaml.Node
		encryptSet             bool
	)
	p.mapping(n, field, func(key string, kn, vn *yaml.Node) {
		f := field + "." + key
		switch key {
		case "scope":
			scopeNode = kn
			if s, ok := p.str(vn, f); ok {
				r.Scope = s
				p.checkScopeTemplate(vn, f, s, false)
			}
		case "tenant":
			tenantNode = kn
			r.Tenant = p.tenant(vn, f)
		case "encrypt":
			encryptNode, encryptSet = kn, true
			leaks = append(leaks, p.encrypt(vn, f, &r.Encrypt)...)
		case "plaintext_from_sdk":
			if s, ok := p.str(vn, f); ok {
				switch PlaintextMode(s) {
				case PlaintextEncrypt, PlaintextReject:
					r.Plaintext = PlaintextMode(s)
				case PlaintextPass:
					r.Plaintext = PlaintextPass
					leaks = append(leaks, plaintextField{vn, f, "forwards plaintext payloads unchanged"})
				default:
					p.errorf(vn, f, "must be %q, %q or %q, got %q", PlaintextEncrypt, PlaintextReject, PlaintextPass, s)
				}
			}
		case "adoption":
			r.Adoption = p.adoption(vn, f)
			switch {
			case r.Adoption != nil && r.Adoption.WarnOnly:
				leaks = append(leaks, plaintextField{vn, f, "hands plaintext from the backend to SDKs as values (warn_only)"})
			case r.Adoption != nil:
				// The backend writes event and start times itself: it can backdate what it injects.
				leaks = append(leaks, plaintextField{vn, f, "hands plaintext from the backend to SDKs as values when the backend dates it before the cut-over (which it can)"})
			}
		case "nexus_peers":
			names, nodes := p.strList(vn, f)
			for i, name := range names {
				if name == "" {
					p.errorf(nodes[i], f, "empty namespace name")
				}
			}
			r.NexusPeers = names
		case "allow_plaintext":
			allowNode = vn
			if b, ok := p.bool(vn, f); ok {
				r.AllowPlaintext = b
			}
		default:
			p.errorf(kn, f, "unknown field (known: scope, tenant, encrypt, plaintext_from_sdk, adoption, nexus_peers, allow_plaintext)")
		}
	})
	if scopeNode != nil && tenantNode != nil {
		p.errorf(tenantNode, field+".tenant", "scope and tenant are mutually exclusive (a tenant entry sets its scope template in tenant.scope)")
	}
	if r.Plaintext == PlaintextPass && r.Adoption != nil {
		p.errorf(n, field+".adoption", "has no effect with plaintext_from_sdk: pass (nothing is decoded); remove it")
	}
	if r.Plaintext == PlaintextPass && encryptSet {
		p.errorf(encryptNode, field+".encrypt", "has no effect with plaintext_from_sdk: pass (nothing is encrypted); remove it")
	}
	if !r.AllowPlaintext {
		for _, l := range leaks {
			p.errorf(l.node, l.field, "%s, which lets plaintext leave the proxy: set allow_plaintext: true in this entry to accept that", l.what)
		}
	} else if len(leaks) == 0 {
		p.errorf(allowNode, field+".allow_plaintext", "is true but nothing in this entry is plaintext; remove it, so a later change that leaks is caught")
	}
	return r, len(p.errs) == before
}

func (p *parser) encrypt(n *yaml.Node, field string, e *Encrypt) []plaintextField {
	var leaks []plaintextField
	p.mapping(n, field, func(key string, kn, vn *yaml.Node) {
		f := field + "." + key
		flag := func(dst *bool, what string) {
			if b, ok := p.bool(vn, f); ok {
				*dst = b
				if !b {
					leaks = append(leaks, plaintextField{vn, f, what})
				}
			}
		}
		switch key {
		case "memo":
			flag(&e.Memo, "stores memo fields in plaintext")
		case "headers":
			flag(&e.Headers, "stores header payloads in plaintext")
		case "failures":
			flag(&e.Failures, "stores failure messages and stack traces in plaintext")
		case "text":
			flag(&e.Text, "stores reasons and schedule notes in plaintext")
		case "search_attributes":
			names, nodes := p.strList(vn, f)
			seen := map[string]bool{}
			for i, s := range names {
				fi := fmt.Sprintf("%s[%d]", f, i)
				switch {
				case strings.TrimSpace(s) == "":
					p.errorf(nodes[i], fi, "must not be empty")
				case seen[s]:
					p.errorf(nodes[i], fi, "duplicate search attribute %q", s)
				}
				seen[s] = true
			}
			e.SearchAttributes = names
		case "payloads":
			p.errorf(kn, f, "payloads are always encrypted; remove this field")
		default:
			p.errorf(kn, f, "unknown field (known: memo, headers, failures, text, search_attributes)")
		}
	})
	return leaks
}

func (p *parser) adoption(n *yaml.Node, field string) *Adoption {
	a := &Adoption{}
	before := len(p.errs)
	p.mapping(n, field, func(key string, kn, vn *yaml.Node) {
		f := field + "." + key
		switch key {
		case "accept_plaintext_before":
			if vn.Kind == yaml.ScalarNode && vn.Tag == "!!timestamp" {
				vn.Tag = "!!str" // YAML reads an unquoted time as a timestamp; parse it with the rule below
			}
			if s, ok := p.str(vn, f); ok {
				t, err := time.Parse(time.RFC3339, s)
				if err != nil {
					p.errorf(vn, f, "must be an RFC 3339 time such as 2026-12-01T00:00:00Z, got %q", s)
					return
				}
				a.PlaintextBefore = t
			}
		case "warn_only":
			if b, ok := p.bool(vn, f); ok {
				a.WarnOnly = b
			}
		default:
			p.errorf(kn, f, "unknown field (known: accept_plaintext_before, warn_only)")
		}
	})
	if len(p.errs) != before {
		return nil
	}
	if a.PlaintextBefore.IsZero() && !a.WarnOnly {
		p.errorf(n, field, "sets neither accept_plaintext_before nor warn_only: true; remove it for strict decode")
		return nil
	}
	if !a.PlaintextBefore.IsZero() && a.WarnOnly {
		p.errorf(n, field, "accept_plaintext_before has no effect with warn_only: true; keep one")
		return nil
	}
	return a
}

func (p *parser) tenant(n *yaml.Node, field string) *Tenant {
	t := &Tenant{}
	var defaultNode *yaml.Node
	p.mapping(n, field, func(key string, kn, vn *yaml.Node) {
		f := field + "." + key
		switch key {
		case "header":
			if s, ok := p.str(vn, f); ok {
				h := strings.ToLower(s)
				switch {
				case !metadataKey.MatchString(h):
					p.errorf(vn, f, "%q is not a valid gRPC metadata key (A-Z a-z 0-9 - _ .)", s)
				case strings.HasPrefix(h, "grpc-"), strings.HasSuffix(h, "-bin"), h == "temporal-namespace", h == "authorization", h == "content-type", h == "user-agent", h == "te":
					p.errorf(vn, f, "%q is reserved and cannot name the tenant", s)
				}
				t.Header = h
			}
		case "memo":
			if s, ok := p.str(vn, f); ok {
				if strings.TrimSpace(s) == "" {
					p.errorf(vn, f, "must not be empty")
				}
				t.Memo = s
			}
		case "default":
			defaultNode = vn
			if s, ok := p.str(vn, f); ok {
				if !tenantName.MatchString(s) {
					p.errorf(vn, f, "%q is not a valid tenant name (1-64 of A-Z a-z 0-9 _ -)", s)
				}
				t.Default = s
			}
		case "allowed":
			names, nodes := p.strList(vn, f)
			for i, s := range names {
				if !tenantName.MatchString(s) {
					p.errorf(nodes[i], fmt.Sprintf("%s[%d]", f, i), "%q is not a valid tenant name (1-64 of A-Z a-z 0-9 _ -)", s)
				}
			}
			if len(names) == 0 && vn.Kind == yaml.SequenceNode {
				p.errorf(vn, f, "must list at least one tenant (or be left out to allow any)")
			}
			t.Allowed = names
		case "scope":
			if s, ok := p.str(vn, f); ok {
				t.Scope = s
				p.checkScopeTemplate(vn, f, s, true)
			}
		default:
			p.errorf(kn, f, "unknown field (known: header, memo, default, allowed, scope)")
		}
	})
	if n.Kind == yaml.MappingNode {
		if t.Header == "" && t.Memo == "" {
			p.errorf(n, field, "needs header or memo (or both) to say where the tenant is named")
		}
		if t.Default != "" && len(t.Allowed) > 0 && !slices.Contains(t.Allowed, t.Default) {
			p.errorf(defaultNode, field+".default", "%q is not in allowed", t.Default)
		}
	}
	return t
}

// checkScopeTemplate validates a scope template by expanding it with sample values: placeholders must be known, and
// the literal part must be made of scope characters.
func (p *parser) checkScopeTemplate(n *yaml.Node, field, tmpl string, tenant bool) {
	if tenant && !strings.Contains(tmpl, "{tenant}") {
		p.errorf(n, field, "must contain {tenant}, or every tenant would share one scope")
		return
	}
	if !tenant && strings.Contains(tmpl, "{tenant}") {
		p.errorf(n, field, "{tenant} is only known in tenant.scope")
		return
	}
	rest := strings.NewReplacer("{namespace}", "", "{tenant}", "").Replace(tmpl)
	if strings.ContainsAny(rest, "{}") {
		p.errorf(n, field, "unknown placeholder in %q (known: {namespace}, {tenant})", tmpl)
		return
	}
	if err := codec.ValidateScope(expand(tmpl, "ns", "t")); err != nil {
		p.errorf(n, field, "%q does not make a valid key scope: %v", tmpl, err)
	}
}
