//go:build !nodevstack

package proxy

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/blindfold-dev/blindfold/internal/devstack/devstacktest"
	"github.com/blindfold-dev/blindfold/keys"
)

// BenchmarkSignal measures a SignalWorkflowExecution with a 1 KiB payload against the embedded server, directly and
// through the proxy (real codec, local keys), in the same run. It reports p50 and p99 per call; the proxy's added
// latency is the difference between the two sub-benchmarks.
func BenchmarkSignal(b *testing.B) {
	stack := devstacktest.Shared(b)
	km, err := keys.OpenLocal(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	proxyAddr := startE2EProxy(b, stack.FrontendAddr(), km)
	for _, target := range []struct{ name, addr string }{{"direct", stack.FrontendAddr()}, {"proxy", proxyAddr}} {
		b.Run(target.name, func(b *testing.B) {
			conn, err := grpc.NewClient(target.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			wf := workflowservice.NewWorkflowServiceClient(conn)
			ctx := context.Background()
			id := fmt.Sprintf("bench-signal-%s-%d", target.name, time.Now().UnixNano())
			// No worker: the workflow stays open and accepts signals.
			if _, err := wf.StartWorkflowExecution(ctx, &workflowservice.StartWorkflowExecutionRequest{
				Namespace: "default", WorkflowId: id, RequestId: id,
				WorkflowType: &commonpb.WorkflowType{Name: "bench"}, TaskQueue: &taskqueuepb.TaskQueue{Name: "bench-no-worker"},
			}); err != nil {
				b.Fatal(err)
			}
			req := &workflowservice.SignalWorkflowExecutionRequest{
				Namespace: "default", WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: id}, SignalName: "s",
			}
			payload := strings.Repeat("x", 1024)
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				req.Input = payloads(payload) // the proxy replaces payloads in place
				start := time.Now()
				if _, err := wf.SignalWorkflowExecution(ctx, req); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			_, _ = wf.TerminateWorkflowExecution(ctx, &workflowservice.TerminateWorkflowExecutionRequest{
				Namespace: "default", WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: id}})
		})
	}
}
