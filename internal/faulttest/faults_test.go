package faulttest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindfold-dev/blindfold/internal/gateway"
	"github.com/blindfold-dev/blindfold/internal/testenv"
	"github.com/blindfold-dev/blindfold/internal/testenv/gatewayenv"
	"github.com/blindfold-dev/blindfold/internal/vaultdevproc"
	"github.com/blindfold-dev/blindfold/keys/vault"
)

// The slow-upstream test comes first: its goroutine-leak check is cleanest before other tests' clients wind down.

// TestSlowUpstream puts a middlebox that delays every response between the proxy and the frontend. Callers' deadlines
// must hold (DeadlineExceeded, on time), the proxy must pass the deadline upstream and abandon the upstream call, and
// after Shutdown no goroutine of the proxy may remain.
func TestSlowUpstream(t *testing.T) {
	upstream := sharedUpstream(t)
	ignore := goleak.IgnoreCurrent()

	mb, err := newMiddlebox(upstream)
	if err != nil {
		t.Fatal(err)
	}
	g, err := startGateway(t.Context(), mb.Addr, t.TempDir(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conn := testenv.DialInsecure(t, g.Addr())
	wc := workflowservice.NewWorkflowServiceClient(conn)
	ctx := t.Context()

	// No delay: calls work through the middlebox.
	if _, err := wc.DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: "default"}); err != nil {
		t.Fatalf("describe namespace without delay: %v", err)
	}

	mb.delay.Store(int64(3 * time.Second))
	const deadline = 400 * time.Millisecond
	var wg sync.WaitGroup
	var late atomic.Int64
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, deadline)
			defer cancel()
			t0 := time.Now()
			var err error
			if i%2 == 0 {
				_, err = wc.DescribeNamespace(cctx, &workflowservice.DescribeNamespaceRequest{Namespace: "default"})
			} else { // a call whose payload the proxy encrypts first
				_, err = wc.SignalWorkflowExecution(cctx, &workflowservice.SignalWorkflowExecutionRequest{
					Namespace: "default", WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: "faulttest-slow-none"},
					SignalName: "s", Input: &commonpb.Payloads{Payloads: []*commonpb.Payload{{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte(`"x"`)}}},
				})
			}
			if d := time.Since(t0); d > deadline+time.Second {
				late.Add(1)
			}
			if status.Code(err) != codes.DeadlineExceeded {
				errs <- fmt.Errorf("call %d: got %v, want DeadlineExceeded", i, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := late.Load(); n > 0 {
		t.Errorf("%d calls returned more than 1 s after their %s deadline", n, deadline)
	}
	// The proxy passed each deadline on and abandoned its upstream call when it expired. On a loaded machine a call can
	// expire before the proxy forwards it, so not all 20 need arrive; some must, or the test proved nothing.
	if got := mb.calls.Load(); got == 0 {
		t.Error("no call reached the middlebox")
	} else {
		t.Logf("%d of 20 calls reached the middlebox before their deadline", got)
	}
	if n := mb.withoutDeadline.Load(); n > 0 {
		t.Errorf("%d upstream calls carried no deadline", n)
	}
	if !testenv.Poll(3*time.Second, func() bool { return mb.inFlight.Load() == 0 }) {
		t.Errorf("upstream calls abandoned: not within %s", 3*time.Second)
	}
	if n := mb.lateDeadline.Load(); n > 0 {
		t.Errorf("%d upstream calls had a deadline later than the caller's", n)
	}

	// A deadline longer than the delay still succeeds.
	mb.delay.Store(int64(300 * time.Millisecond))
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err = wc.DescribeNamespace(cctx, &workflowservice.DescribeNamespaceRequest{Namespace: "default"})
	cancel()
	if err != nil {
		t.Errorf("call with a deadline beyond the delay: %v", err)
	}

	conn.Close()
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	if err := g.Stop(sctx); err != nil {
		t.Errorf("gateway stop: %v", err)
	}
	mb.Stop()
	goleak.VerifyNone(t, ignore)
}

// middlebox forwards every gRPC call to an upstream unchanged, then holds the response for delay.
type middlebox struct {
	*testenv.Forwarder
	delay           atomic.Int64 // time.Duration
	calls           atomic.Int64 // calls that were delayed
	inFlight        atomic.Int64
	withoutDeadline atomic.Int64
	lateDeadline    atomic.Int64
}

func newMiddlebox(upstream string) (*middlebox, error) {
	mb := &middlebox{}
	f, err := testenv.StartForwarder(upstream, mb.hold)
	if err != nil {
		return nil, err
	}
	mb.Forwarder = f
	return mb, nil
}

// hold counts a delayed call, forwards it and holds its response (or error) for delay.
func (mb *middlebox) hold(ctx context.Context, _ string, invoke func(context.Context) error) error {
	d := time.Duration(mb.delay.Load())
	if d > 0 {
		mb.calls.Add(1)
		mb.inFlight.Add(1)
		defer mb.inFlight.Add(-1)
		dl, ok := ctx.Deadline()
		if !ok {
			mb.withoutDeadline.Add(1)
		} else if time.Until(dl) > 2*time.Second {
			// Callers use 400 ms; anything much longer means the proxy did not pass theirs on.
			mb.lateDeadline.Add(1)
		}
	}
	err := invoke(ctx)
	// Errors are held back as long as responses.
	if d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
	return err
}

// TestProxyKilledMidRun kills the proxy process (SIGKILL) a third of the way through a run of workflows whose starter
// and worker both go through it, and starts it again on the same address. Every workflow must complete, exactly once.
func TestProxyKilledMidRun(t *testing.T) {
	upstream := sharedUpstream(t)
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	pc, err := startChild("proxy", childConfig{Upstream: upstream, Listen: listen, KeyDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	t.Cleanup(func() { mu.Lock(); defer mu.Unlock(); pc.stop() })

	c, queue, prefix := runThrough(t, listen, "proxykill")
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	const n = 45
	errs, retried := campaign(ctx, c, queue, prefix, n, true, func() {
		mu.Lock()
		defer mu.Unlock()
		pc.kill()
		t.Logf("proxy killed")
		time.Sleep(time.Second)
		npc, err := pc.restart()
		if err != nil {
			t.Errorf("restart proxy: %v", err)
			return
		}
		pc = npc
		t.Logf("proxy restarted on %s", pc.addr)
	})
	for _, err := range errs {
		t.Error(err)
	}
	t.Logf("%d calls retried across the restart", retried)
	checkExactlyOnce(t, ctx, rawClient(t, upstream), prefix, n)
}

// TestUpstreamRestartedMidRun stops the Temporal server a third of the way through a run through the proxy, and starts
// it again on the same data directory and ports. Every workflow must complete, exactly once.
func TestUpstreamRestartedMidRun(t *testing.T) {
	cfg := upstreamConfig(t, t.TempDir())
	up, err := startChild("upstream", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	t.Cleanup(func() { mu.Lock(); defer mu.Unlock(); up.stop() })

	g := gatewayenv.Start(t, gateway.Config{Keys: gatewayenv.LocalKeys(t.TempDir()), Proxy: gateway.ProxyConfig{Upstream: up.addr}})
	c, queue, prefix := runThrough(t, g.Addr(), "upstream")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	const n = 45
	errs, retried := campaign(ctx, c, queue, prefix, n, true, func() {
		mu.Lock()
		defer mu.Unlock()
		t0 := time.Now()
		up.stop()
		t.Logf("upstream stopped (%s)", time.Since(t0).Round(time.Millisecond))
		nup, err := up.restart()
		if err != nil {
			t.Errorf("restart upstream: %v", err)
			return
		}
		up = nup
		t.Logf("upstream back after %s", time.Since(t0).Round(time.Millisecond))
	})
	for _, err := range errs {
		t.Error(err)
	}
	t.Logf("%d calls retried across the restart", retried)
	mu.Lock()
	upAddr := up.addr
	mu.Unlock()
	checkExactlyOnce(t, ctx, rawClient(t, upAddr), prefix, n)
}

// TestVaultStoppedMidRun wraps keys with Vault Transit (vaultdev with file storage) and stops Vault a third of the way
// through a run: cached DEKs keep every workflow working with zero failures and zero KEK calls, while a scope that was
// never loaded fails closed.
func TestVaultStoppedMidRun(t *testing.T) {
	if os.Getenv(vaultdevproc.EnvBinary) == "" {
		if _, err := vaultdevproc.ModuleDir(); err != nil {
			t.Skipf("no vaultdev: %v", err)
		}
	}
	upstream := sharedUpstream(t)
	vp := vaultdevproc.Start(t, vaultdevproc.Options{StorageDir: t.TempDir()})
	kc := gatewayenv.LocalKeys(t.TempDir())
	kc.KEK, kc.CacheTTL, kc.CreateMasterKey = gateway.KEKVault, 10*time.Minute, false
	kc.Vault = vault.Config{Address: vp.Addr(), Mount: vp.TransitMount(), Auth: vault.Auth{Token: vp.Token()}, CreateKeys: true}
	g := gatewayenv.Start(t, gateway.Config{Keys: kc, Proxy: gateway.ProxyConfig{Upstream: upstream}})
	km, addr := g.Keys().Manager, g.Addr()
	c, queue, prefix := runThrough(t, addr, "vault")
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()

	const n = 45
	var kekCallsAtStop uint64
	errs, _ := campaign(ctx, c, queue, prefix, n, false, func() {
		kekCallsAtStop = km.Stats().KEKCalls
		if err := vp.Stop(); err != nil {
			t.Errorf("stop vault: %v", err)
		}
		t.Logf("vault stopped after %d KEK calls", kekCallsAtStop)
	})
	for _, err := range errs {
		t.Error(err)
	}
	if vp.Running() {
		t.Fatal("vault still running")
	}
	if got := km.Stats().KEKCalls; got != kekCallsAtStop {
		t.Errorf("KEK calls went from %d to %d while Vault was down", kekCallsAtStop, got)
	}
	checkExactlyOnce(t, ctx, rawClient(t, upstream), prefix, n)

	// A namespace whose scope was never loaded needs Vault: the proxy must refuse, not forward plaintext.
	wc := workflowservice.NewWorkflowServiceClient(testenv.DialInsecure(t, addr))
	cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
	defer ccancel()
	_, err := wc.SignalWorkflowExecution(cctx, &workflowservice.SignalWorkflowExecutionRequest{
		Namespace: "faulttest-never-loaded", WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: "x"}, SignalName: "s",
		Input: &commonpb.Payloads{Payloads: []*commonpb.Payload{{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte(`"x"`)}}},
	})
	// Fail closed: the proxy itself refuses (its errors start with "blindfold:"); the upstream, which does not know the
	// namespace, would have said NotFound.
	st := status.Convert(err)
	switch {
	case err == nil:
		t.Fatal("new scope with Vault down: call succeeded")
	case !strings.HasPrefix(st.Message(), "blindfold:"):
		t.Errorf("new scope with Vault down: %v, want the proxy's own refusal", err)
	case st.Code() != codes.Unavailable:
		// The KEK did not answer: retryable, so SDKs try again once Vault is back.
		t.Errorf("new scope with Vault down: refused with %s, want Unavailable: %s", st.Code(), st.Message())
	}
}

func rawClient(t *testing.T, addr string) workflowservice.WorkflowServiceClient {
	return workflowservice.NewWorkflowServiceClient(testenv.DialInsecure(t, addr))
}
