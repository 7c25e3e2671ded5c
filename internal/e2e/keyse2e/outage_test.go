package keyse2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindfold-dev/blindfold/internal/gateway"
	"github.com/blindfold-dev/blindfold/keys"
)

// runOne starts streamWF through c and waits for its result.
func runOne(ctx context.Context, c client.Client, taskQueue, id, in string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: taskQueue}, streamWF, in)
	if err != nil {
		return fmt.Errorf("start %s: %w", id, err)
	}
	var got string
	if err := run.Get(ctx, &got); err != nil {
		return fmt.Errorf("workflow %s: %w", id, err)
	}
	if got != wantStream(in) {
		return fmt.Errorf("workflow %s returned %q, want %q", id, got, wantStream(in))
	}
	return nil
}

// TestOutage takes the KEK down during a stream of workflows through the proxy.
//
// Phase 1 (cache TTL 30 s, refresh after 1 s in the background): an outage of a few seconds costs no failed workflow
// and no RPC failed by the proxy, although refreshes of the keyset fail meanwhile.
//
// Phase 2 (another Manager and proxy, TTL 2 s): the KEK stays down past the TTL; new RPCs fail closed with Unavailable
// and a message naming the KEK, and nothing of them reaches the frontend. When the KEK is back the same proxy recovers
// by itself.
//
// It runs for every KEK that can be taken down apart from the process, one after the other: Vault, AWS KMS and the plugin
// are processes it kills (SIGKILL) and starts again; the HSM is a SoftHSM2 token whose storage it takes away and gives
// back (pkcs11OutageRig: a real fault of the real library, which without keys/pkcs11's handling passed for a destroyed
// key, a shred). The local master key is in the process.
func TestOutage(t *testing.T) {
	forEachKEK(t, false, func(t *testing.T, p provider) {
		if p.outage != nil {
			p.setup = p.outage
		}
		e := setup(t, p)
		if e.kek.stop == nil {
			t.Skip("this KEK cannot be taken down apart from the process")
		}
		t.Cleanup(func() {
			if !e.kek.running() {
				_ = e.kek.restart()
			}
		})
		t.Run("within TTL", func(t *testing.T) { outageWithinTTL(t, e) })
		if !e.kek.running() {
			if err := e.kek.restart(); err != nil {
				t.Fatal(err)
			}
		}
		t.Run("past TTL", func(t *testing.T) { outagePastTTL(t, e) })
	})
}

func outageWithinTTL(t *testing.T, e env) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const ttl = 30 * time.Second
	// The timing is the test's; background refresh is what every gateway with a remote KEK gets.
	px := startProxy(t, e.stack.FrontendAddr(), e.kek.keys(t.TempDir(), func(kc *gateway.KeysConfig) {
		kc.CacheTTL, kc.RefreshAfter = ttl, time.Second
	}))
	km := px.km
	c := dial(t, px.addr)
	tq := unique("out1")
	stopWorker := startWorker(t, c, tq)
	if err := runOne(ctx, c, tq, tq+"-warm", marker+"-warm"); err != nil {
		t.Fatalf("warm-up: %v", err)
	}
	before := km.Stats()

	const starters = 3
	var (
		halt        atomic.Bool
		wg          sync.WaitGroup
		mu          sync.Mutex
		done        []string    // ids of completed workflows
		doneAt      []time.Time // their completion times
		failed      int
		firstFailed error
	)
	began := time.Now()
	for s := range starters {
		wg.Go(func() {
			for k := 0; k < 500 && !halt.Load() && ctx.Err() == nil; k++ {
				id := fmt.Sprintf("%s-s%d-%d", tq, s, k)
				err := runOne(ctx, c, tq, id, fmt.Sprintf("%s-s%d-%d", marker, s, k))
				mu.Lock()
				if err != nil {
					failed++
					if firstFailed == nil {
						firstFailed = err
					}
				} else {
					done, doneAt = append(done, id), append(doneAt, time.Now())
				}
				mu.Unlock()
			}
		})
	}
	time.Sleep(1500 * time.Millisecond)
	down := time.Now()
	if err := e.kek.stop(); err != nil {
		t.Errorf("stop the KEK: %v", err)
	}
	time.Sleep(3 * time.Second)
	if err := e.kek.restart(); err != nil {
		t.Fatalf("restart the KEK: %v", err)
	}
	up := time.Now()
	time.Sleep(1500 * time.Millisecond)
	halt.Store(true)
	wg.Wait()
	elapsed := time.Since(began)
	stopWorker()

	during := 0
	for _, at := range doneAt {
		if at.After(down) && at.Before(up) {
			during++
		}
	}
	after := km.Stats()
	proxyErrs, kinds := px.obs.errors()
	byCode := px.rpcs.snapshot()
	t.Logf("stream of %s with %d starters: %d workflows completed, %d failed; KEK down for %s, %d workflows completed meanwhile",
		elapsed.Round(time.Millisecond), starters, len(done), failed, up.Sub(down).Round(time.Millisecond), during)
	t.Logf("proxy: %d RPCs %v, %d failed by the proxy %s; %d payloads encoded, %d decoded",
		total(byCode), byCode, proxyErrs, kinds, px.obs.encoded.Load(), px.obs.decoded.Load())
	t.Logf("keys: %d KEK calls, %d refreshes of which %d failed, during the stream", after.KEKCalls-before.KEKCalls,
		after.Refreshes-before.Refreshes, after.RefreshFailures-before.RefreshFailures)
	if failed > 0 {
		t.Errorf("%d workflows failed during a KEK outage within the TTL; first: %v", failed, firstFailed)
	}
	if proxyErrs > 0 || keyFailures(byCode) > 0 {
		t.Errorf("the proxy failed RPCs during a KEK outage within the TTL: %s, codes %v", kinds, byCode)
	}
	if during == 0 {
		t.Error("no workflow completed while the KEK was down: the outage was not exercised")
	}
	if after.RefreshFailures == before.RefreshFailures {
		t.Error("no keyset refresh failed while the KEK was down: the refresh window was not exercised")
	}

	direct := rawClient(t, e.stack.FrontendAddr())
	for _, id := range done {
		if sv := readStored(t, ctx, direct, id); sv.hasMarker || sv.plaintext > 0 || sv.payloads == 0 {
			t.Errorf("stored history of %s: marker=%v, %d of %d payloads not encrypted", id, sv.hasMarker, sv.plaintext, sv.payloads)
		}
	}
}

func outagePastTTL(t *testing.T, e env) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const ttl = 2 * time.Second
	px := startProxy(t, e.stack.FrontendAddr(), e.kek.keys(t.TempDir(), func(kc *gateway.KeysConfig) {
		kc.CacheTTL, kc.RefreshAfter, kc.MinRefreshInterval = ttl, 500*time.Millisecond, 200*time.Millisecond
	}))
	c := dial(t, px.addr)
	tq := unique("out2")
	startWorker(t, c, tq)
	var ids []string // every workflow id tried through the proxy
	for i := range 3 {
		id := fmt.Sprintf("%s-warm-%d", tq, i)
		ids = append(ids, id)
		if err := runOne(ctx, c, tq, id, fmt.Sprintf("%s-warm-%d", marker, i)); err != nil {
			t.Fatalf("before the outage: %v", err)
		}
	}

	if err := e.kek.stop(); err != nil {
		t.Errorf("stop the KEK: %v", err)
	}
	down := time.Now()
	time.Sleep(ttl + time.Second) // every load so far happened before the stop: the cached keyset is now past its TTL

	// New RPCs fail closed, at once, with a status naming the KEK; nothing is forwarded.
	svc := rawClient(t, px.addr)
	errsBefore, _ := px.obs.errors()
	const tries = 5
	var rejected []string
	var slowest time.Duration
	for i := range tries {
		id := fmt.Sprintf("%s-down-%d", tq, i)
		rejected = append(rejected, id)
		began := time.Now()
		err := rawStart(ctx, svc, id, tq, fmt.Sprintf("%s-down-%d", marker, i))
		slowest = max(slowest, time.Since(began))
		st := status.Convert(err)
		if st.Code() != codes.Unavailable || !strings.Contains(st.Message(), e.kek.downText) ||
			!strings.Contains(st.Message(), e.kek.downAddr) || !strings.Contains(st.Message(), keys.ErrUnavailable.Error()) {
			t.Errorf("start with the KEK down past the TTL: %v; want Unavailable naming %q, %q and %q", err, e.kek.downText, e.kek.downAddr, keys.ErrUnavailable)
		}
		if strings.Contains(st.Message(), marker) {
			t.Error("error message leaks payload text")
		}
		if i == 0 {
			t.Logf("fail-closed status: code %s, message %q", st.Code(), st.Message())
		}
	}
	errsAfter, kinds := px.obs.errors()
	if errsAfter-errsBefore != tries {
		t.Errorf("proxy reported %d failed RPCs for %d rejected starts (%s)", errsAfter-errsBefore, tries, kinds)
	}
	direct := rawClient(t, e.stack.FrontendAddr())
	for _, id := range rejected {
		_, err := direct.DescribeWorkflowExecution(ctx, &workflowservice.DescribeWorkflowExecutionRequest{
			Namespace: namespace, Execution: &commonpb.WorkflowExecution{WorkflowId: id}})
		if status.Code(err) != codes.NotFound {
			t.Errorf("workflow %s, rejected by the proxy, at the frontend: %v; want NotFound", id, err)
		}
	}

	// The KEK returns: the same proxy recovers without a restart.
	if err := e.kek.restart(); err != nil {
		t.Fatalf("restart the KEK: %v", err)
	}
	up := time.Now()
	recovered := ""
	failures := 0
	var lastErr error
	for i := 0; i < 300 && recovered == ""; i++ {
		id := fmt.Sprintf("%s-up-%d", tq, i)
		ids = append(ids, id)
		if lastErr = rawStart(ctx, svc, id, tq, fmt.Sprintf("%s-up-%d", marker, i)); lastErr == nil {
			recovered = id
			break
		}
		failures++
		time.Sleep(100 * time.Millisecond)
	}
	if recovered == "" {
		t.Fatalf("no recovery within %d tries after the KEK came back: %v", failures, lastErr)
	}
	recovery := time.Since(up)
	var got string
	if err := c.GetWorkflow(ctx, recovered, "").Get(ctx, &got); err != nil || !strings.HasSuffix(got, "|echo") {
		t.Errorf("workflow started on recovery: %q, %v", got, err)
	}
	for i := range 3 {
		id := fmt.Sprintf("%s-after-%d", tq, i)
		ids = append(ids, id)
		if err := runOne(ctx, c, tq, id, fmt.Sprintf("%s-after-%d", marker, i)); err != nil {
			t.Errorf("after recovery: %v", err)
		}
	}
	t.Logf("KEK down for %s (TTL %s): %d of %d starts rejected, slowest rejection %s; recovered %s after the restart (%d rejected meanwhile); 3 more workflows completed",
		up.Sub(down).Round(time.Millisecond), ttl, tries, tries, slowest.Round(time.Millisecond), recovery.Round(time.Millisecond), failures)
	_, kinds = px.obs.errors()
	t.Logf("proxy: RPCs by code %v, failed by the proxy: %s", px.rpcs.snapshot(), kinds)

	for _, id := range ids {
		_, err := direct.DescribeWorkflowExecution(ctx, &workflowservice.DescribeWorkflowExecutionRequest{
			Namespace: namespace, Execution: &commonpb.WorkflowExecution{WorkflowId: id}})
		if status.Code(err) == codes.NotFound {
			continue // a start rejected during recovery
		}
		if sv := readStored(t, ctx, direct, id); sv.hasMarker || sv.plaintext > 0 {
			t.Errorf("stored history of %s: marker=%v, %d of %d payloads not encrypted", id, sv.hasMarker, sv.plaintext, sv.payloads)
		}
	}
}
