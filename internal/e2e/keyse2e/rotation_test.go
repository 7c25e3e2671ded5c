package vaulte2e

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/keys"
)

// TestRotationMidRun starts workflows through the proxy, rotates the scope's Transit key (KEK version) and its data key
// while they wait for a signal, starts as many again, and signals them all: every workflow completes with the right
// result. Stored histories hold no plaintext and payloads sealed with both data keys; through the proxy they decode.
// After another Transit rotation, a rewrap of the stored keyset and raising min_decryption_version to the newest
// version, a fresh proxy (empty key cache) still decodes everything, while a keyset left wrapped under an older
// version (a backup) no longer unwraps.
func TestRotationMidRun(t *testing.T) {
	r := startRun(t, "rot")
	e, prefix, kek, dir, km, px, c, tq := r.env, r.prefix, r.kek, r.dir, r.km, r.px, r.c, r.tq
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	direct := rawClient(t, e.stack.FrontendAddr())
	began := time.Now()

	const n = 4
	type wf struct {
		id, in string
		run    client.WorkflowRun
	}
	var wfs []wf
	start := func(batch int) {
		for i := range n {
			id := fmt.Sprintf("%s-b%d-%d", tq, batch, i)
			in := fmt.Sprintf("%s-in-b%d-%d", marker, batch, i)
			run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: tq}, signalWF, in)
			if err != nil {
				t.Fatalf("start %s: %v", id, err)
			}
			wfs = append(wfs, wf{id: id, in: in, run: run})
		}
	}

	start(1)
	dek1, err := km.SealingKey(ctx, codec.Target{Namespace: namespace})
	if err != nil {
		t.Fatal(err)
	}
	v, err := kek.RotateScopeKey(ctx, scope)
	if err != nil || v != 2 {
		t.Fatalf("RotateScopeKey = %d, %v; want version 2", v, err)
	}
	dek2, err := km.Rotate(ctx, scope) // the new keyset is wrapped under Transit v2
	if err != nil {
		t.Fatal(err)
	}
	if dek2 == dek1.ID {
		t.Fatalf("Rotate kept the primary %s", dek2)
	}
	start(2)
	for i, w := range wfs {
		if err := c.SignalWorkflow(ctx, w.id, "", "go", fmt.Sprintf("%s-sig-%d", marker, i)); err != nil {
			t.Fatalf("signal %s: %v", w.id, err)
		}
	}
	for i, w := range wfs {
		var got string
		if err := w.run.Get(ctx, &got); err != nil {
			t.Fatalf("workflow %s: %v", w.id, err)
		}
		if want := wantSignal(w.in, fmt.Sprintf("%s-sig-%d", marker, i)); got != want {
			t.Fatalf("workflow %s returned %q, want %q", w.id, got, want)
		}
	}
	t.Logf("%d workflows (%d started before the rotation of Transit v1→v2 and DEK %s→%s) completed in %s",
		len(wfs), n, dek1.ID, dek2, time.Since(began).Round(time.Millisecond))

	// What the frontend stores: no plaintext, and payloads of both data keys; the first batch's inputs under the old one.
	keysSeen := map[string]int{}
	stored := 0
	for i, w := range wfs {
		sv := readStored(t, ctx, direct, w.id)
		if sv.hasMarker || sv.plaintext > 0 {
			t.Errorf("stored history of %s: marker=%v, %d of %d payloads not encrypted", w.id, sv.hasMarker, sv.plaintext, sv.payloads)
		}
		wantStart := dek2
		if i < n {
			wantStart = dek1.ID
		}
		if sv.startKey != wantStart {
			t.Errorf("input of %s sealed with %q, want %q", w.id, sv.startKey, wantStart)
		}
		for k, c := range sv.keyIDs {
			keysSeen[k] += c
		}
		stored += sv.payloads
	}
	if len(keysSeen) != 2 || keysSeen[dek1.ID] == 0 || keysSeen[dek2] == 0 {
		t.Errorf("stored payloads by key id: %v, want both %s and %s", keysSeen, dek1.ID, dek2)
	}
	t.Logf("stored: %d payloads, by key id %v, none plaintext", stored, keysSeen)
	through := rawClient(t, px.addr)
	for i, w := range wfs {
		checkDecoded(t, ctx, through, w.id, w.in, fmt.Sprintf("%s-sig-%d", marker, i))
	}

	// Rotate Transit again (v3): the stored keyset is still under v2. Rewrap moves it to v3 inside Vault; then v2 is retired.
	if v, err := kek.RotateScopeKey(ctx, scope); err != nil || v != 3 {
		t.Fatalf("RotateScopeKey = %d, %v; want version 3", v, err)
	}
	backup := copyKeyset(t, dir, scope) // wrapped under v2, as a backup taken now would be
	changed, err := km.RewrapAll(ctx)
	if err != nil || !slices.Equal(changed, []string{scope}) {
		t.Fatalf("RewrapAll = %v, %v; want [%s]", changed, err, scope)
	}
	if err := kek.SetMinDecryptionVersion(ctx, scope, 3); err != nil {
		t.Fatal(err)
	}
	info, err := kek.TransitKey(ctx, scope)
	if err != nil || info.LatestVersion != 3 || info.MinDecryptionVersion != 3 {
		t.Fatalf("Transit key after rewrap: %+v, %v; want latest 3, min_decryption_version 3", info, err)
	}

	// A fresh KEK client, Manager and proxy must unwrap the stored keyset from Vault (nothing cached) and decode everything.
	fresh := startProxy(t, e.stack.FrontendAddr(), vaultKeys(e.vault, dir, prefix, nil))
	freshSvc := rawClient(t, fresh.addr)
	for i, w := range wfs {
		checkDecoded(t, ctx, freshSvc, w.id, w.in, fmt.Sprintf("%s-sig-%d", marker, i))
	}
	// The running proxy keeps decoding too, and keeps sealing new workflows.
	checkDecoded(t, ctx, through, wfs[0].id, wfs[0].in)
	id := tq + "-after"
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: tq}, streamWF, marker+"-after")
	if err != nil {
		t.Fatal(err)
	}
	var got string
	if err := run.Get(ctx, &got); err != nil || got != wantStream(marker+"-after") {
		t.Fatalf("workflow after rewrap: %q, %v", got, err)
	}
	if sv := readStored(t, ctx, direct, id); sv.startKey != dek2 || sv.hasMarker {
		t.Errorf("workflow after rewrap: input sealed with %q (want %s), marker stored: %v", sv.startKey, dek2, sv.hasMarker)
	}

	// Control: the keyset as it was before the rewrap (under v2) fails closed now, naming the unwrap failure, not a crash.
	old := startProxy(t, e.stack.FrontendAddr(), vaultKeys(e.vault, backup, prefix, nil))
	// Strict decode: the history reads, its payloads are refusals whose reason names the unwrap failure.
	reason, err := inputRefusal(ctx, rawClient(t, old.addr), wfs[0].id)
	if err != nil || !strings.Contains(reason, keys.ErrUnwrap.Error()) || !strings.Contains(reason, kek.KeyName(scope)) ||
		!strings.Contains(reason, "too old") {
		t.Errorf("history through a proxy with the keyset wrapped under Transit v2, after min_decryption_version=3: %q, %v; want a refusal naming the unwrap, the Transit key and the retired version", reason, err)
	}
	if strings.Contains(reason, marker) {
		t.Error("refusal leaks payload text")
	}
	t.Logf("keyset wrapped under a retired Transit version: refused, %s", reason)
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatal("ran out of time")
	}
	t.Logf("rotation test: %s in total", time.Since(began).Round(time.Millisecond))
}
