package proxy

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	commonpb "go.temporal.io/api/common/v1"
	failurepb "go.temporal.io/api/failure/v1"
	apiproxy "go.temporal.io/api/proxy"
	"go.temporal.io/sdk/converter"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/policy"
)

// PolicySource gives the policy in force. *policy.Store implements it (and reloads it); the proxy takes one snapshot
// per RPC, so a reload applies to RPCs that start after it and never changes one in flight.
type PolicySource interface {
	Current() *policy.Policy
}

// callPolicy is what one RPC does, decided once when it is admitted from the policy snapshot it took.
type callPolicy struct {
	snapshot *policy.Policy
	rules    *policy.NamespaceRules
	// scope is the key scope new payloads are sealed with, when a tenant or fixed scope applies ("" otherwise).
	scope string
	// tenantErr is why no tenant could be resolved; it fails the RPC only if it carries payloads to encrypt.
	tenantErr error
	// ns is the RPC's namespace, which names a format v2 envelope's default scope.
	ns string
}

type callPolicyKey struct{}

func withCallPolicy(ctx context.Context, cp *callPolicy) context.Context {
	return context.WithValue(ctx, callPolicyKey{}, cp)
}

// nexusPeers are the namespaces whose Nexus values may be opened in the RPC's namespace (policy nexus_peers).
func (cp *callPolicy) nexusPeers() []string {
	if cp == nil || cp.rules == nil {
		return nil
	}
	return cp.rules.NexusPeers
}

// sealScope is the scope to put in the codec.Target of the RPC's payloads: the one the policy chose, or "" for the
// keyring's default scope of the namespace (also without a policy, cp == nil).
func (cp *callPolicy) sealScope() string {
	if cp == nil {
		return ""
	}
	return cp.scope
}

func callPolicyFrom(ctx context.Context) *callPolicy {
	cp, _ := ctx.Value(callPolicyKey{}).(*callPolicy)
	return cp
}

// admitPolicy decides the callPolicy of a request for namespace (has says whether the request type has a namespace
// field at all). A namespace without an entry in a policy that lists namespaces is refused with PermissionDenied.
// p is the RPC's snapshot.
func admitPolicy(ctx context.Context, p *policy.Policy, ns string, has bool, req any) (*callPolicy, error) {
	if !has {
		// GetSystemInfo, ListNamespaces and the like carry no payloads.
		return &callPolicy{snapshot: p, rules: policy.DefaultRules()}, nil
	}
	rules, err := p.Namespace(ns)
	if err != nil {
		return nil, status.Errorf(codes.PermissionDenied, "blindfold: namespace %q is not served by this proxy: the policy has no entry for it", ns)
	}
	cp := &callPolicy{snapshot: p, rules: rules, ns: ns}
	if rules.Plaintext != policy.PlaintextEncrypt {
		return cp, nil // the proxy seals nothing, so no scope is needed
	}
	tenant := ""
	if rules.Tenant != nil {
		value, found, err := tenantOf(ctx, rules.Tenant, req)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "blindfold: namespace %q: %v", ns, err)
		}
		if tenant, err = rules.Tenant.ResolveTenant(value, found); err != nil {
			cp.tenantErr = err
			return cp, nil
		}
	}
	if rules.Tenant == nil && rules.Scope == "" {
		return cp, nil // the keyring's own namespace mapping applies
	}
	if cp.scope, err = rules.ScopeFor(ns, tenant); err != nil {
		cp.tenantErr = err
	}
	return cp, nil
}

// tenantOf reads the tenant a request names: the configured header, and the configured memo field of every memo the
// request carries (a start, a schedule, a continue-as-new or child workflow command). All that are present must agree.
func tenantOf(ctx context.Context, t *policy.Tenant, req any) (string, bool, error) {
	var names []string
	var from []string
	if t.Header != "" {
		md, _ := metadata.FromIncomingContext(ctx)
		vals := md.Get(t.Header)
		if len(vals) > 1 {
			return "", false, fmt.Errorf("%w: header %s is sent %d times", policy.ErrTenant, t.Header, len(vals))
		}
		if len(vals) == 1 {
			names, from = append(names, vals[0]), append(from, "header "+t.Header)
		}
	}
	if msg, ok := req.(proto.Message); ok && t.Memo != "" {
		memos, err := memosOf(ctx, msg)
		if err != nil {
			return "", false, err
		}
		for _, m := range memos {
			p, ok := m.GetFields()[t.Memo]
			if !ok {
				continue
			}
			var v string
			if codec.IsEncrypted(p) {
				continue // sealed by the SDK: the proxy cannot read it
			}
			if err := converter.GetDefaultDataConverter().FromPayload(p, &v); err != nil {
				return "", false, fmt.Errorf("%w: memo field %s is not a string", policy.ErrTenant, t.Memo)
			}
			names, from = append(names, v), append(from, "memo field "+t.Memo)
		}
	}
	if len(names) == 0 {
		return "", false, nil
	}
	for i := 1; i < len(names); i++ {
		if names[i] != names[0] {
			return "", false, fmt.Errorf("%w: the request names two tenants (%s and %s)", policy.ErrTenant, from[0], from[i])
		}
	}
	return names[0], true, nil
}

// memosOf returns every memo of msg, without unpacking Any values (no memo lives in one).
func memosOf(ctx context.Context, msg proto.Message) ([]*commonpb.Memo, error) {
	var memos []*commonpb.Memo
	seen := map[*commonpb.Memo]bool{}
	err := apiproxy.VisitPayloads(ctx, msg, apiproxy.VisitPayloadsOptions{
		SkipSearchAttributes: true,
		Visitor: func(vc *apiproxy.VisitPayloadsContext, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
			if m, ok := vc.Parent.(*commonpb.Memo); ok && !seen[m] {
				seen[m] = true
				memos = append(memos, m)
			}
			return ps, nil
		},
		WellKnownAnyVisitor: func(*apiproxy.VisitPayloadsContext, *anypb.Any) error { return nil },
	})
	return memos, err
}

// payloadFilter decides, for one payload the visitor hands over on a request, whether the policy wants it encrypted,
// and names the field for error messages.
func (cp *callPolicy) wants(vc *apiproxy.VisitPayloadsContext, p *commonpb.Payload) (bool, string) {
	return cp.wantsIn(vc.Parent, p)
}

// sealsInbound reports whether a payload held by parent is sealed on requests under cp (nil: always), so that
// strict decode refuses it in plaintext on responses. Search attributes are not asked: they pass.
func (cp *callPolicy) sealsInbound(parent proto.Message) bool {
	if cp == nil {
		return true
	}
	wants, _ := cp.wantsIn(parent, nil)
	return wants
}

func (cp *callPolicy) wantsIn(parent proto.Message, p *commonpb.Payload) (bool, string) {
	switch parent := parent.(type) {
	case *commonpb.Memo:
		return cp.rules.Encrypt.Memo, "a memo field"
	case *commonpb.Header:
		return cp.rules.Encrypt.Headers, "a header"
	case *commonpb.SearchAttributes:
		for name, v := range parent.GetIndexedFields() {
			if v == p {
				return cp.rules.EncryptsSearchAttribute(name), "search attribute " + name
			}
		}
		return false, "a search attribute"
	case *failurepb.Failure:
		// Encoded attributes the failure pass created (when failures are encrypted) or the SDK sent.
		return true, "a failure's encoded attributes"
	}
	return true, "a payload"
}

// serves reports whether the policy snapshot has an entry for namespace (ListNamespaces shows only those).
func (cp *callPolicy) serves(namespace string) bool {
	_, err := cp.snapshot.Namespace(namespace)
	return err == nil
}

// visitsSearchAttributes reports whether the transform must visit search attributes: only under a policy, which may
// encrypt some (and then their encrypted form must be opened on responses).
func (cp *callPolicy) visitsSearchAttributes() bool { return cp != nil }

// reject reports whether the namespace's SDKs must encrypt (the proxy checks, and seals nothing).
func (cp *callPolicy) reject() bool { return cp != nil && cp.rules.Plaintext == policy.PlaintextReject }

// passes reports whether the proxy leaves the namespace's messages alone in both directions.
func (cp *callPolicy) passes() bool { return cp != nil && cp.rules.Plaintext == policy.PlaintextPass }

// encryptsFailures reports whether failure text is moved into encrypted attributes on requests.
func (cp *callPolicy) encryptsFailures() bool {
	return cp == nil || cp.rules.Plaintext == policy.PlaintextEncrypt && cp.rules.Encrypt.Failures
}

// prepare decides what the codec gets for payload p met by the visitor: send is the payload to hand over (p itself,
// or the envelope inside an encrypted search attribute on the way back), sa says p is a search attribute, and ok=false
// leaves p as it is. On requests it enforces reject mode and a missing tenant. A nil cp is the policy-less behaviour.
func (cp *callPolicy) prepare(dir direction, vc *apiproxy.VisitPayloadsContext, p *commonpb.Payload) (send *commonpb.Payload, sa, ok bool, err error) {
	if cp == nil {
		return p, false, true, nil
	}
	_, sa = vc.Parent.(*commonpb.SearchAttributes)
	if dir == inbound {
		if !sa {
			return p, false, true, nil
		}
		env := openSearchAttribute(p)
		return env, true, env != nil, nil
	}
	wants, what := cp.wants(vc, p)
	if !wants {
		return nil, sa, false, nil
	}
	sealed := codec.IsSealed(p) || sa && openSearchAttribute(p) != nil
	if cp.reject() {
		if !sealed {
			return nil, sa, false, errRejectPlaintext(what)
		}
		return nil, sa, false, nil
	}
	if sealed {
		return nil, sa, false, nil // the SDK encrypted it already
	}
	if cp.tenantErr != nil {
		return nil, sa, false, &requestError{kind: KindTenant, code: codes.InvalidArgument, msg: cp.tenantErr.Error()}
	}
	return p, sa, true, nil
}

// finish turns the codec's result for orig into what goes back into the message: an encrypted search attribute is
// wrapped so the server still accepts it as a Keyword or Text value.
func (cp *callPolicy) finish(dir direction, sa bool, orig, out *commonpb.Payload) (*commonpb.Payload, error) {
	if cp == nil || dir != outbound || !codec.IsEncrypted(out) {
		return out, nil
	}
	if id, _ := codec.KeyIDIn(out, cp.ns); cp.scope != "" && !strings.HasPrefix(id, cp.scope+"/") {
		// The codec or its keyring ignored the scope of the codec.Target it was given (a PayloadCodec or Keyring that breaks
		// its contract). Sending this would seal a tenant's data where shredding the tenant cannot reach it: fail closed.
		return nil, &requestError{kind: KindEncode, code: codes.Internal, msg: fmt.Sprintf(
			"the keyring sealed with a key outside scope %q that the policy chose; it must seal with codec.Target.Scope", cp.scope)}
	}
	if !sa {
		return out, nil
	}
	w, err := sealSearchAttribute(out)
	if err != nil {
		return nil, err
	}
	if t, ok := orig.GetMetadata()["type"]; ok {
		// The SDK's declared type (e.g. Keyword) tells the server and UI how to read the value; it was visible anyway.
		w.Metadata["type"] = t
	}
	return w, nil
}

// rejectPlaintextFailure refuses a failure whose text is in plaintext, for namespaces whose SDKs must encrypt.
func rejectPlaintextFailure(f *failurepb.Failure) error {
	if (f.GetMessage() == "" || f.GetMessage() == encodedFailureMessage) && f.GetStackTrace() == "" {
		return nil
	}
	return errRejectPlaintext("a failure message or stack trace")
}

func errRejectPlaintext(what string) error {
	return &requestError{kind: KindPlaintextRejected, code: codes.InvalidArgument, msg: fmt.Sprintf(
		"%s is in plaintext, but the policy requires payloads of this namespace to be encrypted by the SDK (plaintext_from_sdk: reject); "+
			"configure the client with Blindfold's SDK plugin or a codec", what)}
}

// KindPlaintextRejected: a request carried plaintext where the namespace's policy requires SDK encryption
// (plaintext_from_sdk: reject).
const KindPlaintextRejected ErrorKind = "plaintext_rejected"

// KindTenant: the tenant of a request could not be resolved (missing, not allowed, conflicting), and it carried
// payloads to encrypt.
const KindTenant ErrorKind = "tenant"

// Encrypted search attributes must still be valid values of their type, or the server refuses them: the envelope is
// carried as a JSON string (valid for Keyword and Text attributes) of saPrefix and the base64 of the envelope.
const saPrefix = "blindfold:v1:"

// sealSearchAttribute wraps an envelope as a JSON string payload.
func sealSearchAttribute(env *commonpb.Payload) (*commonpb.Payload, error) {
	b, err := proto.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("wrap encrypted search attribute: %w", err)
	}
	return converter.GetDefaultDataConverter().ToPayload(saPrefix + base64.RawStdEncoding.EncodeToString(b))
}

// openSearchAttribute returns the envelope inside a search attribute sealSearchAttribute made, or nil if p is not one.
func openSearchAttribute(p *commonpb.Payload) *commonpb.Payload {
	if p == nil || string(p.GetMetadata()[converter.MetadataEncoding]) != converter.MetadataEncodingJSON ||
		!strings.HasPrefix(string(p.GetData()), `"`+saPrefix) {
		return nil
	}
	var s string
	if json.Unmarshal(p.GetData(), &s) != nil {
		return nil
	}
	b, err := base64.RawStdEncoding.DecodeString(strings.TrimPrefix(s, saPrefix))
	if err != nil {
		return nil
	}
	var env commonpb.Payload
	if proto.Unmarshal(b, &env) != nil || !codec.IsEncrypted(&env) {
		return nil
	}
	return &env
}

// sealsText reports whether free text in string fields (reasons, schedule notes) is sealed on requests.
// Reject mode seals it too: no SDK can, and the proxy holds the namespace's keys to verify envelopes anyway.
func (cp *callPolicy) sealsText() bool {
	return cp == nil || cp.rules.Plaintext != policy.PlaintextPass && cp.rules.Encrypt.Text
}

// tenantRefusingCodec stands in for the codec when no tenant scope could be resolved: sealing anything fails with
// why, so nothing of the tenant's is sealed where shredding the tenant could not reach it.
type tenantRefusingCodec struct{ err error }

func (c tenantRefusingCodec) EncodeFor(context.Context, codec.Target, []*commonpb.Payload) ([]*commonpb.Payload, error) {
	return nil, &requestError{kind: KindTenant, code: codes.InvalidArgument, msg: c.err.Error()}
}

func (c tenantRefusingCodec) Decode(context.Context, string, []*commonpb.Payload) ([]*commonpb.Payload, error) {
	return nil, &requestError{kind: KindTenant, code: codes.InvalidArgument, msg: c.err.Error()}
}
