package xds

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacconfigv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"gopkg.in/yaml.v3"
)

// RBACAction says what a rule does to the calls it matches.
type RBACAction string

// The rule actions. Deny rules are checked first; if any allow rule exists, a call must also match one of them.
const (
	Allow RBACAction = "allow"
	Deny  RBACAction = "deny"
)

// RBACRule matches calls by who makes them and which method they call.
type RBACRule struct {
	// Name identifies the rule in logs and in the pushed policy.
	Name string `yaml:"name"`
	// Action is allow or deny.
	Action RBACAction `yaml:"action"`
	// Principals are who the rule applies to; empty means everyone. Each is one of:
	//   "*"                      anyone
	//   "spiffe://…" or any text the subject alt name (URI, DNS) of a verified client certificate (needs mTLS)
	//   "ip:10.0.0.0/8"          the caller's address is in this CIDR range
	Principals []string `yaml:"principals"`
	// Methods are full gRPC method names ("/pkg.Service/Method") or, ending in "/", service prefixes
	// ("/temporal.api.operatorservice.v1.OperatorService/"); empty means every method.
	Methods []string `yaml:"methods"`
}

// RBACConfig is the server-side authorization of xDS-enabled replicas.
type RBACConfig struct {
	Rules []RBACRule `yaml:"rules"`
}

// LoadRBAC reads an RBAC rules file (YAML: {rules: [{name, action, principals, methods}]}) and validates it.
func LoadRBAC(path string) (RBACConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return RBACConfig{}, fmt.Errorf("read rbac rules: %w", err)
	}
	return ParseRBAC(b)
}

// ParseRBAC parses and validates RBAC rules from YAML. Unknown fields are errors, so a typo can't silently widen access.
func ParseRBAC(b []byte) (RBACConfig, error) {
	var c RBACConfig
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return RBACConfig{}, fmt.Errorf("%w: parse rbac rules: %v", ErrConfig, err)
	}
	if err := c.Validate(); err != nil {
		return RBACConfig{}, err
	}
	return c, nil
}

// Validate checks every rule: a name, a known action, well-formed principals and methods, unique names.
func (c RBACConfig) Validate() error {
	seen := map[string]bool{}
	for i, r := range c.Rules {
		if r.Name == "" {
			return fmt.Errorf("%w: rbac rule %d has no name", ErrConfig, i+1)
		}
		if seen[r.Name] {
			return fmt.Errorf("%w: rbac rule %q appears twice", ErrConfig, r.Name)
		}
		seen[r.Name] = true
		if r.Action != Allow && r.Action != Deny {
			return fmt.Errorf("%w: rbac rule %q: action %q is neither allow nor deny", ErrConfig, r.Name, r.Action)
		}
		for _, p := range r.Principals {
			if _, err := principal(p); err != nil {
				return fmt.Errorf("%w: rbac rule %q: %v", ErrConfig, r.Name, err)
			}
		}
		for _, m := range r.Methods {
			if !strings.HasPrefix(m, "/") || strings.Count(m, "/") != 2 {
				return fmt.Errorf("%w: rbac rule %q: method %q is not /package.Service/Method or /package.Service/", ErrConfig, r.Name, m)
			}
		}
	}
	return nil
}

// httpFilters returns the RBAC filters for the rules: a DENY filter for deny rules, then an ALLOW filter for allow
// rules, each present only if it has rules.
func (c RBACConfig) httpFilters() ([]*hcmv3.HttpFilter, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	var out []*hcmv3.HttpFilter
	for _, a := range []struct {
		action RBACAction
		proto  rbacconfigv3.RBAC_Action
		name   string
	}{{Deny, rbacconfigv3.RBAC_DENY, rbacDenyFilterName}, {Allow, rbacconfigv3.RBAC_ALLOW, rbacAllowFilterName}} {
		policies := map[string]*rbacconfigv3.Policy{}
		for _, r := range c.Rules {
			if r.Action != a.action {
				continue
			}
			p, err := policy(r)
			if err != nil {
				return nil, err
			}
			policies[r.Name] = p
		}
		if len(policies) == 0 {
			continue
		}
		cfg, err := anypb.New(&rbacv3.RBAC{Rules: &rbacconfigv3.RBAC{Action: a.proto, Policies: policies}})
		if err != nil {
			return nil, fmt.Errorf("marshal rbac filter: %w", err)
		}
		out = append(out, &hcmv3.HttpFilter{Name: a.name, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: cfg}})
	}
	return out, nil
}

func policy(r RBACRule) (*rbacconfigv3.Policy, error) {
	p := &rbacconfigv3.Policy{}
	if len(r.Principals) == 0 {
		p.Principals = []*rbacconfigv3.Principal{{Identifier: &rbacconfigv3.Principal_Any{Any: true}}}
	}
	for _, s := range r.Principals {
		pr, err := principal(s)
		if err != nil {
			return nil, err
		}
		p.Principals = append(p.Principals, pr)
	}
	if len(r.Methods) == 0 {
		p.Permissions = []*rbacconfigv3.Permission{{Rule: &rbacconfigv3.Permission_Any{Any: true}}}
	}
	for _, m := range r.Methods {
		sm := &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: m}}
		if strings.HasSuffix(m, "/") {
			sm = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: m}}
		}
		p.Permissions = append(p.Permissions, &rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_UrlPath{
			UrlPath: &matcherv3.PathMatcher{Rule: &matcherv3.PathMatcher_Path{Path: sm}},
		}})
	}
	return p, nil
}

func principal(s string) (*rbacconfigv3.Principal, error) {
	switch {
	case s == "":
		return nil, errors.New("empty principal")
	case s == "*":
		return &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_Any{Any: true}}, nil
	case strings.HasPrefix(s, "ip:"):
		_, n, err := net.ParseCIDR(strings.TrimPrefix(s, "ip:"))
		if err != nil {
			return nil, fmt.Errorf("principal %q: %v", s, err)
		}
		ones, _ := n.Mask.Size()
		return &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_DirectRemoteIp{DirectRemoteIp: &corev3.CidrRange{
			AddressPrefix: n.IP.String(), PrefixLen: wrapperspb.UInt32(uint32(ones)),
		}}}, nil
	default:
		return &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_Authenticated_{Authenticated: &rbacconfigv3.Principal_Authenticated{
			PrincipalName: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}},
		}}}, nil
	}
}

// walkAnys calls f for every google.protobuf.Any set anywhere in m (not inside the Anys themselves).
func walkAnys(m protoreflect.Message, f func(*anypb.Any)) {
	if a, ok := m.Interface().(*anypb.Any); ok {
		f(a)
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				walkAnys(l.Get(i).Message(), f)
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				walkAnys(mv.Message(), f)
				return true
			})
		case fd.Message() != nil && !fd.IsList() && !fd.IsMap():
			walkAnys(v.Message(), f)
		}
		return true
	})
}
