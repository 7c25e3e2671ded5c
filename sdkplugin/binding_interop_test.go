package sdkplugin_test

// Interop tests of format v2's bindings: the plugin and the proxy bind every value to the workflow it belongs to, the
// same way, so either one opens what the other sealed where it belongs, and both refuse a value the backend moved.

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nexus-rpc/sdk-go/nexus"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	nexuspb "go.temporal.io/api/nexus/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporalnexus"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/internal/testenv"
	"github.com/blindfold-dev/blindfold/sdkplugin"
)

const (
	bindWaitName = "BindWait"
	bindEchoName = "BindEcho"
)

// bindWaitWorkflow returns its input and every "sig" signal it received, until the signal "done".
func bindWaitWorkflow(ctx workflow.Context, in string) ([]string, error) {
	got := []string{"input:" + in}
	ch := workflow.GetSignalChannel(ctx, "sig")
	for {
		var s string
		ch.Receive(ctx, &s)
		got = append(got, s)
		if s == "done" {
			return got, nil
		}
	}
}

// bindEchoWorkflow returns its input: what a scheduled workflow read.
func bindEchoWorkflow(_ workflow.Context, in string) (string, error) { return in, nil }

func startBindWorker(t *testing.T, c client.Client, queue string) {
	t.Helper()
	w := worker.New(c, queue, worker.Options{})
	w.RegisterWorkflowWithOptions(bindWaitWorkflow, workflow.RegisterOptions{Name: bindWaitName})
	w.RegisterWorkflowWithOptions(bindEchoWorkflow, workflow.RegisterOptions{Name: bindEchoName})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
}

// fleet is one embedded stack with a proxy, and clients and workers of both kinds sharing one key directory.
type fleet struct {
	plugin, plain, raw   client.Client
	pluginQueue, plainQ  string
	kr                   codec.Keyring
	proxyAddr, frontAddr string
}

func newFleet(t *testing.T) *fleet {
	t.Helper()
	s := stack(t)
	kr, proxyKeys := sharedKeyDir(t)
	proxyAddr, _ := startProxy(t, s.FrontendAddr(), proxyKeys)
	f := &fleet{
		plugin: dial(t, s.FrontendAddr(), newPlugin(t, kr)), plain: dial(t, proxyAddr), raw: dial(t, s.FrontendAddr()),
		pluginQueue: uniqueName(t, "plugin-tq"), plainQ: uniqueName(t, "plain-tq"), kr: kr,
		proxyAddr: proxyAddr, frontAddr: s.FrontendAddr(),
	}
	startBindWorker(t, f.plugin, f.pluginQueue)
	startBindWorker(t, f.plain, f.plainQ)
	return f
}

// side is the plugin or the proxy: its client and the task queue of its worker.
func (f *fleet) side(plugin bool) (client.Client, string) {
	if plugin {
		return f.plugin, f.pluginQueue
	}
	return f.plain, f.plainQ
}

func sideName(plugin bool) string { return map[bool]string{true: "plugin", false: "proxy"}[plugin] }

// TestInteropMovedValueRefused: the backend (a raw client straight to the frontend) copies workflow A's sealed input
// into a signal to workflow B. Whoever sealed it (the plugin or the proxy) and whoever works B (a plugin worker or a
// plain worker behind the proxy), B's code never sees it: the SDK drops the undecodable signal, B's genuine signal
// still arrives, and B completes with only what it was genuinely sent.
func TestInteropMovedValueRefused(t *testing.T) {
	f := newFleet(t)
	for _, sealer := range []bool{true, false} {
		for _, opener := range []bool{true, false} {
			t.Run("sealed by "+sideName(sealer)+", opened by "+sideName(opener), func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				marker := newMarker(t)
				sc, _ := f.side(sealer)
				oc, oq := f.side(opener)
				a := uniqueName(t, "a")
				// A only has to exist: nobody works its task queue.
				if _, err := sc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: a, TaskQueue: uniqueName(t, "idle")}, bindWaitName, marker); err != nil {
					t.Fatal(err)
				}
				b := uniqueName(t, "b")
				run, err := oc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: b, TaskQueue: oq}, bindWaitName, "b")
				if err != nil {
					t.Fatal(err)
				}
				moved := rawHistory(t, f.raw, a).GetEvents()[0].GetWorkflowExecutionStartedEventAttributes().GetInput()
				if bd, ok := codec.BindingOf(moved.GetPayloads()[0]); !ok || bd != codec.Workflow(a) {
					t.Errorf("A's input is bound to %v (envelope: %v), want workflow %q", bd, ok, a)
				}
				if _, err := f.raw.WorkflowService().SignalWorkflowExecution(ctx, &workflowservice.SignalWorkflowExecutionRequest{
					Namespace: "default", WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: b}, SignalName: "sig",
					Input: moved, Identity: "hostile-backend", RequestId: uniqueName(t, "moved"),
				}); err != nil {
					t.Fatal(err)
				}
				if err := oc.SignalWorkflow(ctx, b, "", "sig", "genuine"); err != nil {
					t.Fatal(err)
				}
				if err := oc.SignalWorkflow(ctx, b, "", "sig", "done"); err != nil {
					t.Fatal(err)
				}
				var got []string
				if err := run.Get(ctx, &got); err != nil {
					t.Fatalf("B: %v", err)
				}
				if want := []string{"input:b", "genuine", "done"}; !slices.Equal(got, want) {
					t.Fatalf("B received %q, want %q (the moved value must be dropped)", got, want)
				}
				signals := 0
				for _, ev := range rawHistory(t, f.raw, b).GetEvents() {
					if ev.GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED {
						signals++
					}
				}
				if signals != 3 {
					t.Fatalf("B's history has %d signals, want 3 (the moved one recorded by the backend)", signals)
				}
			})
		}
	}
}

// TestInteropScheduleBinding: a schedule's action input is bound to the workflows the schedule starts
// ("<id>-<time>"), whoever created the schedule and whoever works the scheduled workflow.
func TestInteropScheduleBinding(t *testing.T) {
	f := newFleet(t)
	for _, tc := range []struct{ creator, runner bool }{{true, true}, {true, false}, {false, true}} {
		t.Run("created by "+sideName(tc.creator)+", run by "+sideName(tc.runner), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cc, _ := f.side(tc.creator)
			rc, rq := f.side(tc.runner)
			marker := newMarker(t)
			id := uniqueName(t, "sched")
			sh, err := cc.ScheduleClient().Create(ctx, client.ScheduleOptions{
				ID: id, Spec: client.ScheduleSpec{Intervals: []client.ScheduleIntervalSpec{{Every: time.Hour}}},
				Action: &client.ScheduleWorkflowAction{ID: id + "-wf", Workflow: bindEchoName, Args: []any{marker}, TaskQueue: rq},
			})
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = sh.Delete(context.WithoutCancel(ctx)) }()
			if err := sh.Trigger(ctx, client.ScheduleTriggerOptions{Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_ALLOW_ALL}); err != nil {
				t.Fatal(err)
			}
			var started string
			testenv.WaitFor(t, 30*time.Second, "the schedule's first action", func() bool {
				d, err := sh.Describe(ctx)
				if err != nil || len(d.Info.RecentActions) == 0 {
					return false
				}
				started = d.Info.RecentActions[0].StartWorkflowResult.WorkflowID
				return true
			})
			if !strings.HasPrefix(started, id+"-wf-") {
				t.Fatalf("scheduled workflow %q, want %q + a time", started, id+"-wf-")
			}
			var out string
			if err := rc.GetWorkflow(ctx, started, "").Get(ctx, &out); err != nil || out != marker {
				t.Fatalf("scheduled workflow read %q, %v; want its input", out, err)
			}
			input := rawHistory(t, f.raw, started).GetEvents()[0].GetWorkflowExecutionStartedEventAttributes().GetInput().GetPayloads()[0]
			if bd, _ := codec.BindingOf(input); bd != (codec.Binding{Kind: codec.BindScheduledWorkflow, ID: id + "-wf"}) {
				t.Errorf("the scheduled input is bound to %v, want workflows scheduled as %q", bd, id+"-wf")
			}
		})
	}
}

const (
	bindNexusCallerName = "BindNexusCaller"
	// peerNamespace is the shared stack's second namespace (TestMain).
	peerNamespace = "sdkplugin-peer"
)

// bindNexusCallerWorkflow calls the synchronous "echo" and the workflow-run "run" operations of endpoint with in, and
// returns both results.
func bindNexusCallerWorkflow(ctx workflow.Context, endpoint, in string) ([]string, error) {
	nc := workflow.NewNexusClient(endpoint, "bindsvc")
	opts := workflow.NexusOperationOptions{ScheduleToCloseTimeout: 30 * time.Second}
	var out []string
	for _, op := range []string{"echo", "run"} {
		var res string
		if err := nc.ExecuteOperation(ctx, op, in, opts).Get(ctx, &res); err != nil {
			return nil, err
		}
		out = append(out, res)
	}
	return out, nil
}

// startNexusHandler runs the "bindsvc" Nexus service on queue with c: "echo" answers synchronously, "run" starts
// bindEchoWorkflow (an asynchronous operation, whose result the handler's workflow seals).
func startNexusHandler(t *testing.T, c client.Client, queue string) {
	t.Helper()
	svc := nexus.NewService("bindsvc")
	echo := nexus.NewSyncOperation("echo", func(_ context.Context, in string, _ nexus.StartOperationOptions) (string, error) {
		return "echo:" + in, nil
	})
	run := temporalnexus.MustNewWorkflowRunOperationWithOptions(temporalnexus.WorkflowRunOperationOptions[string, string]{
		Name: "run",
		Handler: func(ctx context.Context, in string, o nexus.StartOperationOptions) (temporalnexus.WorkflowHandle[string], error) {
			return temporalnexus.ExecuteUntypedWorkflow[string](ctx, o, client.StartWorkflowOptions{ID: "bindnexus-" + o.RequestID, TaskQueue: queue}, bindEchoName, "run:"+in)
		},
	})
	if err := svc.Register(echo, run); err != nil {
		t.Fatal(err)
	}
	w := worker.New(c, queue, worker.Options{})
	w.RegisterNexusService(svc)
	w.RegisterWorkflowWithOptions(bindEchoWorkflow, workflow.RegisterOptions{Name: bindEchoName})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
}

// TestInteropNexusBinding: a Nexus caller and handler in one namespace, each a plugin worker or a plain worker behind
// the proxy, and plugins on both sides across namespaces (WithNexusPeers). The handler reads the input sealed for its operation, the caller reads the synchronous result (the
// plugin's interceptor re-seals it as a result) and the asynchronous one (sealed by the handler's workflow).
func TestInteropNexusBinding(t *testing.T) {
	f := newFleet(t)
	ops := operatorservice.NewOperatorServiceClient(testenv.DialInsecure(t, f.frontAddr))
	for _, tc := range []struct {
		caller, handler bool
		handlerNS       string
	}{{true, true, "default"}, {false, true, "default"}, {true, false, "default"}, {true, true, peerNamespace}} {
		t.Run("caller "+sideName(tc.caller)+", handler "+sideName(tc.handler)+" in "+tc.handlerNS, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			hc, _ := f.side(tc.handler)
			cc, _ := f.side(tc.caller)
			if tc.handlerNS != "default" {
				// Plugins on both sides, each listing the other's namespace as a Nexus peer.
				cc = dial(t, f.frontAddr, newPlugin(t, f.kr, sdkplugin.WithNexusPeers(tc.handlerNS)))
				var err error
				hc, err = client.Dial(client.Options{HostPort: f.frontAddr, Namespace: tc.handlerNS, Logger: quietSDKLogger,
					Plugins: []client.Plugin{newPlugin(t, f.kr, sdkplugin.WithNexusPeers("default"))}})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(hc.Close)
			}
			handlerQ, callerQ, endpoint := uniqueName(t, "nexus-h"), uniqueName(t, "nexus-c"), "bind-ep-"+strings.ToLower(newMarker(t)[len("BLINDFOLD-INTEROP-"):])
			created, err := ops.CreateNexusEndpoint(ctx, &operatorservice.CreateNexusEndpointRequest{Spec: &nexuspb.EndpointSpec{
				Name: endpoint, Target: &nexuspb.EndpointTarget{Variant: &nexuspb.EndpointTarget_Worker_{Worker: &nexuspb.EndpointTarget_Worker{
					Namespace: tc.handlerNS, TaskQueue: handlerQ}}},
			}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				_, _ = ops.DeleteNexusEndpoint(context.Background(), &operatorservice.DeleteNexusEndpointRequest{
					Id: created.GetEndpoint().GetId(), Version: created.GetEndpoint().GetVersion()})
			})
			startNexusHandler(t, hc, handlerQ)
			w := worker.New(cc, callerQ, worker.Options{})
			w.RegisterWorkflowWithOptions(bindNexusCallerWorkflow, workflow.RegisterOptions{Name: bindNexusCallerName})
			if err := w.Start(); err != nil {
				t.Fatal(err)
			}
			defer w.Stop()
			marker := newMarker(t)
			run, err := cc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: callerQ, TaskQueue: callerQ}, bindNexusCallerName, endpoint, marker)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			if err := run.Get(ctx, &got); err != nil {
				t.Fatalf("caller: %v", err)
			}
			if want := []string{"echo:" + marker, "run:" + marker}; !slices.Equal(got, want) {
				t.Fatalf("caller got %q, want %q", got, want)
			}
			for _, ev := range rawHistory(t, f.raw, callerQ).GetEvents() {
				var p *commonpb.Payload
				var want codec.BindingKind
				switch {
				case ev.GetNexusOperationScheduledEventAttributes() != nil:
					p, want = ev.GetNexusOperationScheduledEventAttributes().GetInput(), codec.BindNexus
				case ev.GetNexusOperationCompletedEventAttributes() != nil:
					p = ev.GetNexusOperationCompletedEventAttributes().GetResult()
					want = codec.BindNexus
					if b, _ := codec.BindingOf(p); b.Kind == codec.BindWorkflow {
						want = codec.BindWorkflow // the workflow-run operation's result
					}
				default:
					continue
				}
				if b, ok := codec.BindingOf(p); !ok || b.Kind != want || b.Kind == codec.BindNexus && ev.GetNexusOperationCompletedEventAttributes() != nil && b.ID != "" {
					t.Errorf("%v: a payload bound to %v (an envelope: %v)", ev.GetEventType(), b, ok)
				}
			}
		})
	}
}
