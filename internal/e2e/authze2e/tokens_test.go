package authze2e

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindfold-dev/blindfold/internal/gateway"
	"github.com/blindfold-dev/blindfold/internal/testenv"
)

// TestBadTokens presents erin's identity (subject "erin", group "hr-clients", allowed to read and decode HR) in
// tokens that are wrong one way each, and a valid token of someone the policy does not know, to both doors: the
// proxy must answer Unauthenticated for a token it cannot trust and PermissionDenied for a trusted identity without
// the namespace, the codec endpoint 401 and 403. A bad token next to a good client certificate is still refused: the
// token is what the caller claims to be, and the proxy does not fall back to the certificate.
func TestBadTokens(t *testing.T) {
	t.Parallel()
	skipShort(t)
	pki, iss := testenv.NewPKI(t), newIssuer(t)
	e := newEnv(t, pki, iss, matrixPolicy)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()

	other := newIssuer(t) // a real issuer, just not the one the gateway trusts
	unknownKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	erinGroups := []string{"hr-clients"}
	hrWorkerCert := pki.Client(t, "hr-worker", hrWorkerID)
	tests := []struct {
		name  string
		who   caller
		grpc  codes.Code // of a client-read call on hr; codes.NotFound: admitted (the workflow does not exist)
		codec int        // of decoding an hr payload
	}{
		{"valid (control)", caller{token: iss.token("erin", erinGroups, nil)}, codes.NotFound, http.StatusOK},
		{"expired", caller{token: iss.token("erin", erinGroups, map[string]any{"exp": time.Now().Add(-time.Minute).Unix()})},
			codes.Unauthenticated, http.StatusUnauthorized},
		{"not yet valid", caller{token: iss.token("erin", erinGroups, map[string]any{"nbf": time.Now().Add(time.Hour).Unix()})},
			codes.Unauthenticated, http.StatusUnauthorized},
		{"wrong audience", caller{token: iss.token("erin", erinGroups, map[string]any{"aud": "someone-else"})},
			codes.Unauthenticated, http.StatusUnauthorized},
		{"wrong issuer", caller{token: other.token("erin", erinGroups, nil)}, codes.Unauthenticated, http.StatusUnauthorized},
		{"alg none", caller{token: unsignedToken(iss.claims("erin", erinGroups, nil))}, codes.Unauthenticated, http.StatusUnauthorized},
		{"unknown key", caller{token: signWith(unknownKey, iss.claims("erin", erinGroups, nil))}, codes.Unauthenticated, http.StatusUnauthorized},
		{"not a JWT", caller{token: "opaque-garbage"}, codes.Unauthenticated, http.StatusUnauthorized},
		{"no subject", caller{token: iss.token("erin", erinGroups, map[string]any{"sub": nil})}, codes.Unauthenticated, http.StatusUnauthorized},
		{"valid, without the namespace", caller{token: iss.token("frank", []string{"payments-clients"}, nil)},
			codes.PermissionDenied, http.StatusForbidden},
		{"expired token with a valid hr worker certificate", caller{cert: hrWorkerCert,
			token: iss.token("erin", erinGroups, map[string]any{"exp": time.Now().Add(-time.Minute).Unix()})},
			codes.Unauthenticated, http.StatusUnauthorized},
	}
	t.Cleanup(func() {
		// Tokens are secrets: neither the gateway's log (debug level) nor the audit log may hold one, valid or not.
		audit, _ := os.ReadFile(e.auditPath)
		for _, tc := range tests {
			if strings.Contains(e.log.String(), tc.who.token) {
				t.Errorf("the gateway's log holds the %q token", tc.name)
			}
			if strings.Contains(string(audit), tc.who.token) {
				t.Errorf("the audit log holds the %q token", tc.name)
			}
		}
	})
	for _, tc := range tests {
		tc.who.name = tc.name
		t.Run(tc.name, func(t *testing.T) {
			conn := e.conn(t, tc.who)
			cctx, cancel := context.WithTimeout(withAuth(ctx, tc.who), callTimeout)
			defer cancel()
			err := actions[2].call(cctx, conn, nsHR) // client-read
			if got := status.Code(err); got != tc.grpc {
				t.Errorf("gRPC DescribeWorkflowExecution on hr: got %s, want %s", describeCode(err), tc.grpc)
			}
			if tc.grpc == codes.Unauthenticated && strings.Contains(status.Convert(err).Message(), "erin") {
				// An unverified token's claims are the caller's say-so: the proxy must not present them as an identity.
				t.Errorf("gRPC refusal names the unverified subject: %s", describeCode(err))
			}
			if strings.Contains(status.Convert(err).Message(), tc.who.token) {
				t.Errorf("the gRPC refusal repeats the token: %s", describeCode(err))
			}
			code, body, _ := e.codecCall(t, tc.who, nsHR, nsHR, "decode", "salary: 100")
			if code != tc.codec {
				t.Errorf("codec POST /hr/decode: status %d (%s), want %d", code, strings.TrimSpace(body), tc.codec)
			}
			if strings.Contains(body, tc.who.token) {
				t.Errorf("the codec endpoint's answer repeats the token: %s", body)
			}
		})
	}
}

// ciBotToken is a static token (a service account without an OIDC issuer), long enough for codecserver.StaticTokens.
const ciBotToken = "ci-bot-static-token-5f0c2a9e7b314d6a8e21"

// TestTokensCombine configures both kinds of token on both doors, OIDC and a static-token file, as a deployment with
// human users and a CI service account does: each kind is accepted on each door, and a token neither knows is
// refused by both.
func TestTokensCombine(t *testing.T) {
	t.Parallel()
	skipShort(t)
	pki, iss := testenv.NewPKI(t), newIssuer(t)
	static := filepath.Join(t.TempDir(), "tokens.yaml")
	testenv.WriteFileAtomic(t, static, "- token: "+ciBotToken+"\n  subject: ci-bot\n  groups: [hr-clients]\n")
	e := newEnvVia(t, pki, iss, matrixPolicy, nil, func(c *gateway.Config) {
		c.Proxy.Auth.StaticTokensFile = static
		c.CodecEndpoint.StaticTokensFile = static
	})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	tests := []struct {
		name  string
		token string
		grpc  codes.Code
		codec int
	}{
		{"OIDC token", iss.token("erin", []string{"hr-clients"}, nil), codes.NotFound, http.StatusOK},
		{"static token", ciBotToken, codes.NotFound, http.StatusOK},
		{"unknown opaque token", "ci-bot-static-token-00000000000000000000", codes.Unauthenticated, http.StatusUnauthorized},
		{"expired OIDC token", iss.token("erin", []string{"hr-clients"}, map[string]any{"exp": time.Now().Add(-time.Minute).Unix()}),
			codes.Unauthenticated, http.StatusUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			who := caller{name: tc.name, token: tc.token}
			cctx, cancel := context.WithTimeout(withAuth(ctx, who), callTimeout)
			defer cancel()
			err := actions[2].call(cctx, e.conn(t, who), nsHR) // client-read
			if got := status.Code(err); got != tc.grpc {
				t.Errorf("gRPC DescribeWorkflowExecution on hr: got %s, want %s", describeCode(err), tc.grpc)
			}
			code, body, _ := e.codecCall(t, who, nsHR, nsHR, "decode", "salary: 100")
			if code != tc.codec {
				t.Errorf("codec POST /hr/decode: status %d (%s), want %d", code, strings.TrimSpace(body), tc.codec)
			}
		})
	}
}

// TestCodecIPRateLimit floods the codec endpoint from one address with forged tokens: past the per-IP burst every
// request is refused with 429 before any token is looked at, a valid one included, so forged tokens cannot buy
// unlimited signature checks.
func TestCodecIPRateLimit(t *testing.T) {
	t.Parallel()
	skipShort(t)
	pki, iss := testenv.NewPKI(t), newIssuer(t)
	const burst = 3
	e := newEnvVia(t, pki, iss, matrixPolicy, nil, func(c *gateway.Config) {
		c.CodecEndpoint.IPRateLimit, c.CodecEndpoint.IPRateBurst = 0.001, burst
	})
	forged := caller{name: "forged", token: unsignedToken(iss.claims("erin", []string{"hr-clients"}, nil))}
	for i := range burst {
		if code, body, _ := e.codecCall(t, forged, nsHR, nsHR, "decode", "salary: 100"); code != http.StatusUnauthorized {
			t.Fatalf("forged request %d (within the burst): status %d (%s), want %d", i, code, strings.TrimSpace(body), http.StatusUnauthorized)
		}
	}
	for _, who := range []caller{forged, {name: "erin", token: iss.token("erin", []string{"hr-clients"}, nil)}} {
		if code, body, _ := e.codecCall(t, who, nsHR, nsHR, "decode", "salary: 100"); code != http.StatusTooManyRequests {
			t.Errorf("%s's request past the per-IP burst: status %d (%s), want %d", who.name, code, strings.TrimSpace(body), http.StatusTooManyRequests)
		}
	}
}

// TestTokenExpiresWhileCached uses a token that expires two seconds after it is first accepted: both doors cache
// verified tokens, and the cache must not outlive the token's "exp".
func TestTokenExpiresWhileCached(t *testing.T) {
	t.Parallel()
	skipShort(t)
	pki, iss := testenv.NewPKI(t), newIssuer(t)
	e := newEnv(t, pki, iss, matrixPolicy)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	erin := caller{name: "erin", token: iss.token("erin", []string{"hr-clients"}, map[string]any{"exp": time.Now().Add(2 * time.Second).Unix()})}
	conn := e.conn(t, erin)
	read := clientReadOfHR(ctx, erin, conn)
	if err := read(); isAuthError(err) {
		t.Fatalf("erin's read of hr with a fresh token: %s", describeCode(err))
	}
	if code, body, _ := e.codecCall(t, erin, nsHR, nsHR, "decode", "salary: 100"); code != http.StatusOK {
		t.Fatalf("erin's decode of hr with a fresh token: status %d (%s)", code, strings.TrimSpace(body))
	}
	var last error
	if !testenv.Poll(10*time.Second, func() bool { last = read(); return status.Code(last) == codes.Unauthenticated }) {
		t.Fatalf("erin's read of hr after the token expired: %s, want Unauthenticated within 10s", describeCode(last))
	}
	if code, body, _ := e.codecCall(t, erin, nsHR, nsHR, "decode", "salary: 100"); code != http.StatusUnauthorized {
		t.Errorf("erin's decode of hr after the token expired: status %d (%s), want %d", code, strings.TrimSpace(body), http.StatusUnauthorized)
	}
}
