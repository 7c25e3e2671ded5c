package vaulte2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/keys"
)

// TestShredThroughStack shreds the scope of workflows that ran through the proxy. Shred deletes the scope's Transit key;
// afterwards a history read through the proxy fails with FailedPrecondition naming the destroyed key, new starts are
// refused, and the proxy keeps serving. A key directory restored from a backup taken before the shred (keyset, no
// tombstone) fails the same way, naming the deleted Transit key: only Vault stood between the backup and the data.
func TestShredThroughStack(t *testing.T) {
	r := startRun(t, "shred")
	e, prefix, kek, dir, km, px, c, tq, stopWorker := r.env, r.prefix, r.kek, r.dir, r.km, r.px, r.c, r.tq, r.stopWorker
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
	backup := copyKeyset(t, dir, scope)

	began := time.Now()
	if err := km.Shred(ctx, scope); err != nil {
		t.Fatal(err)
	}
	t.Logf("shred (Transit key deleted, keyset tombstoned) took %s", time.Since(began).Round(time.Millisecond))
	if _, err := kek.TransitKey(ctx, scope); !errors.Is(err, keys.ErrKEKKeyMissing) {
		t.Fatalf("Transit key after shred: %v, want it deleted", err)
	}

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

	// The key directory restored from a backup: the keyset is there, but its Transit key is gone.
	restored := startProxy(t, e.stack.FrontendAddr(), vaultKeys(e.vault, backup, prefix, nil))
	reason, err := inputRefusal(ctx, rawClient(t, restored.addr), ids[0])
	if err != nil || !strings.Contains(reason, "destroyed") || !strings.Contains(reason, "vault transit") || !strings.Contains(reason, kek.KeyName(scope)) {
		t.Errorf("history through a proxy with the keyset restored from backup: %q, %v; want the input refused, naming the deleted Transit key %s", reason, err, kek.KeyName(scope))
	}
	t.Logf("history with the keyset restored from backup: refused, %s", reason)
}
