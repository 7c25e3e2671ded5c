package keystoree2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/internal/gateway"
)

// Timed rotation by three replicas at once, under load: the acceptance test. Three `blindfold proxy` processes share one
// Vault KV store and all rotate every 2 s for 30 s while SDK clients and workers spread over them run workflows (each payload
// sealed by one replica is opened by another). Every payload decodes; every rotation period gets exactly one new primary.
func TestConcurrentTimedRotation(t *testing.T) {
	e := setup(t)
	const (
		period   = 2 * time.Second
		duration = 30 * time.Second
		loops    = 3 // concurrent workflow loops
	)
	tq := unique("rotate")
	var procs []*proc
	var clients []client.Client
	for i := range 3 {
		// Replicas reload their keysets every second, so sealing follows the rotations; unknown key ids reload at once anyway.
		p := e.startProxy(t, fmt.Sprintf("r%d", i), "--rotate-keys-every", period.String(), "--key-refresh-after", "1s", "--key-cache-ttl", "1m")
		procs = append(procs, p)
		c := dial(t, p.addr)
		clients = append(clients, c)
		startWorker(t, c, tq)
	}

	// Load: each loop starts a workflow through one replica and waits for its result through the next.
	ctx, cancel := context.WithTimeout(context.Background(), duration+time.Minute)
	defer cancel()
	start := time.Now()
	var (
		mu   sync.Mutex
		runs []wfRun
		fail atomic.Value
		seq  atomic.Int64
		wg   sync.WaitGroup
	)
	for l := range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < duration && ctx.Err() == nil {
				n := seq.Add(1)
				in := fmt.Sprintf("%s-%d", marker, n)
				via := int(n) % len(clients)
				id := unique("wf")
				run, err := clients[via].ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: tq}, echoWF, in)
				if err != nil {
					fail.CompareAndSwap(nil, fmt.Errorf("loop %d: start through r%d: %w", l, via, err))
					return
				}
				var out string
				if err := clients[(via+1)%len(clients)].GetWorkflow(ctx, id, run.GetRunID()).Get(ctx, &out); err != nil {
					fail.CompareAndSwap(nil, fmt.Errorf("loop %d: result of %s: %w", l, id, err))
					return
				}
				if out != in+"|echo" {
					fail.CompareAndSwap(nil, fmt.Errorf("loop %d: %s returned %q, want %q", l, id, out, in+"|echo"))
					return
				}
				mu.Lock()
				runs = append(runs, wfRun{id: id, runID: run.GetRunID(), in: in, via: via})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err, _ := fail.Load().(error); err != nil {
		t.Fatal(err)
	}

	// What the store holds: the keys of the scope, with their creation times (milliseconds).
	k, err := gateway.OpenKeys(context.Background(), e.keysConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	infos, err := k.Manager.List(context.Background())
	if err != nil || len(infos) != 1 || infos[0].State != "active" {
		t.Fatalf("store holds %+v, %v; want the one active scope %q", infos, err, scope)
	}
	ks := infos[0].Keys
	created := make([]time.Time, len(ks))
	for i, key := range ks {
		created[i] = key.Created
	}
	if !slices.IsSortedFunc(created, time.Time.Compare) {
		t.Fatalf("keys are not listed oldest first: %v", created)
	}
	rotations := len(ks) - 1
	var gaps []time.Duration
	for i := 1; i < len(created); i++ {
		gaps = append(gaps, created[i].Sub(created[i-1]))
	}
	// Exactly one new primary per period: no primary was replaced before it was a period old (two rotations in one period),
	// and none lived two periods (a period without a rotation). The replicas check every ~period/10 (at least 1 s) with jitter.
	for i, g := range gaps {
		if g < period || g >= 2*period {
			t.Errorf("primary %d lived %s; want at least %s and under %s (all gaps: %v)", i, g, period, 2*period, gaps)
		}
	}
	life := time.Since(created[len(created)-1])
	if life >= 2*period+time.Second {
		t.Errorf("the last primary is %s old: rotation stopped", life)
	}

	// Rotations by the replicas, from their logs: every one they reported is in the store (none lost to a concurrent write).
	var byProc []int
	logged := 0
	for _, p := range procs {
		n := p.count("scope keyset rotated")
		byProc = append(byProc, n)
		logged += n
	}
	if logged != rotations {
		t.Errorf("replicas logged %d rotations (%v), the store holds %d new primaries", logged, byProc, rotations)
	}

	// Every payload still decodes: each workflow's history, read through a replica other than the one that started it,
	// opens every payload; the raw history holds sealed payloads only, under many different keys.
	raw := dial(t, e.stack.FrontendAddr())
	usedKeys := map[string]int{}
	decoded := 0
	for _, r := range runs {
		via := clients[(r.via+2)%len(clients)]
		n, err := checkHistory(context.Background(), via, r, nil)
		if err != nil {
			t.Fatalf("history of %s through a replica: %v", r.id, err)
		}
		decoded += n
		if _, err := checkHistory(context.Background(), raw, r, usedKeys); err != nil {
			t.Fatalf("raw history of %s: %v", r.id, err)
		}
	}
	for _, p := range procs {
		if errs := p.records("ERROR"); len(errs) > 0 {
			t.Errorf("proxy %s logged errors:\n%s", p.name, strings.Join(errs, "\n"))
		}
	}
	if _, err := os.Stat(unusedDir); !os.IsNotExist(err) {
		t.Errorf("a replica touched --key-dir %s (%v); with the shared store it must not", unusedDir, err)
	}
	t.Logf("%d workflows in %s through 3 replicas rotating every %s: %d rotations (by replica %v), primary lifetimes %v; "+
		"%d payloads decoded through replicas, sealed under %d different keys",
		len(runs), elapsed.Round(time.Millisecond), period, rotations, byProc, roundAll(gaps), decoded, len(usedKeys))
	if wantMin := int(duration/period) * 2 / 3; rotations < wantMin {
		t.Errorf("%d rotations in %s at a %s period; want at least %d", rotations, duration, period, wantMin)
	}
	if len(usedKeys) < rotations/2 {
		t.Errorf("payloads were sealed under %d keys only, over %d rotations; replicas did not follow the new primaries", len(usedKeys), rotations)
	}
}

type payload struct {
	*commonpb.Payload
	what string
}

type wfRun struct {
	id, runID, in string
	via           int
}

// checkHistory reads r's history through c. With usedKeys nil (c is a replica) every payload must be decoded and the input
// and result must be r's; otherwise (c is the raw frontend) every payload must be sealed, and the sealing keys are counted.
func checkHistory(ctx context.Context, c client.Client, r wfRun, usedKeys map[string]int) (int, error) {
	it := c.GetWorkflowHistory(ctx, r.id, r.runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	n := 0
	sawInput, sawResult := false, false
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return n, err
		}
		switch ev.GetEventType() {
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_FAILED, enumspb.EVENT_TYPE_ACTIVITY_TASK_FAILED:
			return n, fmt.Errorf("event %d is a %s: a replica could not open a payload", ev.GetEventId(), ev.GetEventType())
		}
		var ps []*payload
		if a := ev.GetWorkflowExecutionStartedEventAttributes(); a != nil {
			ps = append(ps, &payload{a.GetInput().GetPayloads()[0], "input"})
		}
		if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil {
			ps = append(ps, &payload{a.GetInput().GetPayloads()[0], "activity input"})
		}
		if a := ev.GetActivityTaskCompletedEventAttributes(); a != nil {
			ps = append(ps, &payload{a.GetResult().GetPayloads()[0], "activity result"})
		}
		if a := ev.GetWorkflowExecutionCompletedEventAttributes(); a != nil {
			ps = append(ps, &payload{a.GetResult().GetPayloads()[0], "result"})
		}
		for _, p := range ps {
			enc := string(p.Metadata["encoding"])
			if usedKeys != nil {
				if enc != codec.EncodingEncrypted || strings.Contains(string(p.Data), marker) {
					return n, fmt.Errorf("%s stored as %q, not sealed", p.what, enc)
				}
				id, _ := codec.KeyIDIn(p.Payload, namespace)
				usedKeys[id]++
				n++
				continue
			}
			if enc != "json/plain" {
				return n, fmt.Errorf("%s came back as %q, not decoded", p.what, enc)
			}
			want := `"` + r.in + `"`
			if p.what == "result" || p.what == "activity result" {
				want = `"` + r.in + `|echo"`
			}
			if string(p.Data) != want {
				return n, fmt.Errorf("%s decoded to %s, want %s", p.what, p.Data, want)
			}
			sawInput = sawInput || p.what == "input"
			sawResult = sawResult || p.what == "result"
			n++
		}
	}
	if usedKeys == nil && (!sawInput || !sawResult) {
		return n, fmt.Errorf("history lacks the input or the result")
	}
	return n, nil
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(10 * time.Millisecond)
	}
	return out
}
