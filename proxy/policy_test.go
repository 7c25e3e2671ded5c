package proxy

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	failurepb "go.temporal.io/api/failure/v1"
	namespacepb "go.temporal.io/api/namespace/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/internal/testenv"
	"github.com/blindfold-dev/blindfold/keys"
	"github.com/blindfold-dev/blindfold/policy"
)

// policyStore writes content to a policy file and returns a Store over it, so tests can rewrite and reload it.
func policyStore(t testing.TB, content string) (*policy.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := policy.NewStore(path)
	if err != nil {
		t.Fatal(err)
	}
	return s, path
}

func startRequest(ns string) *workflowservice.StartWorkflowExecutionRequest {
	return &workflowservice.StartWorkflowExecutionRequest{
		Namespace: ns, WorkflowId: "wf", RequestId: "r",
		Input:  payloads(markerPrefix + "-input"),
		Memo:   &commonpb.Memo{Fields: map[string]*commonpb.Payload{"m": jsonPayload(markerPrefix + "-memo")}},
		Header: &commonpb.Header{Fields: map[string]*commonpb.Payload{"h": jsonPayload(markerPrefix + "-header")}},
		SearchAttributes: &commonpb.SearchAttributes{IndexedFields: map[string]*commonpb.Payload{
			"Secret": jsonPayload(markerPrefix + "-secret"), "Plain": jsonPayload(markerPrefix + "-plain"),
		}},
	}
}

func TestPolicyEncryptChoices(t *testing.T) {
	tests := []struct {
		name                            string
		entry                           string
		memo, header, secretSA, plainSA bool // encrypted upstream?
	}{
		{"defaults", "{}", true, true, false, false},
		{"memo plaintext", "{encrypt: {memo: false}, allow_plaintext: true}", false, true, false, false},
		{"headers plaintext", "{encrypt: {headers: false}, allow_plaintext: true}", true, false, false, false},
		{"one search attribute", "{encrypt: {search_attributes: [Secret]}}", true, true, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up := startFakeUpstream(t)
			var stored *workflowservice.StartWorkflowExecutionRequest
			up.on("StartWorkflowExecution", func(_ context.Context, req proto.Message) (proto.Message, error) {
				stored = req.(*workflowservice.StartWorkflowExecutionRequest)
				return &workflowservice.StartWorkflowExecutionResponse{RunId: "run"}, nil
			})
			up.on("DescribeWorkflowExecution", func(context.Context, proto.Message) (proto.Message, error) {
				return &workflowservice.DescribeWorkflowExecutionResponse{WorkflowExecutionInfo: &workflowpb.WorkflowExecutionInfo{
					Execution: &commonpb.WorkflowExecution{WorkflowId: stored.GetWorkflowId()},
					Memo:      stored.GetMemo(), SearchAttributes: stored.GetSearchAttributes(),
				}}, nil
			})
			store, _ := policyStore(t, "version: 1\nnamespaces:\n  default: "+tc.entry+"\n")
			p := startProxy(t, up.addr, Config{Policy: store})
			req := startRequest("default")
			if _, err := p.wf.StartWorkflowExecution(context.Background(), req); err != nil {
				t.Fatal(err)
			}
			if !codec.IsEncrypted(stored.GetInput().GetPayloads()[0]) {
				t.Error("input not encrypted")
			}
			check := func(what string, p *commonpb.Payload, want bool) {
				t.Helper()
				got := codec.IsEncrypted(p) || openSearchAttribute(p) != nil
				if got != want {
					t.Errorf("%s: encrypted=%v, want %v", what, got, want)
				}
				if want && strings.Contains(p.String(), markerPrefix) {
					t.Errorf("%s: marker visible", what)
				}
			}
			check("memo", stored.GetMemo().GetFields()["m"], tc.memo)
			check("header", stored.GetHeader().GetFields()["h"], tc.header)
			check("secret search attribute", stored.GetSearchAttributes().GetIndexedFields()["Secret"], tc.secretSA)
			check("plain search attribute", stored.GetSearchAttributes().GetIndexedFields()["Plain"], tc.plainSA)
			if tc.secretSA {
				sa := stored.GetSearchAttributes().GetIndexedFields()["Secret"]
				if string(sa.GetMetadata()["encoding"]) != "json/plain" {
					t.Errorf("encrypted search attribute is not a JSON string: %v", sa.GetMetadata())
				}
			}
			// Everything reads back in plaintext, search attributes included.
			d, err := p.wf.DescribeWorkflowExecution(context.Background(), &workflowservice.DescribeWorkflowExecutionRequest{Namespace: "default", Execution: &commonpb.WorkflowExecution{WorkflowId: "wf"}})
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(d.GetWorkflowExecutionInfo().GetMemo(), req.GetMemo()) || !proto.Equal(d.GetWorkflowExecutionInfo().GetSearchAttributes(), req.GetSearchAttributes()) {
				t.Errorf("not restored: %v", d.GetWorkflowExecutionInfo())
			}
		})
	}
}

func TestPolicyFailureText(t *testing.T) {
	for _, tc := range []struct {
		entry   string
		encoded bool
	}{{"{}", true}, {"{encrypt: {failures: false}, allow_plaintext: true}", false}} {
		up := startFakeUpstream(t)
		var stored *failurepb.Failure
		up.on("RespondActivityTaskFailed", func(_ context.Context, req proto.Message) (proto.Message, error) {
			stored = req.(*workflowservice.RespondActivityTaskFailedRequest).GetFailure()
			return &workflowservice.RespondActivityTaskFailedResponse{}, nil
		})
		store, _ := policyStore(t, "version: 1\nnamespaces:\n  default: "+tc.entry+"\n")
		p := startProxy(t, up.addr, Config{Policy: store})
		if _, err := p.wf.RespondActivityTaskFailed(context.Background(), &workflowservice.RespondActivityTaskFailedRequest{
			Namespace: "default", Failure: &failurepb.Failure{Message: markerPrefix + "-msg", FailureInfo: &failurepb.Failure_ApplicationFailureInfo{
				ApplicationFailureInfo: &failurepb.ApplicationFailureInfo{Details: payloads(markerPrefix + "-details")}}},
		}); err != nil {
			t.Fatal(err)
		}
		if got := stored.GetMessage() == encodedFailureMessage; got != tc.encoded {
			t.Errorf("%s: message %q", tc.entry, stored.GetMessage())
		}
		if !codec.IsEncrypted(stored.GetApplicationFailureInfo().GetDetails().GetPayloads()[0]) {
			t.Errorf("%s: failure details (payloads) not encrypted", tc.entry)
		}
	}
}

func TestPolicyNamespacesServed(t *testing.T) {
	up := startFakeUpstream(t)
	up.on("ListNamespaces", func(context.Context, proto.Message) (proto.Message, error) {
		r := &workflowservice.ListNamespacesResponse{}
		for _, n := range []string{"default", "prod-eu", "staging"} {
			r.Namespaces = append(r.Namespaces, &workflowservice.DescribeNamespaceResponse{NamespaceInfo: &namespacepb.NamespaceInfo{Name: n}})
		}
		return r, nil
	})
	up.on("StartWorkflowExecution", func(context.Context, proto.Message) (proto.Message, error) {
		return &workflowservice.StartWorkflowExecutionResponse{}, nil
	})
	store, _ := policyStore(t, "version: 1\nnamespaces:\n  default: {}\n  \"prod-*\": {}\n")
	p := startProxy(t, up.addr, Config{Policy: store})
	ctx := context.Background()
	_, err := p.wf.StartWorkflowExecution(ctx, startRequest("staging"))
	if st := wantCode(t, err, codes.PermissionDenied); !strings.Contains(st.Message(), "no entry") {
		t.Errorf("message: %s", st.Message())
	}
	for _, r := range up.received() {
		if r.method == fullMethod("StartWorkflowExecution") {
			t.Fatal("refused request was forwarded")
		}
	}
	if _, err := p.wf.StartWorkflowExecution(ctx, startRequest("prod-eu")); err != nil {
		t.Fatal(err)
	}
	l, err := p.wf.ListNamespaces(ctx, &workflowservice.ListNamespacesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range l.GetNamespaces() {
		names = append(names, n.GetNamespaceInfo().GetName())
	}
	if strings.Join(names, ",") != "default,prod-eu" {
		t.Errorf("ListNamespaces: %v", names)
	}
}

func TestPolicyReject(t *testing.T) {
	up := startFakeUpstream(t)
	var sealedBySDK *commonpb.Payload
	up.on("StartWorkflowExecution", func(context.Context, proto.Message) (proto.Message, error) {
		return &workflowservice.StartWorkflowExecutionResponse{RunId: "run"}, nil
	})
	up.on("QueryWorkflow", func(context.Context, proto.Message) (proto.Message, error) {
		return &workflowservice.QueryWorkflowResponse{QueryResult: &commonpb.Payloads{Payloads: []*commonpb.Payload{sealedBySDK}}}, nil
	})
	up.on("RespondActivityTaskFailed", func(context.Context, proto.Message) (proto.Message, error) {
		return &workflowservice.RespondActivityTaskFailedResponse{}, nil
	})
	store, _ := policyStore(t, "version: 1\nnamespaces:\n  default: {plaintext_from_sdk: reject}\n")
	p := startProxy(t, up.addr, Config{Policy: store})
	ctx := context.Background()

	// The "SDK" seals with the keys the proxy has too (the SDK plugin and the proxy share keys): the proxy
	// authenticates every envelope a client sends, but in reject mode it opens none on the way back.
	sdk := p.codec
	seal := func(pl *commonpb.Payload) *commonpb.Payload {
		out, err := sdk.Encode(ctx, "default", []*commonpb.Payload{pl})
		if err != nil {
			t.Fatal(err)
		}
		return out[0]
	}
	sealedBySDK = seal(jsonPayload(markerPrefix + "-result"))

	for name, mutate := range map[string]func(*workflowservice.StartWorkflowExecutionRequest){
		"payload": func(r *workflowservice.StartWorkflowExecutionRequest) {
			r.Input.Payloads[0] = jsonPayload(markerPrefix)
		},
		"memo": func(r *workflowservice.StartWorkflowExecutionRequest) { r.Memo.Fields["m"] = jsonPayload(markerPrefix) },
		"header": func(r *workflowservice.StartWorkflowExecutionRequest) {
			r.Header.Fields["h"] = jsonPayload(markerPrefix)
		},
		"plain SAs": func(r *workflowservice.StartWorkflowExecutionRequest) {},
	} {
		req := &workflowservice.StartWorkflowExecutionRequest{
			Namespace: "default", WorkflowId: "wf",
			Input:            &commonpb.Payloads{Payloads: []*commonpb.Payload{seal(jsonPayload("i"))}},
			Memo:             &commonpb.Memo{Fields: map[string]*commonpb.Payload{"m": seal(jsonPayload("m"))}},
			Header:           &commonpb.Header{Fields: map[string]*commonpb.Payload{"h": seal(jsonPayload("h"))}},
			SearchAttributes: &commonpb.SearchAttributes{IndexedFields: map[string]*commonpb.Payload{"Plain": jsonPayload("visible")}},
		}
		mutate(req)
		want := proto.Clone(req)
		_, err := p.wf.StartWorkflowExecution(ctx, req)
		if name == "plain SAs" {
			if err != nil {
				t.Fatalf("all sealed: %v", err)
			}
			if got := up.last(t, "StartWorkflowExecution").req; !proto.Equal(got, want) {
				t.Errorf("SDK-sealed request changed on the way:\n got %v\nwant %v", got, want)
			}
			continue
		}
		st := wantCode(t, err, codes.InvalidArgument)
		if !strings.Contains(st.Message(), "plaintext_from_sdk: reject") || !strings.Contains(st.Message(), `namespace "default"`) {
			t.Errorf("%s: message %q", name, st.Message())
		}
	}
	n := 0
	for _, r := range up.received() {
		if r.method == fullMethod("StartWorkflowExecution") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d starts forwarded, want only the sealed one", n)
	}
	// Failure text in plaintext is refused too.
	_, err := p.wf.RespondActivityTaskFailed(ctx, &workflowservice.RespondActivityTaskFailedRequest{Namespace: "default",
		Failure: &failurepb.Failure{Message: markerPrefix}})
	if st := wantCode(t, err, codes.InvalidArgument); !strings.Contains(st.Message(), "failure message") {
		t.Errorf("failure: %q", st.Message())
	}
	// Responses are not decoded: the SDK's ciphertext reaches the SDK as it is.
	q, err := p.wf.QueryWorkflow(ctx, &workflowservice.QueryWorkflowRequest{Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(q.GetQueryResult().GetPayloads()[0], sealedBySDK) {
		t.Error("reject mode decoded or changed a response")
	}
}

func TestPolicyPass(t *testing.T) {
	up := startFakeUpstream(t)
	up.on("StartWorkflowExecution", func(context.Context, proto.Message) (proto.Message, error) {
		return &workflowservice.StartWorkflowExecutionResponse{}, nil
	})
	store, _ := policyStore(t, "version: 1\nnamespaces:\n  legacy: {plaintext_from_sdk: pass, allow_plaintext: true}\n")
	p := startProxy(t, up.addr, Config{Policy: store})
	req := startRequest("legacy")
	if _, err := p.wf.StartWorkflowExecution(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if got := up.last(t, "StartWorkflowExecution").req; !proto.Equal(got, req) {
		t.Error("pass mode changed the request")
	}
}

func TestPolicyTenantScopes(t *testing.T) {
	up := startFakeUpstream(t)
	up.on("StartWorkflowExecution", func(context.Context, proto.Message) (proto.Message, error) {
		return &workflowservice.StartWorkflowExecutionResponse{}, nil
	})
	up.on("PollActivityTaskQueue", func(context.Context, proto.Message) (proto.Message, error) {
		return &workflowservice.PollActivityTaskQueueResponse{}, nil
	})
	store, _ := policyStore(t, `version: 1
namespaces:
  saas:
    tenant: {header: x-tenant, memo: tenant, allowed: [acme, globex]}
`)
	km, c := testenv.LocalCodec(t, t.TempDir())
	p := startProxy(t, up.addr, Config{Policy: store, Codec: c})
	withTenant := func(tn string) context.Context {
		return metadata.AppendToOutgoingContext(context.Background(), "x-tenant", tn)
	}
	keyOf := func() string {
		id, _ := codec.KeyIDIn(up.last(t, "StartWorkflowExecution").req.(*workflowservice.StartWorkflowExecutionRequest).GetInput().GetPayloads()[0], "saas")
		return id
	}
	memoTenant := func(tn string) *workflowservice.StartWorkflowExecutionRequest {
		r := startRequest("saas")
		pl, _ := converterPayload(tn)
		r.Memo.Fields["tenant"] = pl
		return r
	}
	for _, tc := range []struct {
		name    string
		ctx     context.Context
		req     *workflowservice.StartWorkflowExecutionRequest
		scope   string
		wantErr string
	}{
		{"header acme", withTenant("acme"), startRequest("saas"), "saas.acme", ""},
		{"header globex", withTenant("globex"), startRequest("saas"), "saas.globex", ""},
		{"memo", context.Background(), memoTenant("globex"), "saas.globex", ""},
		{"header and memo agree", withTenant("acme"), memoTenant("acme"), "saas.acme", ""},
		{"header and memo differ", withTenant("acme"), memoTenant("globex"), "", "names two tenants"},
		{"no tenant", context.Background(), startRequest("saas"), "", "names no tenant"},
		{"not allowed", withTenant("initech"), startRequest("saas"), "", `"initech" is not an allowed tenant`},
		{"invalid", withTenant("a.b"), startRequest("saas"), "", "not a valid tenant name"},
	} {
		_, err := p.wf.StartWorkflowExecution(tc.ctx, tc.req)
		if tc.wantErr != "" {
			if st := wantCode(t, err, codes.InvalidArgument); !strings.Contains(st.Message(), tc.wantErr) {
				t.Errorf("%s: %q", tc.name, st.Message())
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if kid := keyOf(); !strings.HasPrefix(kid, tc.scope+"/") {
			t.Errorf("%s: sealed with %q, want scope %s", tc.name, kid, tc.scope)
		}
	}
	// A call without payloads needs no tenant.
	if _, err := p.wf.PollActivityTaskQueue(context.Background(), &workflowservice.PollActivityTaskQueueRequest{Namespace: "saas"}); err != nil {
		t.Errorf("poll without a tenant: %v", err)
	}
	// Shredding one tenant's scope leaves the other's payloads readable.
	acme, err := c.EncodeFor(context.Background(), codec.Target{Namespace: "saas", Scope: "saas.acme"}, []*commonpb.Payload{jsonPayload("a")})
	if err != nil {
		t.Fatal(err)
	}
	globex, err := c.EncodeFor(context.Background(), codec.Target{Namespace: "saas", Scope: "saas.globex"}, []*commonpb.Payload{jsonPayload("g")})
	if err != nil {
		t.Fatal(err)
	}
	if err := km.Shred(context.Background(), "saas.acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Decode(context.Background(), "saas", acme); err == nil {
		t.Error("shredded tenant still readable")
	}
	if _, err := c.Decode(context.Background(), "saas", globex); err != nil {
		t.Errorf("other tenant unreadable after shredding: %v", err)
	}
}

// TestPolicySnapshotPerRPC: an RPC keeps the policy it was admitted under even if a reload lands while it is in flight;
// the next RPC uses the new one.
func TestPolicySnapshotPerRPC(t *testing.T) {
	up := startFakeUpstream(t)
	store, path := policyStore(t, "version: 1\nnamespaces:\n  default: {}\n")
	c, _ := newTestCodec(t)
	sealed, err := c.Encode(context.Background(), "default", []*commonpb.Payload{jsonPayload(markerPrefix + "-result")})
	if err != nil {
		t.Fatal(err)
	}
	first := true
	up.on("QueryWorkflow", func(context.Context, proto.Message) (proto.Message, error) {
		if !first {
			return &workflowservice.QueryWorkflowResponse{QueryResult: &commonpb.Payloads{Payloads: sealed}}, nil
		}
		first = false
		// The reload lands while the first query is in flight: the new policy passes everything through.
		if err := os.WriteFile(path, []byte("version: 1\nnamespaces:\n  default: {plaintext_from_sdk: pass, allow_plaintext: true}\n"), 0o600); err != nil {
			return nil, err
		}
		if changed, err := store.Reload(); !changed || err != nil {
			t.Errorf("reload: %v %v", changed, err)
		}
		return &workflowservice.QueryWorkflowResponse{QueryResult: &commonpb.Payloads{Payloads: sealed}}, nil
	})
	p := startProxy(t, up.addr, Config{Policy: store, Codec: c})
	q, err := p.wf.QueryWorkflow(context.Background(), &workflowservice.QueryWorkflowRequest{Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(q.GetQueryResult().GetPayloads()[0], jsonPayload(markerPrefix+"-result")) {
		t.Error("in-flight RPC did not finish under the policy it started with")
	}
	q, err = p.wf.QueryWorkflow(context.Background(), &workflowservice.QueryWorkflowRequest{Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	if !codec.IsEncrypted(q.GetQueryResult().GetPayloads()[0]) {
		t.Error("the next RPC did not use the reloaded policy")
	}
}

// scopeIgnoringKeyring breaks codec.Keyring's contract: it seals every Target with the namespace's default scope.
type scopeIgnoringKeyring struct{ *keys.Manager }

func (k scopeIgnoringKeyring) SealingKey(ctx context.Context, t codec.Target) (codec.Key, error) {
	return k.Manager.SealingKey(ctx, codec.Target{Namespace: t.Namespace})
}

// TestPolicyScopeNotHonoured: a keyring that ignores the scope the policy chose (the codec.Target's) makes the request
// fail rather than seal a tenant's data elsewhere.
func TestPolicyScopeNotHonoured(t *testing.T) {
	up := startFakeUpstream(t)
	store, _ := policyStore(t, "version: 1\nnamespaces:\n  saas: {tenant: {header: x-tenant}}\n  fixed: {scope: shared}\n")
	km, err := keys.OpenLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c, err := codec.New(scopeIgnoringKeyring{km})
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, up.addr, Config{Policy: store, Codec: c})
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-tenant", "acme")
	for _, ns := range []string{"saas", "fixed"} {
		_, err = p.wf.StartWorkflowExecution(ctx, startRequest(ns))
		if st := wantCode(t, err, codes.Internal); !strings.Contains(st.Message(), "codec.Target.Scope") {
			t.Errorf("%s: %q", ns, st.Message())
		}
	}
	if len(up.received()) != 0 {
		t.Error("request forwarded")
	}
}

// FuzzOpenSearchAttribute: search attribute values come from the server; whatever they hold, opening one never panics,
// and a value it accepts is a Blindfold envelope that seals back to the same wrapped string.
func FuzzOpenSearchAttribute(f *testing.F) {
	c, _ := newTestCodec(f)
	env, err := c.Encode(context.Background(), "ns", []*commonpb.Payload{jsonPayload("secret")})
	if err != nil {
		f.Fatal(err)
	}
	wrapped, err := sealSearchAttribute(env[0])
	if err != nil {
		f.Fatal(err)
	}
	f.Add(wrapped.GetData())
	f.Add([]byte(`"blindfold:v1:"`))
	f.Add([]byte(`"blindfold:v1:!!"`))
	f.Add([]byte(`"plain keyword"`))
	f.Add([]byte(`"blindfold:v1:CgA"`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: data}
		got := openSearchAttribute(p)
		if got == nil {
			return
		}
		if !codec.IsEncrypted(got) {
			t.Fatal("opened a value that is not an envelope")
		}
		again, err := sealSearchAttribute(got)
		if err != nil || openSearchAttribute(again) == nil || !proto.Equal(openSearchAttribute(again), got) {
			t.Fatalf("round trip: %v", err)
		}
	})
}
