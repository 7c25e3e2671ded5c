package proxy

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	commandpb "go.temporal.io/api/command/v1"
	namespacepb "go.temporal.io/api/namespace/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/blindfold-dev/blindfold/internal/testenv"
	"github.com/blindfold-dev/blindfold/policy"
)

const authPolicy = `version: 1
namespaces:
  payments: {}
  hr: {}
access:
  rules:
    - name: payments-workers
      subjects: ["CN=payments-worker"]
      namespaces: [payments]
      operations: [worker]
    - name: payments-clients
      sans: ["spiffe://prod.example/ns/payments/sa/*"]
      namespaces: [payments]
      operations: [client-write, client-read]
    - name: hr-readers
      subjects: [alice]
      namespaces: [hr]
      operations: [client-read]
    - name: ops-admins
      groups: [ops]
      namespaces: ["*"]
      operations: [admin]
`

// fakeVerifier accepts the tokens it maps, remembering them by hash as a caching verifier would.
type fakeVerifier struct {
	mu    sync.Mutex
	ids   map[[sha256.Size]byte]policy.Identity
	calls int
}

func newFakeVerifier(tokens map[string]policy.Identity) *fakeVerifier {
	v := &fakeVerifier{ids: map[[sha256.Size]byte]policy.Identity{}}
	for tok, id := range tokens {
		id.Method = "static"
		v.ids[sha256.Sum256([]byte(tok))] = id
	}
	return v
}

var errFakeToken = errors.New("invalid token: unknown")

func (v *fakeVerifier) VerifyToken(_ context.Context, token string) (policy.Identity, error) {
	sum := sha256.Sum256([]byte(token))
	v.mu.Lock()
	defer v.mu.Unlock()
	v.calls++
	id, ok := v.ids[sum]
	if !ok {
		// A careless verifier quoting the token: the proxy must not pass it on.
		return policy.Identity{}, errors.New("token " + token + " is " + errFakeToken.Error())
	}
	return id, nil
}

func (v *fakeVerifier) count() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.calls
}

// kindObserver counts the error kinds the proxy reports.
type kindObserver struct {
	mu    sync.Mutex
	kinds map[ErrorKind]int
}

func (o *kindObserver) Encoded(string, int, int) {}
func (o *kindObserver) Decoded(string, int, int) {}
func (o *kindObserver) Error(_ string, kind ErrorKind) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.kinds == nil {
		o.kinds = map[ErrorKind]int{}
	}
	o.kinds[kind]++
}

func (o *kindObserver) count(kind ErrorKind) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.kinds[kind]
}

// authEnv is a proxy with Config.Auth over real TLS (client certificates optional) in front of a fake upstream.
type authEnv struct {
	pki      *testenv.PKI
	up       *fakeUpstream
	p        *testProxy
	store    *policy.Store
	path     string
	verifier *fakeVerifier
	audit    string
	obs      *kindObserver
	addr     string
}

var authTokens = map[string]policy.Identity{
	"alice-token": {Subject: "alice"},
	"ops-token":   {Subject: "olga", Groups: []string{"ops"}},
}

func startAuthEnv(t *testing.T, edit func(*Config)) *authEnv {
	t.Helper()
	e := &authEnv{pki: testenv.NewPKI(t), up: startFakeUpstream(t), obs: &kindObserver{}, verifier: newFakeVerifier(authTokens)}
	e.store, e.path = policyStore(t, authPolicy)
	e.audit = filepath.Join(t.TempDir(), "audit.jsonl")
	al, err := policy.OpenAudit(e.audit)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = al.Close() })
	tlsCfg := e.pki.ServerTLS(e.pki.Server(t, "proxy"), true)
	tlsCfg.ClientAuth = tls.VerifyClientCertIfGiven // token callers come without a certificate
	cfg := Config{
		TLS: tlsCfg, Policy: e.store, Observer: e.obs,
		Auth: &AuthConfig{ClientCerts: true, Tokens: e.verifier, Audit: al},
	}
	if edit != nil {
		edit(&cfg)
	}
	e.p = startProxy(t, e.up.addr, cfg)
	e.addr = e.p.conn.Target()
	return e
}

// dial connects to the proxy over TLS, presenting cert (none if nil).
func (e *authEnv) dial(t *testing.T, cert *testenv.Cert) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(credentials.NewTLS(e.pki.ClientTLS(cert))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func withToken(ctx context.Context, tok string) context.Context {
	if tok == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}

// auditRecords reads the audit log.
func auditRecords(t *testing.T, path string) []policy.Record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []policy.Record
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r policy.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

func TestCertIdentity(t *testing.T) {
	t.Parallel()
	pki := testenv.NewPKI(t)
	tests := []struct {
		name        string
		spec        testenv.CertSpec
		wantSubject string
		wantSANs    []string
	}{
		{"common name", testenv.CertSpec{CommonName: "payments-worker"}, "CN=payments-worker", nil},
		{"spiffe wins", testenv.CertSpec{CommonName: "w", URI: "spiffe://prod.example/ns/payments/sa/api"},
			"spiffe://prod.example/ns/payments/sa/api", []string{"spiffe://prod.example/ns/payments/sa/api"}},
		{"other uri is a SAN only", testenv.CertSpec{CommonName: "w", URI: "https://example.com/w"}, "CN=w", []string{"https://example.com/w"}},
		{"dns and uri", testenv.CertSpec{CommonName: "w", DNSNames: []string{"w.payments.svc"}, URI: "spiffe://td/w"},
			"spiffe://td/w", []string{"w.payments.svc", "spiffe://td/w"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.spec.Usage = x509.ExtKeyUsageClientAuth
			c := pki.Issue(t, tc.spec)
			cert, err := x509.ParseCertificate(c.TLS.Certificate[0])
			if err != nil {
				t.Fatal(err)
			}
			id := certIdentity(cert)
			if id.Subject != tc.wantSubject || !slices.Equal(id.SANs, tc.wantSANs) || id.Method != "mtls" {
				t.Errorf("identity = %+v, want subject %q sans %q method mtls", id, tc.wantSubject, tc.wantSANs)
			}
		})
	}
}

func TestAuthorizeCalls(t *testing.T) {
	t.Parallel()
	e := startAuthEnv(t, nil)
	worker := e.pki.Client(t, "payments-worker", "")
	spiffe := e.pki.Client(t, "api", "spiffe://prod.example/ns/payments/sa/api")
	stranger := e.pki.Client(t, "stranger", "")
	conns := map[string]*grpc.ClientConn{"": e.dial(t, nil), "worker": e.dial(t, worker), "spiffe": e.dial(t, spiffe), "stranger": e.dial(t, stranger)}

	poll := func(ns string) func(context.Context, *grpc.ClientConn) error {
		return func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := workflowservice.NewWorkflowServiceClient(c).PollActivityTaskQueue(ctx, &workflowservice.PollActivityTaskQueueRequest{Namespace: ns})
			return err
		}
	}
	start := func(ns string) func(context.Context, *grpc.ClientConn) error {
		return func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := workflowservice.NewWorkflowServiceClient(c).StartWorkflowExecution(ctx, &workflowservice.StartWorkflowExecutionRequest{Namespace: ns, WorkflowId: "w"})
			return err
		}
	}
	history := func(ns string) func(context.Context, *grpc.ClientConn) error {
		return func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := workflowservice.NewWorkflowServiceClient(c).GetWorkflowExecutionHistory(ctx, &workflowservice.GetWorkflowExecutionHistoryRequest{Namespace: ns})
			return err
		}
	}
	describe := func(ns string) func(context.Context, *grpc.ClientConn) error {
		return func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := workflowservice.NewWorkflowServiceClient(c).DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: ns})
			return err
		}
	}
	systemInfo := func(ctx context.Context, c *grpc.ClientConn) error {
		_, err := workflowservice.NewWorkflowServiceClient(c).GetSystemInfo(ctx, &workflowservice.GetSystemInfoRequest{})
		return err
	}
	listSA := func(ns string) func(context.Context, *grpc.ClientConn) error {
		return func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := operatorservice.NewOperatorServiceClient(c).ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: ns})
			return err
		}
	}
	listClusters := func(ctx context.Context, c *grpc.ClientConn) error {
		_, err := operatorservice.NewOperatorServiceClient(c).ListClusters(ctx, &operatorservice.ListClustersRequest{})
		return err
	}
	health := func(ctx context.Context, c *grpc.ClientConn) error {
		_, err := healthpb.NewHealthClient(c).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}

	// Allowed calls reach the fake upstream, which answers Unimplemented.
	const allowed = codes.Unimplemented
	tests := []struct {
		name    string
		conn    string
		header  string // authorization header value
		call    func(context.Context, *grpc.ClientConn) error
		want    codes.Code
		wantMsg string
	}{
		{"worker polls its namespace", "worker", "", poll("payments"), allowed, ""},
		{"worker may not start in hr", "worker", "", start("hr"), codes.PermissionDenied, `blindfold: "CN=payments-worker" may not client-write namespace "hr"`},
		{"worker may not start in its own namespace", "worker", "", start("payments"), codes.PermissionDenied, `may not client-write namespace "payments"`},
		{"worker describes its namespace", "worker", "", describe("payments"), codes.OK, ""},
		{"worker may not describe hr", "worker", "", describe("hr"), codes.PermissionDenied, `"CN=payments-worker" may not worker, client-write, client-read or admin namespace "hr"`},
		{"spiffe san starts", "spiffe", "", start("payments"), allowed, ""},
		{"spiffe may not poll", "spiffe", "", poll("payments"), codes.PermissionDenied, `"spiffe://prod.example/ns/payments/sa/api" may not worker namespace "payments"`},
		{"stranger cert denied", "stranger", "", history("payments"), codes.PermissionDenied, `"CN=stranger" may not client-read namespace "payments"`},
		{"token reads hr", "", "Bearer alice-token", history("hr"), allowed, ""},
		{"token wins over certificate", "worker", "Bearer alice-token", poll("payments"), codes.PermissionDenied, `"alice" may not worker namespace "payments"`},
		{"no credentials", "", "", history("hr"), codes.Unauthenticated, "send a client certificate (mutual TLS) or a bearer token"},
		{"unknown token", "worker", "Bearer not-a-real-token", poll("payments"), codes.Unauthenticated, "bearer token not accepted"},
		{"not a bearer token", "", "Basic dXNlcjpwdw==", history("hr"), codes.Unauthenticated, "not a bearer token"},
		{"system info for anyone authenticated", "stranger", "", systemInfo, allowed, ""},
		{"system info needs credentials", "", "", systemInfo, codes.Unauthenticated, "authentication required"},
		{"empty namespace denied", "worker", "", poll(""), codes.PermissionDenied, "without a namespace"},
		{"operator service denied to worker", "worker", "", listSA("payments"), codes.PermissionDenied, `may not admin namespace "payments"`},
		{"operator service for admins", "", "Bearer ops-token", listSA("payments"), allowed, ""},
		{"cluster-wide admin", "", "Bearer ops-token", listClusters, allowed, ""},
		{"cluster-wide needs admin on *", "", "Bearer alice-token", listClusters, codes.PermissionDenied, `"alice" may not admin the cluster`},
		{"health needs no credentials", "", "", health, codes.OK, ""},
	}
	e.up.on("DescribeNamespace", func(context.Context, proto.Message) (proto.Message, error) {
		return &workflowservice.DescribeNamespaceResponse{}, nil
	})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			if tc.header != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", tc.header)
			}
			err := tc.call(ctx, conns[tc.conn])
			st := wantCode(t, err, tc.want)
			if !strings.Contains(st.Message(), tc.wantMsg) {
				t.Errorf("message %q does not contain %q", st.Message(), tc.wantMsg)
			}
			if strings.Contains(st.Message(), "not-a-real-token") || strings.Contains(st.Message(), "dXNlcjpwdw") {
				t.Errorf("message %q echoes the credential", st.Message())
			}
		})
	}
}

func TestAuthDenialAuditedAndCounted(t *testing.T) {
	t.Parallel()
	e := startAuthEnv(t, nil)
	conn := e.dial(t, e.pki.Client(t, "payments-worker", ""))
	wf := workflowservice.NewWorkflowServiceClient(conn)
	_, err := wf.StartWorkflowExecution(context.Background(), &workflowservice.StartWorkflowExecutionRequest{Namespace: "hr", WorkflowId: "w"})
	wantCode(t, err, codes.PermissionDenied)
	_, err = wf.GetSystemInfo(withToken(context.Background(), "forged"), &workflowservice.GetSystemInfoRequest{})
	wantCode(t, err, codes.Unauthenticated)

	recs := auditRecords(t, e.audit)
	if len(recs) != 2 {
		t.Fatalf("audit records = %d, want 2: %+v", len(recs), recs)
	}
	d := recs[0]
	if d.Door != policy.DoorGRPC || d.Via != ViaProxy || d.Decision != policy.AuditDeny || d.Identity.Subject != "CN=payments-worker" ||
		d.Identity.Method != "mtls" || d.Namespace != "hr" || d.Operation != "client-write" || !strings.Contains(d.Reason, "StartWorkflowExecution") {
		t.Errorf("denial record = %+v", d)
	}
	u := recs[1]
	if u.Door != policy.DoorGRPC || u.Decision != policy.AuditDeny || u.Identity.Subject != "" || !strings.HasPrefix(u.Reason, "unauthenticated") {
		t.Errorf("unauthenticated record = %+v", u)
	}
	raw, err := os.ReadFile(e.audit)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), "forged") {
		t.Error("the audit log holds the token")
	}
	if _, err := policy.VerifyAudit(strings.NewReader(string(raw)), policy.VerifyOptions{}); err != nil {
		t.Errorf("audit chain: %v", err)
	}
	if n := e.obs.count(KindPermissionDenied); n != 1 {
		t.Errorf("permission_denied counted %d times, want 1", n)
	}
	if n := e.obs.count(KindUnauthenticated); n != 1 {
		t.Errorf("unauthenticated counted %d times, want 1", n)
	}
	if got := e.up.received(); len(got) != 0 {
		t.Errorf("refused calls reached the upstream: %d", len(got))
	}
}

func TestAuthUnclassifiedMethodDenied(t *testing.T) {
	t.Parallel()
	store, _ := policyStore(t, authPolicy)
	s := &Server{cfg: Config{Policy: store, Auth: &AuthConfig{Tokens: newFakeVerifier(authTokens)}}, log: slog.New(slog.DiscardHandler)}
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer ops-token"))
	called := false
	_, err := s.authUnary(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: "payments"},
		&grpc.UnaryServerInfo{FullMethod: workflowServicePath + "SomeFutureMethod"},
		func(context.Context, any) (any, error) { called = true; return nil, nil })
	st := wantCode(t, err, codes.PermissionDenied)
	if called || !strings.Contains(st.Message(), "SomeFutureMethod") {
		t.Errorf("called=%v message %q", called, st.Message())
	}
}

func TestAuthListNamespacesFiltered(t *testing.T) {
	t.Parallel()
	e := startAuthEnv(t, nil)
	e.up.on("ListNamespaces", func(context.Context, proto.Message) (proto.Message, error) {
		var r workflowservice.ListNamespacesResponse
		for _, n := range []string{"payments", "hr", "unserved"} {
			r.Namespaces = append(r.Namespaces, &workflowservice.DescribeNamespaceResponse{NamespaceInfo: &namespacepb.NamespaceInfo{Name: n}})
		}
		return &r, nil
	})
	tests := []struct {
		name  string
		cert  *testenv.Cert
		token string
		want  []string
	}{
		{"worker", e.pki.Client(t, "payments-worker", ""), "", []string{"payments"}},
		{"reader", nil, "alice-token", []string{"hr"}},
		{"admin", nil, "ops-token", []string{"payments", "hr"}},
		{"stranger", e.pki.Client(t, "stranger", ""), "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			wf := workflowservice.NewWorkflowServiceClient(e.dial(t, tc.cert))
			r, err := wf.ListNamespaces(withToken(context.Background(), tc.token), &workflowservice.ListNamespacesRequest{})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, d := range r.GetNamespaces() {
				got = append(got, d.GetNamespaceInfo().GetName())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("namespaces = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestAuthReloadRevokes(t *testing.T) {
	t.Parallel()
	e := startAuthEnv(t, nil)
	conn := e.dial(t, nil)
	wf := workflowservice.NewWorkflowServiceClient(conn)
	ctx := withToken(context.Background(), "alice-token")
	req := &workflowservice.GetWorkflowExecutionHistoryRequest{Namespace: "hr"}
	_, err := wf.GetWorkflowExecutionHistory(ctx, req)
	wantCode(t, err, codes.Unimplemented) // allowed: the fake upstream answered

	revoked := strings.Replace(authPolicy, "subjects: [alice]", "subjects: [bob]", 1)
	if err := os.WriteFile(e.path, []byte(revoked), 0o600); err != nil {
		t.Fatal(err)
	}
	if changed, err := e.store.Reload(); !changed || err != nil {
		t.Fatalf("reload: %v %v", changed, err)
	}
	_, err = wf.GetWorkflowExecutionHistory(ctx, req)
	st := wantCode(t, err, codes.PermissionDenied)
	if !strings.Contains(st.Message(), `"alice" may not client-read namespace "hr"`) {
		t.Errorf("message %q", st.Message())
	}
}

func TestAuthAPIKeyReplacesCallerToken(t *testing.T) {
	t.Parallel()
	e := startAuthEnv(t, func(c *Config) { c.APIKey, c.AllowAPIKeyWithoutTLS = "upstream-key", true })
	wf := workflowservice.NewWorkflowServiceClient(e.dial(t, nil))
	req := &workflowservice.GetWorkflowExecutionHistoryRequest{Namespace: "hr"}

	_, err := wf.GetWorkflowExecutionHistory(withToken(context.Background(), "not-a-real-token"), req)
	wantCode(t, err, codes.Unauthenticated)
	if n := len(e.up.received()); n != 0 {
		t.Fatalf("an unverified caller reached the upstream (%d requests)", n)
	}
	before := e.verifier.count()
	_, err = wf.GetWorkflowExecutionHistory(withToken(context.Background(), "alice-token"), req)
	wantCode(t, err, codes.Unimplemented)
	if e.verifier.count() != before+1 {
		t.Error("the caller's token was not verified")
	}
	got := e.up.last(t, "GetWorkflowExecutionHistory").md.Get("authorization")
	if !slices.Equal(got, []string{"Bearer upstream-key"}) {
		t.Errorf("upstream authorization = %q, want only the proxy's API key", got)
	}
}

// TestAuthTokenStaysAtTheProxy: without an upstream API key, a caller's verified token is not forwarded either: a
// hostile backend must not be able to replay it (at the codec endpoint, say).
func TestAuthTokenStaysAtTheProxy(t *testing.T) {
	t.Parallel()
	e := startAuthEnv(t, nil)
	wf := workflowservice.NewWorkflowServiceClient(e.dial(t, nil))
	_, err := wf.GetWorkflowExecutionHistory(withToken(context.Background(), "alice-token"), &workflowservice.GetWorkflowExecutionHistoryRequest{Namespace: "hr"})
	wantCode(t, err, codes.Unimplemented)
	if got := e.up.last(t, "GetWorkflowExecutionHistory").md.Get("authorization"); len(got) != 0 {
		t.Errorf("upstream received authorization %q", got)
	}
}

// TestAuthTokenStaysWithCertsOnly: a proxy that authorizes by client certificate alone drops a caller's bearer token
// too (it could be one the codec endpoint accepts).
func TestAuthTokenStaysWithCertsOnly(t *testing.T) {
	t.Parallel()
	e := startAuthEnv(t, func(c *Config) { c.Auth.Tokens = nil })
	wf := workflowservice.NewWorkflowServiceClient(e.dial(t, e.pki.Client(t, "payments-worker", "")))
	_, _ = wf.PollWorkflowTaskQueue(withToken(context.Background(), "some-codec-endpoint-token"), &workflowservice.PollWorkflowTaskQueueRequest{Namespace: "payments"})
	if got := e.up.last(t, "PollWorkflowTaskQueue").md.Get("authorization"); len(got) != 0 {
		t.Errorf("upstream received authorization %q", got)
	}
}

func TestAuthConfigValidate(t *testing.T) {
	t.Parallel()
	store, _ := policyStore(t, authPolicy)
	pki := testenv.NewPKI(t)
	verifying := pki.ServerTLS(pki.Server(t, "proxy"), true)
	presented := pki.ServerTLS(pki.Server(t, "proxy"), false)
	presented.ClientAuth = tls.RequireAnyClientCert
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"no policy", Config{TLS: verifying, Auth: &AuthConfig{ClientCerts: true}}, "needs a policy"},
		{"no way to authenticate", Config{Policy: store, Auth: &AuthConfig{}}, "client certificates or a token verifier"},
		{"client certs without TLS", Config{Policy: store, Auth: &AuthConfig{ClientCerts: true}}, "need inbound TLS"},
		{"client certs not verified", Config{Policy: store, TLS: presented, Auth: &AuthConfig{ClientCerts: true}}, "verifies them"},
		{"tokens on plaintext", Config{Policy: store, Auth: &AuthConfig{Tokens: newFakeVerifier(nil)}}, ""},
		{"client certs verified", Config{Policy: store, TLS: verifying, Auth: &AuthConfig{ClientCerts: true}}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.cfg.Upstream, tc.cfg.Codec = "127.0.0.1:1", xorCodec{}
			err := tc.cfg.validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("validate: %v", err)
			case tc.wantErr != "" && (err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("validate = %v, want ErrConfig containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestJoinActions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   []policy.Operation
		want string
	}{
		{[]policy.Operation{policy.OpWorker}, "worker"},
		{[]policy.Operation{policy.OpWorker, policy.OpAdmin}, "worker or admin"},
		{anyAction, "worker, client-write, client-read or admin"},
	}
	for _, tc := range tests {
		if got := joinActions(tc.in); got != tc.want {
			t.Errorf("joinActions(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestDecisionCache(t *testing.T) {
	t.Parallel()
	store, path := policyStore(t, authPolicy)
	var c decisionCache
	ctx := context.Background()
	ops := []policy.Operation{policy.OpAdmin}
	ops1 := store.Current().Access
	if _, ok := c.decide(ctx, ops1, policy.Identity{Subject: "olga", Groups: []string{"ops"}}, "hr", "m", ops); !ok {
		t.Fatal("ops admin denied")
	}
	// Identities differing only in how their groups split must not share an entry.
	if _, ok := c.decide(ctx, ops1, policy.Identity{Subject: "olga", Groups: []string{"o", "ps"}}, "hr", "m", ops); ok {
		t.Error("groups [o ps] allowed as [ops]")
	}
	// An empty list and a list of one empty string join to the same text; their keys must still differ.
	empty, _ := keyOf(policy.Identity{Subject: "x", SANs: nil}, "hr", "m")
	oneEmpty, _ := keyOf(policy.Identity{Subject: "x", SANs: []string{""}}, "hr", "m")
	if empty == oneEmpty {
		t.Error("SANs nil and [\"\"] share a cache key")
	}
	if _, ok := keyOf(policy.Identity{Groups: []string{"a\x00b"}}, "hr", "m"); ok {
		t.Error("a group holding the separator is cacheable")
	}
	if err := os.WriteFile(path, []byte(strings.Replace(authPolicy, "groups: [ops]", "groups: [nobody]", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.decide(ctx, store.Current().Access, policy.Identity{Subject: "olga", Groups: []string{"ops"}}, "hr", "m", ops); ok {
		t.Error("a cached decision survived the reload")
	}
}

// TestAuthUnauthenticatedAuditLimited: a flood of unauthenticated calls from one address is refused and counted in
// full, but audited only up to the per-IP burst.
func TestAuthUnauthenticatedAuditLimited(t *testing.T) {
	t.Parallel()
	e := startAuthEnv(t, nil)
	wf := workflowservice.NewWorkflowServiceClient(e.dial(t, nil))
	const calls = unauthAuditBurst + 10
	for range calls {
		_, err := wf.GetSystemInfo(context.Background(), &workflowservice.GetSystemInfoRequest{})
		wantCode(t, err, codes.Unauthenticated)
	}
	if n := e.obs.count(KindUnauthenticated); n != calls {
		t.Errorf("counted %d, want %d", n, calls)
	}
	// The refill (1/s) may add a record or two on a slow machine, never the whole flood.
	if n := len(auditRecords(t, e.audit)); n < unauthAuditBurst || n > unauthAuditBurst+3 {
		t.Errorf("audited %d unauthenticated calls, want about the burst of %d", n, unauthAuditBurst)
	}
}

func TestAuthStreamDenied(t *testing.T) {
	t.Parallel()
	store, _ := policyStore(t, authPolicy)
	s := &Server{cfg: Config{Policy: store, Auth: &AuthConfig{Tokens: newFakeVerifier(nil)}}, log: slog.New(slog.DiscardHandler)}
	called := false
	handler := func(any, grpc.ServerStream) error { called = true; return nil }
	err := s.authStream(nil, nil, &grpc.StreamServerInfo{FullMethod: workflowServicePath + "FutureStream"}, handler)
	wantCode(t, err, codes.PermissionDenied)
	if called {
		t.Error("a WorkflowService stream was handled")
	}
	if err := s.authStream(nil, nil, &grpc.StreamServerInfo{FullMethod: "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"}, handler); err != nil || !called {
		t.Errorf("reflection: %v, handled %v", err, called)
	}
}

// TestAuthCrossNamespaceCommands: a worker's workflow task that starts a child, signals or cancels in another
// namespace acts there as a client: without client-write on that namespace the completion is refused.
func TestAuthCrossNamespaceCommands(t *testing.T) {
	t.Parallel()
	e := startAuthEnv(t, nil)
	wf := workflowservice.NewWorkflowServiceClient(e.dial(t, e.pki.Client(t, "payments-worker", "")))
	for name, cmd := range map[string]*commandpb.Command{
		"child":  {Attributes: &commandpb.Command_StartChildWorkflowExecutionCommandAttributes{StartChildWorkflowExecutionCommandAttributes: &commandpb.StartChildWorkflowExecutionCommandAttributes{Namespace: "hr"}}},
		"signal": {Attributes: &commandpb.Command_SignalExternalWorkflowExecutionCommandAttributes{SignalExternalWorkflowExecutionCommandAttributes: &commandpb.SignalExternalWorkflowExecutionCommandAttributes{Namespace: "hr"}}},
		"cancel": {Attributes: &commandpb.Command_RequestCancelExternalWorkflowExecutionCommandAttributes{RequestCancelExternalWorkflowExecutionCommandAttributes: &commandpb.RequestCancelExternalWorkflowExecutionCommandAttributes{Namespace: "hr"}}},
	} {
		_, err := wf.RespondWorkflowTaskCompleted(context.Background(), &workflowservice.RespondWorkflowTaskCompletedRequest{
			Namespace: "payments", Commands: []*commandpb.Command{cmd},
		})
		st := wantCode(t, err, codes.PermissionDenied)
		if !strings.Contains(st.Message(), `namespace "hr"`) || !strings.Contains(st.Message(), "client-write") {
			t.Errorf("%s: %q", name, st.Message())
		}
	}
	// The same namespace needs nothing more than worker.
	_, err := wf.RespondWorkflowTaskCompleted(context.Background(), &workflowservice.RespondWorkflowTaskCompletedRequest{
		Namespace: "payments", Commands: []*commandpb.Command{{Attributes: &commandpb.Command_StartChildWorkflowExecutionCommandAttributes{
			StartChildWorkflowExecutionCommandAttributes: &commandpb.StartChildWorkflowExecutionCommandAttributes{Namespace: "payments"}}}},
	})
	if status.Code(err) == codes.PermissionDenied {
		t.Errorf("a child in the worker's own namespace: %v", err)
	}
}
