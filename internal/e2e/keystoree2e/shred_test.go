package keystoree2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/blindfold-dev/blindfold/codec"
)

// A shred while two replicas run: both hold the scope's keyset in their caches, an operator shreds it with `blindfold keys shred`
// on the shared store, and both replicas refuse the scope, sealing and opening alike, within their refresh period.
func TestShredReachesEveryReplica(t *testing.T) {
	e := setup(t)
	const refresh = time.Second
	tq := unique("shred")
	var procs []*proc
	var clients []client.Client
	for i := range 2 {
		p := e.startProxy(t, fmt.Sprintf("r%d", i), "--key-refresh-after", refresh.String(), "--key-cache-ttl", "1m")
		procs = append(procs, p)
		c := dial(t, p.addr)
		clients = append(clients, c)
		startWorker(t, c, tq)
	}
	// Both replicas seal and open the scope: it is in both caches.
	var before []wfRun
	for i, c := range clients {
		in := fmt.Sprintf("%s-before-%d", marker, i)
		id := unique("wf")
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: tq}, echoWF, in)
		if err != nil {
			t.Fatal(err)
		}
		var out string
		if err := clients[1-i].GetWorkflow(ctx, id, run.GetRunID()).Get(ctx, &out); err != nil || out != in+"|echo" {
			t.Fatalf("workflow through r%d: %q, %v", i, out, err)
		}
		cancel()
		before = append(before, wfRun{id: id, runID: run.GetRunID(), in: in, via: i})
	}
	for i, c := range clients {
		if _, err := checkHistory(context.Background(), c, before[1-i], nil); err != nil {
			t.Fatalf("history through r%d before the shred: %v", i, err)
		}
	}

	out := e.runKeys(t, "shred", scope, "--yes")
	shredAt := time.Now()
	if !strings.Contains(out, "scope default: shredded") {
		t.Fatalf("keys shred printed %q", out)
	}

	// Each replica, polled: a new workflow must fail to start (nothing can be sealed) and an old history must come back refused.
	var wg sync.WaitGroup
	took := make([]time.Duration, len(clients))
	errs := make([]error, len(clients))
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			took[i], errs[i] = waitRefused(c, tq, before[i], shredAt, 10*time.Second)
		}()
	}
	wg.Wait()
	for i := range clients {
		if errs[i] != nil {
			t.Fatalf("replica r%d: %v", i, errs[i])
		}
	}
	t.Logf("shred seen by both replicas (refresh after %s): r0 after %s, r1 after %s", refresh, took[0].Round(time.Millisecond), took[1].Round(time.Millisecond))
	// The bound: the first request after the cached keyset reached the refresh age triggers a reload in the background and is
	// served from the cache; the requests after it see the tombstone. Allow the reload itself (two Vault calls) on a busy machine.
	for i, d := range took {
		if d > refresh+time.Second {
			t.Errorf("replica r%d still served the shredded scope %s after the shred; want within the refresh period %s (+1s for the reload)", i, d, refresh)
		}
	}
	// And it stays refused: the keyset is gone from the store, its earlier KV versions destroyed, its Transit key deleted.
	if out := e.runKeys(t, "list"); !strings.Contains(out, "shredded") {
		t.Fatalf("keys list after the shred: %q", out)
	}
}

// waitRefused polls c until a start fails with the shred's error and r's history comes back with refused payloads, and returns
// how long after since that took.
func waitRefused(c client.Client, tq string, r wfRun, since time.Time, limit time.Duration) (time.Duration, error) {
	startRefused, openRefused := false, false
	var lastStart, lastOpen string
	for time.Since(since) < limit {
		if !startRefused {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: unique("after"), TaskQueue: tq}, echoWF, marker+"-after")
			cancel()
			switch {
			case err == nil:
				lastStart = "started"
			case strings.Contains(err.Error(), "shredded") || strings.Contains(err.Error(), "key destroyed"):
				startRefused = true
			default:
				lastStart = err.Error()
			}
		}
		if !openRefused {
			enc, err := inputEncoding(c, r)
			switch {
			case err != nil:
				lastOpen = err.Error()
			case strings.HasPrefix(enc, codec.EncodingRefusedPrefix) && strings.Contains(enc, "destroyed"):
				openRefused = true
			default:
				lastOpen = enc
			}
		}
		if startRefused && openRefused {
			return time.Since(since), nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(since), fmt.Errorf("not refusing the shredded scope after %s: start %v (last: %s), open %v (last: %s)",
		limit, startRefused, lastStart, openRefused, lastOpen)
}

// inputEncoding reads r's history through c and returns the encoding its input payload came back with.
func inputEncoding(c client.Client, r wfRun) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	it := c.GetWorkflowHistory(ctx, r.id, r.runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return "", err
		}
		if a := ev.GetWorkflowExecutionStartedEventAttributes(); a != nil {
			return string(a.GetInput().GetPayloads()[0].GetMetadata()["encoding"]), nil
		}
	}
	return "", fmt.Errorf("no start event")
}
