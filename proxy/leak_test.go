package proxy

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

// TestShutdownLeavesNoGoroutines: after Shutdown (with a call cut by its deadline), no goroutine of the proxy or its
// upstream connection is left.
func TestShutdownLeavesNoGoroutines(t *testing.T) {
	up := startFakeUpstream(t)
	polled := make(chan struct{})
	var pollOnce sync.Once
	up.on("PollActivityTaskQueue", func(ctx context.Context, _ proto.Message) (proto.Message, error) {
		pollOnce.Do(func() { close(polled) })
		<-ctx.Done()
		return nil, ctx.Err()
	})
	up.on("GetSystemInfo", func(context.Context, proto.Message) (proto.Message, error) {
		return &workflowservice.GetSystemInfoResponse{}, nil
	})
	ignore := goleak.IgnoreCurrent()

	c, _ := newTestCodec(t)
	srv, err := New(Config{Upstream: up.addr, Codec: c, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	wf := workflowservice.NewWorkflowServiceClient(conn)
	if _, err := wf.GetSystemInfo(context.Background(), &workflowservice.GetSystemInfoRequest{}); err != nil {
		t.Fatal(err)
	}
	pollDone := make(chan struct{})
	go func() {
		_, _ = wf.PollActivityTaskQueue(context.Background(), &workflowservice.PollActivityTaskQueueRequest{Namespace: "default"})
		close(pollDone)
	}()
	// Shutdown must find the poll in flight upstream, so its deadline is what ends it.
	select {
	case <-polled:
	case <-time.After(30 * time.Second):
		t.Fatal("the poll did not reach the upstream")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_ = srv.Shutdown(ctx)
	<-pollDone
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	_ = conn.Close()
	// Connection goroutines end shortly after Close returns; on a loaded machine that can take longer than goleak's own
	// half second of retries, so wait for the count to come down before the report.
	for deadline := time.Now().Add(10 * time.Second); goleak.Find(ignore) != nil && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	goleak.VerifyNone(t, ignore)
}
