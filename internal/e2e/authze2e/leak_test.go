package authze2e

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/blindfold-dev/blindfold/internal/devstack/devstacktest"
	"github.com/blindfold-dev/blindfold/internal/testenv"
)

// headerRelay is the backend's front door as the tests see it: it forwards every call to the frontend and keeps the
// request headers the backend received, by method.
type headerRelay struct {
	addr string
	mu   sync.Mutex
	seen []metadata.MD
}

func (r *headerRelay) FrontendAddr() string { return r.addr }

func startHeaderRelay(t testing.TB, upstream string) *headerRelay {
	t.Helper()
	r := &headerRelay{}
	f, err := testenv.StartForwarder(upstream, func(ctx context.Context, _ string, invoke func(context.Context) error) error {
		md, _ := metadata.FromOutgoingContext(ctx)
		r.mu.Lock()
		r.seen = append(r.seen, md.Copy())
		r.mu.Unlock()
		return invoke(ctx)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Stop)
	r.addr = f.Addr
	return r
}

// carrying returns the headers of the recorded calls that contain s in any value.
func (r *headerRelay) carrying(s string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, md := range r.seen {
		for k, vs := range md {
			if slices.ContainsFunc(vs, func(v string) bool { return strings.Contains(v, s) }) && !slices.Contains(out, k) {
				out = append(out, k)
			}
		}
	}
	return out
}

func (r *headerRelay) calls() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

// TestTokenStaysAtTheProxy checks that a caller's bearer token, once the proxy has verified it, goes no further: the
// backend is hostile, and a token the proxy accepts is one the codec endpoint accepts too (same issuer, same
// audience), so a backend that received erin's token could replay it and decode the HR namespace as erin.
func TestTokenStaysAtTheProxy(t *testing.T) {
	t.Parallel()
	skipShort(t)
	pki, iss := testenv.NewPKI(t), newIssuer(t)
	relay := startHeaderRelay(t, devstacktest.Shared(t).FrontendAddr())
	e := newEnvVia(t, pki, iss, matrixPolicy, relay)
	erin := caller{name: "erin", token: iss.token("erin", []string{"hr-clients"}, nil)}

	ctx, cancel := context.WithTimeout(withAuth(context.Background(), erin), callTimeout)
	defer cancel()
	err := actions[2].call(ctx, e.conn(t, erin), nsHR) // client-read: admitted, and forwarded to the backend
	if status.Code(err) != codes.NotFound {
		t.Fatalf("erin's DescribeWorkflowExecution on hr: %s, want NotFound from the backend", describeCode(err))
	}
	if relay.calls() == 0 {
		t.Fatal("the relay recorded no call: the gateway does not go through it")
	}
	if hdrs := relay.carrying(erin.token); len(hdrs) > 0 {
		code, _, _ := e.codecCall(t, erin, nsHR, nsHR, "decode", "salary: 100")
		t.Errorf("the backend received erin's bearer token (in header %v); replayed at the codec endpoint it decodes hr with status %d", hdrs, code)
	}
}
