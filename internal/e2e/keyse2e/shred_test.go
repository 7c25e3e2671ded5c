package keyse2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindfold-dev/blindfold/codec"
)

// TestShredThroughStack shreds the scope of workflows that ran through the proxy, for each KEK. Afterwards a history read
// through the proxy is refused naming the destroyed key, new starts are refused, and the proxy keeps serving. Then the KEK
// key goes (Vault: Shred deleted the scope's Transit key; KMS: the key's deletion is scheduled; HSM: the token key is
// destroyed), and a key directory restored from a backup taken before the shred (keyset, no tombstone) fails the same way,
// naming the KEK key: only the KEK stood between the backup and the data. With the local master key the backup holds
// the master key, and it still opens: the reason the local KEK is for development.
func TestShredThroughStack(t *testing.T) {
	forEachKEK(t, true, shredThroughStack)
}

func shredThroughStack(t *testing.T, p provider) {
	r := startRun(t, p, "shred")
	e, dir, km, px, c, tq, stopWorker := r.env, r.dir, r.km, r.px, r.c, r.tq, r.stopWorker
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var ids []string
	for i := range 2 {
		id := fmt.Sprintf("%s-%d", tq, i)
		ids = append(ids, id)
		if err := runOne(ctx, c, tq, id, fmt.Sprintf("%s-%d", marker, i)); err != nil {
			t.Fatal(err)
		}
	}
	stopWorker()
	sealed, err := km.SealingKey(ctx, codec.Target{Namespace: namespace})
	if err != nil {
		t.Fatal(err)
	}
	svc := rawClient(t, px.addr)
	checkDecoded(t, ctx, svc, ids[0], marker+"-0")
	backup := e.kek.backup(t, dir)

	began := time.Now()
	if err := km.Shred(ctx, scope); err != nil {
		t.Fatal(err)
	}
	t.Logf("shred (keyset tombstoned; with Vault the Transit key deleted) took %s", time.Since(began).Round(time.Millisecond))

	for _, id := range ids {
		reason, err := inputRefusal(ctx, svc, id)
		if err != nil || !strings.Contains(reason, sealed.ID) || !strings.Contains(reason, "destroyed") {
			t.Errorf("history of %s after the shred: %q, %v; want the input refused, naming key %s as destroyed", id, reason, err, sealed.ID)
		}
		if strings.Contains(reason, marker) {
			t.Error("refusal leaks payload text")
		}
	}

	// New payloads for the scope are refused, not sealed under some new key; the proxy itself keeps serving.
	err = rawStart(ctx, svc, tq+"-after", tq, marker+"-after")
	if st := status.Convert(err); st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), "shredded") {
		t.Errorf("start after the shred: %v; want FailedPrecondition saying the scope was shredded", err)
	}
	if _, err := svc.DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: namespace}); err != nil {
		t.Errorf("proxy after the shred: DescribeNamespace: %v", err)
	}

	if e.kek.afterShred != nil {
		e.kek.afterShred(t, ctx, px)
	}
	// The key directory restored from a backup: the keyset is there, but its KEK key is gone.
	restored := startProxy(t, e.stack.FrontendAddr(), e.kek.keys(backup, nil))
	restoredSvc := rawClient(t, restored.addr)
	if e.kek.backupOpens {
		checkDecoded(t, ctx, restoredSvc, ids[0], marker+"-0")
		t.Logf("history with the key directory restored from backup (master key included): opens; no shred guarantee against backups")
		return
	}
	reason, err := inputRefusal(ctx, restoredSvc, ids[0])
	if err != nil || !strings.Contains(reason, "destroyed") || !strings.Contains(reason, e.kek.destroyedText) {
		t.Errorf("history through a proxy with the keyset restored from backup: %q, %v; want the input refused, naming the destroyed KEK key %s", reason, err, e.kek.destroyedText)
	}
	if strings.Contains(reason, marker) {
		t.Error("refusal leaks payload text")
	}
	t.Logf("history with the keyset restored from backup: refused, %s", reason)
}
