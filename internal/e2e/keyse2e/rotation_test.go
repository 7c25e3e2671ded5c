package keyse2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/internal/gateway"
)

// TestRotationMidRun starts workflows through the proxy, rotates the scope's data key (and, with Vault, its Transit key
// version) while they wait for a signal, starts as many again, and signals them all: every workflow completes with the
// right result. Stored histories hold no plaintext and payloads sealed with both data keys; through the proxy they decode.
// Where the KEK itself can be rotated inside the KEK (Vault: another Transit version, rewrap, min_decryption_version;
// AWS KMS: a new KMS key, rewrap with ReEncrypt, the old key disabled), a fresh proxy (empty key cache) still decodes
// everything afterwards, while a keyset left wrapped under the retired KEK (a backup) no longer unwraps. Without that
// (the local master key, PKCS#11: rewrapping would unwrap the keysets on the host), a fresh proxy still decodes.
func TestRotationMidRun(t *testing.T) {
	forEachKEK(t, true, rotationMidRun)
}

func rotationMidRun(t *testing.T, p provider) {
	r := startRun(t, p, "rot")
	e, dir, km, px, c, tq := r.env, r.dir, r.km, r.px, r.c, r.tq
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
	if e.kek.rotateKEK != nil {
		e.kek.rotateKEK(t, ctx, px)
	}
	dek2, err := km.Rotate(ctx, scope) // with Vault, the new keyset is wrapped under Transit v2
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
	t.Logf("%d workflows (%d started before the rotation of DEK %s→%s) completed in %s",
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

	// Retire the KEK the stored keyset is wrapped under, where the KEK can move it inside itself.
	freshKeys, backup, refusal := e.kek.keys(dir, nil), "", []string(nil)
	if e.kek.retireKEK != nil {
		freshKeys, backup, refusal = e.kek.retireKEK(t, ctx, px, dir)
	}

	// A fresh KEK client, Manager and proxy must unwrap the stored keyset from the KEK (nothing cached) and decode everything.
	fresh := startProxy(t, e.stack.FrontendAddr(), freshKeys)
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

	if backup == "" {
		t.Logf("rotation test: %s in total (the KEK was not rotated: this KEK has no rotation inside itself)", time.Since(began).Round(time.Millisecond))
		return
	}
	// Control: the keyset as it was before the rewrap (under the retired KEK) fails closed now, naming the unwrap failure, not a crash.
	old := startProxy(t, e.stack.FrontendAddr(), withDir(freshKeys, backup))
	// Strict decode: the history reads, its payloads are refusals whose reason names the unwrap failure.
	reason, err := inputRefusal(ctx, rawClient(t, old.addr), wfs[0].id)
	ok := err == nil
	for _, w := range refusal {
		ok = ok && strings.Contains(reason, w)
	}
	if !ok {
		t.Errorf("history through a proxy with the keyset wrapped under the retired KEK: %q, %v; want a refusal containing %q", reason, err, refusal)
	}
	if strings.Contains(reason, marker) {
		t.Error("refusal leaks payload text")
	}
	t.Logf("keyset wrapped under the retired KEK: refused, %s", reason)
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatal("ran out of time")
	}
	t.Logf("rotation test: %s in total", time.Since(began).Round(time.Millisecond))
}

// withDir is kc over key directory dir.
func withDir(kc gateway.KeysConfig, dir string) gateway.KeysConfig {
	kc.Dir = dir
	return kc
}
