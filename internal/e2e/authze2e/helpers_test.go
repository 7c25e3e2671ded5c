package authze2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc/oidctest"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/blindfold-dev/blindfold/internal/devstack"
	"github.com/blindfold-dev/blindfold/internal/devstack/devstacktest"
	"github.com/blindfold-dev/blindfold/internal/gateway"
	"github.com/blindfold-dev/blindfold/internal/testenv"
	"github.com/blindfold-dev/blindfold/internal/testenv/gatewayenv"
	"github.com/blindfold-dev/blindfold/policy"
	"github.com/blindfold-dev/blindfold/proxy"
	"github.com/blindfold-dev/blindfold/proxy/codecserver"
)

// The two tenants of the shared embedded server: the policy keeps their workers and clients apart.
const (
	nsPayments = "payments"
	nsHR       = "hr"
)

// serverLog receives the shared embedded server's log: the frontend logs every raw poll with a deadline shorter than
// its minimum long poll (the tests' way to see a poll admitted at once), which would drown the test output.
var serverLog testenv.SyncBuffer

func TestMain(m *testing.M) {
	devstacktest.SetSharedOptions(devstacktest.WithNamespaces(nsPayments, nsHR),
		devstacktest.WithConfig(func(c *devstack.Config) { c.LogOutput = &serverLog }))
	devstacktest.Main(m)
}

// Every test is bounded by testTimeout; a single call by callTimeout.
const (
	testTimeout = 60 * time.Second
	callTimeout = 5 * time.Second
	// pollDeadline is the deadline of a raw poll that is expected to be admitted: shorter than the frontend's
	// minimum long poll, so an admitted poll comes back at once with the frontend's complaint, not after a minute.
	pollDeadline = time.Second
	// audience is what the gateway's OIDC verifiers accept in "aud".
	audience = "blindfold"
)

// The SPIFFE IDs of the workers' client certificates.
const (
	paymentsWorkerID = "spiffe://test/ns/payments/sa/worker"
	hrWorkerID       = "spiffe://test/ns/hr/sa/worker"
)

// --- OIDC issuer -------------------------------------------------------------------------------------------------

// issuer is a real OIDC issuer in the test process (discovery and JWKS over HTTP), signing with one RSA key as "k1".
type issuer struct {
	url string
	key *rsa.PrivateKey
}

func newIssuer(t testing.TB) *issuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	srv := &oidctest.Server{PublicKeys: []oidctest.PublicKey{{PublicKey: key.Public(), KeyID: "k1", Algorithm: "RS256"}}}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	srv.SetIssuer(hs.URL)
	return &issuer{url: hs.URL, key: key}
}

// claims are a token's claims for sub with groups, valid for an hour for audience; extra overrides them (a nil
// value deletes the claim).
func (i *issuer) claims(sub string, groups []string, extra map[string]any) map[string]any {
	c := map[string]any{
		"iss": i.url, "sub": sub, "aud": audience, "groups": groups,
		"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(),
	}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// token signs the claims of sub with groups (extra as in claims).
func (i *issuer) token(sub string, groups []string, extra map[string]any) string {
	return signWith(i.key, i.claims(sub, groups, extra))
}

func signWith(key *rsa.PrivateKey, claims map[string]any) string {
	b, _ := json.Marshal(claims)
	return oidctest.SignIDToken(key, "k1", "RS256", string(b))
}

// unsignedToken is a JWT with "alg": "none" and an empty signature: the oldest trick against a verifier that trusts
// the header.
func unsignedToken(claims map[string]any) string {
	enc := base64.RawURLEncoding
	h, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT", "kid": "k1"})
	c, _ := json.Marshal(claims)
	return enc.EncodeToString(h) + "." + enc.EncodeToString(c) + "."
}

func (i *issuer) oidcConfig() *codecserver.OIDCConfig {
	return &codecserver.OIDCConfig{Issuer: i.url, Audiences: []string{audience}}
}

// --- callers -----------------------------------------------------------------------------------------------------

// caller is who calls the gateway: a client certificate, a bearer token, both or neither.
type caller struct {
	name  string
	cert  *testenv.Cert
	token string
}

// --- the environment ---------------------------------------------------------------------------------------------

// env is a gateway with TLS (a server certificate from pki, client certificates from pki verified if given), identity
// from client certificates and from iss's tokens on the proxy, an OIDC codec endpoint, and policyPath as the policy
// of both doors.
type env struct {
	stack      *devstack.Stack
	pki        *testenv.PKI
	iss        *issuer
	policyPath string
	auditPath  string
	// log is the gateway's log, at debug level (the level that logs every call).
	log  *testenv.SyncBuffer
	gw   *gateway.Gateway
	errs *errorCounter
}

// newEnv starts the gateway of an env in front of the shared stack's frontend, with policyYAML as its policy file.
func newEnv(t testing.TB, pki *testenv.PKI, iss *issuer, policyYAML string) *env {
	t.Helper()
	return newEnvVia(t, pki, iss, policyYAML, nil)
}

// auditRecords reads the records of the audit log both doors share (the codec endpoint's); the gateway writes each
// before it answers, so every refusal already answered is there.
func (e *env) auditRecords(t testing.TB) []policy.Record {
	t.Helper()
	b, err := os.ReadFile(e.auditPath)
	if err != nil {
		t.Fatal(err)
	}
	var out []policy.Record
	for line := range strings.Lines(string(b)) {
		var r policy.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("audit log %s: %v", e.auditPath, err)
		}
		out = append(out, r)
	}
	return out
}

// newEnvVia is newEnv with front (if not nil) as the gateway's upstream instead of the frontend itself; opts adjust
// the gateway's Config last.
func newEnvVia(t testing.TB, pki *testenv.PKI, iss *issuer, policyYAML string, front gatewayenv.Frontend, opts ...func(*gateway.Config)) *env {
	t.Helper()
	skipShort(t)
	dir := t.TempDir()
	e := &env{stack: devstacktest.Shared(t), pki: pki, iss: iss, policyPath: filepath.Join(dir, "policy.yaml"),
		auditPath: filepath.Join(dir, "audit.jsonl"), log: &testenv.SyncBuffer{}, errs: &errorCounter{}}
	if front == nil {
		front = e.stack
	}
	testenv.WriteFileAtomic(t, e.policyPath, policyYAML)
	serverTLS := pki.ServerTLS(pki.Server(t, "blindfold-gateway"), false)
	// Certificates are verified when given, not required: the OIDC callers come with a token and no certificate.
	serverTLS.ClientCAs, serverTLS.ClientAuth = pki.Pool, tls.VerifyClientCertIfGiven
	e.gw = gatewayenv.InFront(t, front, func(c *gateway.Config) {
		c.PolicyFile = e.policyPath
		c.Logger = slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
		c.Proxy.TLS = serverTLS
		c.Proxy.Auth = &gateway.ProxyAuthConfig{ClientCerts: true, OIDC: iss.oidcConfig()}
		c.Proxy.Observer = e.errs
		c.CodecEndpoint = &gateway.CodecEndpointConfig{
			Listen: "127.0.0.1:0", PolicyFile: e.policyPath, AuditLog: e.auditPath,
			OIDC: iss.oidcConfig(),
			// The bad-token tests fail authentication on purpose, many times from one address.
			AuthFailureRate: 1000, AuthFailureBurst: 1000,
		}
		for _, o := range opts {
			o(c)
		}
	})
	return e
}

// conn dials the gateway as c over TLS (presenting c's certificate, if any); the token goes with each call (withAuth).
func (e *env) conn(t testing.TB, c caller) *grpc.ClientConn {
	t.Helper()
	var tc *tls.Config
	if c.cert != nil {
		tc = e.pki.ClientTLS(c.cert)
	} else {
		tc = e.pki.ClientTLS(nil)
	}
	conn, err := grpc.NewClient(e.gw.Addr(), grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// withAuth adds c's bearer token to the outgoing metadata of ctx.
func withAuth(ctx context.Context, c caller) context.Context {
	if c.token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.token)
}

// sdkClient dials the gateway with the Go SDK as c in namespace: the client certificate in the TLS options, the token
// as the SDK's API-key credentials (an "authorization: Bearer" header on every call).
func (e *env) sdkClient(t testing.TB, c caller, namespace string) (client.Client, error) {
	t.Helper()
	opts := client.Options{
		HostPort: e.gw.Addr(), Namespace: namespace, Logger: testenv.DiscardSDKLogger(),
		ConnectionOptions: client.ConnectionOptions{TLS: e.pki.ClientTLS(c.cert)},
	}
	if c.token != "" {
		opts.Credentials = client.NewAPIKeyStaticCredentials(c.token)
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	cl, err := client.DialContext(ctx, opts)
	if err != nil {
		return nil, err
	}
	t.Cleanup(cl.Close)
	return cl, nil
}

// mustSDKClient is sdkClient, failing the test on an error.
func (e *env) mustSDKClient(t testing.TB, c caller, namespace string) client.Client {
	t.Helper()
	cl, err := e.sdkClient(t, c, namespace)
	if err != nil {
		t.Fatalf("%s: dial the gateway with the SDK in %s: %v", c.name, namespace, err)
	}
	return cl
}

// codecCall posts one payload (plain, sealed for sealedFor when op is decode) to the codec endpoint's
// /{namespace}/{op} as c and returns the status, the body, and the plaintext read back (on a 200 decode).
func (e *env) codecCall(t testing.TB, c caller, sealedFor, namespace, op string, plain string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	p, err := converter.GetDefaultDataConverter().ToPayload(plain)
	if err != nil {
		t.Fatal(err)
	}
	ps := []*commonpb.Payload{p}
	if op == "decode" {
		if ps, err = e.gw.Codec().Encode(ctx, sealedFor, ps); err != nil {
			t.Fatalf("seal for %s: %v", sealedFor, err)
		}
	}
	return e.codecPost(t, c, namespace, op, ps)
}

// codecPost posts payloads to the codec endpoint's /{namespace}/{op} as c and returns the status, the body, and the
// first payload read back as a string (on a 200 decode).
func (e *env) codecPost(t testing.TB, c caller, namespace, op string, ps []*commonpb.Payload) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	body, err := protojson.Marshal(&commonpb.Payloads{Payloads: ps})
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.gw.CodecURL()+"/"+namespace+"/"+op, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("codec endpoint: %v", err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK || op != "decode" {
		return resp.StatusCode, string(rb), ""
	}
	var out commonpb.Payloads
	if err := protojson.Unmarshal(rb, &out); err != nil || len(out.Payloads) == 0 {
		return resp.StatusCode, string(rb), fmt.Sprintf("<unreadable response: %v>", err)
	}
	var s string
	if err := converter.GetDefaultDataConverter().FromPayload(out.Payloads[0], &s); err != nil {
		return resp.StatusCode, string(rb), fmt.Sprintf("<undecodable payload: %v>", err)
	}
	return resp.StatusCode, string(rb), s
}

// --- raw calls ---------------------------------------------------------------------------------------------------

// pollWorkflowTask is one raw worker call on namespace: a poll with pollDeadline, which an admitted caller sees fail
// at once for the short deadline (or time out), and a refused one sees refused.
func pollWorkflowTask(ctx context.Context, conn *grpc.ClientConn, namespace string) error {
	ctx, cancel := context.WithTimeout(ctx, pollDeadline)
	defer cancel()
	_, err := workflowservice.NewWorkflowServiceClient(conn).PollWorkflowTaskQueue(ctx, &workflowservice.PollWorkflowTaskQueueRequest{
		Namespace: namespace, TaskQueue: taskQueue(uniqueName("raw-poll")), Identity: "authze2e-raw",
	})
	return err
}

// isAuthError reports whether err is the proxy refusing the caller (rather than the frontend answering the call).
func isAuthError(err error) bool {
	c := status.Code(err)
	return c == codes.PermissionDenied || c == codes.Unauthenticated
}

// describeCode is how a failure reports an error: its code and message.
func describeCode(err error) string {
	if err == nil {
		return "OK"
	}
	s, _ := status.FromError(err)
	return fmt.Sprintf("%s: %s", s.Code(), s.Message())
}

// uniqueName returns a task queue or workflow id prefix no other test uses.
func uniqueName(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

// --- observer ----------------------------------------------------------------------------------------------------

// errorCounter is a proxy.Observer counting the proxy's own errors by namespace and kind.
type errorCounter struct {
	mu sync.Mutex
	n  map[string]int // "<namespace>/<kind>"
}

func (o *errorCounter) Encoded(string, int, int) {}
func (o *errorCounter) Decoded(string, int, int) {}
func (o *errorCounter) Error(namespace string, kind proxy.ErrorKind) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.n == nil {
		o.n = map[string]int{}
	}
	o.n[namespace+"/"+string(kind)]++
}

func (o *errorCounter) count(namespace string, kind proxy.ErrorKind) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n[namespace+"/"+string(kind)]
}

// skipShort skips a test that needs the embedded Temporal server under -short, before it builds anything.
func skipShort(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts the embedded Temporal server")
	}
}

// --- misc --------------------------------------------------------------------------------------------------------

// messageNames checks that a refusal names who was refused, where and for what, so an operator can fix the policy
// from the error alone.
func messageNames(err error, parts ...string) error {
	msg := status.Convert(err).Message()
	var missing []string
	for _, p := range parts {
		if !strings.Contains(msg, p) {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("the refusal %q does not name %q", msg, missing)
	}
	return nil
}

func taskQueue(name string) *taskqueuepb.TaskQueue {
	return &taskqueuepb.TaskQueue{Name: name, Kind: enumspb.TASK_QUEUE_KIND_NORMAL}
}

// clientReadOfHR returns a call that reads hr as who over conn (a client-read, each with its own short deadline).
func clientReadOfHR(ctx context.Context, who caller, conn *grpc.ClientConn) func() error {
	return func() error {
		cctx, cancel := context.WithTimeout(withAuth(ctx, who), callTimeout)
		defer cancel()
		return actions[2].call(cctx, conn, nsHR) // client-read
	}
}
