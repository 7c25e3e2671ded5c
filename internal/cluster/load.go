package cluster

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	grpcxds "google.golang.org/grpc/xds"

	"github.com/blindfold-dev/blindfold/proxy/xds"
)

// LoadOptions sizes a Run.
type LoadOptions struct {
	// Workflows is the size of the run under faults.
	Workflows int
	// MeasureWorkflows is the size of each arm of the fault-free comparison (through the replicas, straight to the
	// frontend); 0 means Workflows/2.
	MeasureWorkflows int
	// Concurrency is the number of workflows in flight at once; 0 means 32.
	Concurrency int
	// Timer is the durable timer each workflow of the fault run sleeps on; 0 means 2 s.
	Timer time.Duration
	// VaultOutage is how long Vault is stopped; 0 means 20 s. It must stay well within the data-key cache TTL (10 min
	// by default): cached keys keep the replicas serving, which is what the outage proves.
	VaultOutage time.Duration
	// Progress receives one line per phase and fault; nil discards them.
	Progress io.Writer
}

func (o LoadOptions) withDefaults() LoadOptions {
	if o.MeasureWorkflows == 0 {
		o.MeasureWorkflows = max(1, o.Workflows/2)
	}
	if o.Concurrency == 0 {
		o.Concurrency = 32
	}
	if o.Timer == 0 {
		o.Timer = 2 * time.Second
	}
	if o.VaultOutage == 0 {
		o.VaultOutage = 20 * time.Second
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	return o
}

// Arm is one side of the fault-free comparison.
type Arm struct {
	Workflows  int
	Elapsed    time.Duration
	Throughput float64 // workflows per second
	P50, P99   time.Duration
}

// Fault is one fault injected during the run.
type Fault struct {
	Name string
	// AtStarted is how many workflows had been started when it began.
	AtStarted int
	// Took is how long it lasted until the part was back.
	Took time.Duration
	// CompletedDuring is how many workflows completed while it lasted.
	CompletedDuring int
}

// Report is what Run measured and checked.
type Report struct {
	Workflows        int
	Elapsed          time.Duration
	Faults           []Fault
	ActivityRuns     int64 // activity executions, retries included (at-least-once: may exceed Workflows)
	VisibleRuns      int   // executions of the run's task queue the server lists (must equal Workflows)
	ViaReplicas      Arm
	Direct           Arm
	ReplicaCalls     []int64 // WorkflowService calls each replica served during the comparison
	DumpBytes        int
	SecretHits       int // occurrences of the marker every proxied workflow carried, raw or hex (must be 0)
	ControlHits      int // occurrences of the direct workflows' marker (must be > 0)
	VaultOutage      time.Duration
	Concurrency      int
	TimerPerWorkflow time.Duration
}

// Shares are ReplicaCalls as fractions of their sum.
func (r *Report) Shares() []float64 {
	var sum int64
	for _, c := range r.ReplicaCalls {
		sum += c
	}
	out := make([]float64, len(r.ReplicaCalls))
	for i, c := range r.ReplicaCalls {
		if sum > 0 {
			out[i] = float64(c) / float64(sum)
		}
	}
	return out
}

// String is the report as a few readable lines.
func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "fault run: %d workflows (activity + signal + %s timer each, %d in flight) in %s; %d activity executions; %d runs listed by the server\n",
		r.Workflows, r.TimerPerWorkflow, r.Concurrency, r.Elapsed.Round(time.Millisecond), r.ActivityRuns, r.VisibleRuns)
	for _, f := range r.Faults {
		fmt.Fprintf(&b, "  fault %-40s at %4d started, back after %6s, %4d workflows completed meanwhile\n",
			f.Name, f.AtStarted, f.Took.Round(time.Millisecond), f.CompletedDuring)
	}
	arm := func(name string, a Arm) {
		fmt.Fprintf(&b, "%-26s %5d workflows in %8s: %7.1f wf/s, round trip p50 %6.1f ms, p99 %6.1f ms\n", name, a.Workflows,
			a.Elapsed.Round(time.Millisecond), a.Throughput, ms(a.P50), ms(a.P99))
	}
	arm("via 3 replicas (xds):", r.ViaReplicas)
	arm("straight to the frontend:", r.Direct)
	if r.Direct.Throughput > 0 {
		fmt.Fprintf(&b, "  ratio: throughput %.2f×, p50 %.2f×, p99 %.2f×\n", r.ViaReplicas.Throughput/r.Direct.Throughput,
			ratio(r.ViaReplicas.P50, r.Direct.P50), ratio(r.ViaReplicas.P99, r.Direct.P99))
	}
	b.WriteString("replica shares of WorkflowService calls:")
	for i, s := range r.Shares() {
		fmt.Fprintf(&b, " proxy-%d %.1f%% (%d)", i, 100*s, r.ReplicaCalls[i])
	}
	fmt.Fprintf(&b, "\npg_dump of both databases: %d bytes; secret marker hits %d (must be 0); control marker hits %d (must be > 0)\n",
		r.DumpBytes, r.SecretHits, r.ControlHits)
	return b.String()
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return math.NaN()
	}
	return float64(a) / float64(b)
}

// Input is a cluster workflow's argument.
type Input struct {
	Secret string
	Timer  time.Duration
}

const (
	workflowName = "ClusterWorkflow"
	activityName = "ClusterActivity"
	signalName   = "proceed"
)

// clusterWorkflow runs one activity, waits for one signal, sleeps on a durable timer and returns what it got: the
// result proves each step saw the right (decrypted) values.
func clusterWorkflow(ctx workflow.Context, in Input) (string, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 200 * time.Millisecond, MaximumInterval: 2 * time.Second},
	})
	var act string
	if err := workflow.ExecuteActivity(ctx, activityName, in.Secret).Get(ctx, &act); err != nil {
		return "", err
	}
	var sig string
	workflow.GetSignalChannel(ctx, signalName).Receive(ctx, &sig)
	if in.Timer > 0 {
		if err := workflow.Sleep(ctx, in.Timer); err != nil {
			return "", err
		}
	}
	return act + "|" + sig, nil
}

func expected(secret string) string { return "act:" + secret + "|sig:" + secret }

// Run measures the fault-free comparison (replicas vs frontend), then runs o.Workflows workflows through the
// replicas while it kills a replica with SIGKILL and restarts it, restarts the Temporal server and stops Vault for
// o.VaultOutage; then it checks every result, that the server lists each workflow exactly once, and that pg_dump of
// the databases holds no trace of what the workflows carried (while a control marker sent straight to the frontend
// is found, so the scan is proven to work).
func Run(ctx context.Context, c *Cluster, o LoadOptions) (*Report, error) {
	o = o.withDefaults()
	rep := &Report{Workflows: o.Workflows, VaultOutage: o.VaultOutage, Concurrency: o.Concurrency, TimerPerWorkflow: o.Timer}
	progress := func(format string, args ...any) {
		fmt.Fprintf(o.Progress, "%s "+format+"\n", append([]any{time.Now().UTC().Format("15:04:05.000")}, args...)...)
	}
	token := make([]byte, 8)
	_, _ = rand.Read(token)
	tag := hex.EncodeToString(token)
	secret := "bfcluster-secret-" + tag
	control := "bfcluster-control-" + tag

	sdkLog, err := os.OpenFile(filepath.Join(c.WorkDir(), "sdk.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open sdk log: %w", err)
	}
	defer func() { _ = sdkLog.Close() }()
	// The SDK logs every failed poll while a part is down: expected here, kept out of the test output.
	logger := sdklog.NewStructuredLogger(slog.New(slog.NewTextHandler(sdkLog, &slog.HandlerOptions{Level: slog.LevelWarn})))

	var activityRuns atomic.Int64
	runActivity := func(ctx context.Context, s string) (string, error) {
		activityRuns.Add(1)
		return "act:" + s, nil
	}
	newWorker := func(cl client.Client, queue string) worker.Worker {
		w := worker.New(cl, queue, worker.Options{})
		w.RegisterWorkflowWithOptions(clusterWorkflow, workflow.RegisterOptions{Name: workflowName})
		w.RegisterActivityWithOptions(runActivity, activity.RegisterOptions{Name: activityName})
		return w
	}

	// Clients through the replicas: proxyless gRPC, endpoints from blindfold xds.
	var viaClients []client.Client
	defer func() {
		for _, cl := range viaClients {
			cl.Close()
		}
	}()
	for i := range 3 {
		cl, err := xdsClient(c.XDSAddr(), fmt.Sprintf("cluster-client-%d", i), logger)
		if err != nil {
			return nil, err
		}
		viaClients = append(viaClients, cl)
	}
	direct, err := client.Dial(client.Options{HostPort: c.FrontendAddr(), Namespace: "default", Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("client straight to the frontend: %w", err)
	}
	defer direct.Close()

	queueVia, queueDirect, queueFault := "cluster-via-"+tag, "cluster-direct-"+tag, "cluster-fault-"+tag
	var workers []worker.Worker
	defer func() {
		for _, w := range workers {
			w.Stop()
		}
	}()
	for _, w := range []worker.Worker{newWorker(viaClients[1], queueVia), newWorker(direct, queueDirect),
		newWorker(viaClients[1], queueFault), newWorker(viaClients[2], queueFault)} {
		if err := w.Start(); err != nil {
			return nil, fmt.Errorf("start worker: %w", err)
		}
		workers = append(workers, w)
	}

	// 1. The comparison, without faults: the same load through the replicas and straight to the frontend, in
	// alternating rounds so that both arms see the same machine load. No timer: the round trip is then the system's,
	// not the timer's. The direct arm carries the control marker: what it stores is plaintext, and the dump scan must
	// find it.
	progress("comparison: %d workflows per arm, %d in flight, %d alternating rounds", o.MeasureWorkflows, o.Concurrency, comparisonRounds)
	before, err := scrapeCalls(ctx, c.MetricsURLs())
	if err != nil {
		return nil, err
	}
	var via, dir armAcc
	for r := range comparisonRounds {
		n := o.MeasureWorkflows / comparisonRounds
		if r < o.MeasureWorkflows%comparisonRounds {
			n++
		}
		arms := []bool{true, false}
		if r%2 == 1 {
			arms = []bool{false, true}
		}
		for _, viaReplicas := range arms {
			cl, queue, prefix, marker, acc := direct, queueDirect, "cluster-direct-"+tag+"-", control, &dir
			if viaReplicas {
				cl, queue, prefix, marker, acc = viaClients[0], queueVia, "cluster-via-"+tag+"-", secret, &via
			}
			if err := acc.run(ctx, cl, queue, fmt.Sprintf("%s%d-", prefix, r), marker, n, o.Concurrency); err != nil {
				return rep, fmt.Errorf("comparison (via replicas %v): %w", viaReplicas, err)
			}
		}
	}
	after, err := scrapeCalls(ctx, c.MetricsURLs())
	if err != nil {
		return nil, err
	}
	for i := range after {
		rep.ReplicaCalls = append(rep.ReplicaCalls, after[i]-before[i])
	}
	rep.ViaReplicas, rep.Direct = via.arm(), dir.arm()
	progress("comparison done: via replicas %.1f wf/s, direct %.1f wf/s", rep.ViaReplicas.Throughput, rep.Direct.Throughput)

	// 2. The run under faults.
	var started, completed atomic.Int64
	faultsDone := make(chan error, 1)
	faultCtx, cancelFaults := context.WithCancel(ctx)
	defer cancelFaults()
	go func() {
		faultsDone <- injectFaults(faultCtx, c, o, &started, &completed, rep, progress)
	}()
	progress("fault run: %d workflows, %d in flight", o.Workflows, o.Concurrency)
	runs0 := activityRuns.Load()
	t0 := time.Now()
	prefix := "cluster-fault-" + tag + "-"
	runErr := parallel(ctx, o.Workflows, o.Concurrency, func(i int) error {
		s := secret + "-" + strconv.Itoa(i)
		_, err := oneWorkflow(ctx, viaClients[0], queueFault, prefix+strconv.Itoa(i), Input{Secret: s, Timer: o.Timer}, &started)
		if err == nil {
			completed.Add(1)
		}
		return err
	})
	rep.Elapsed = time.Since(t0)
	// Every fault must have happened, and every part be back, before the run counts.
	faultErr := <-faultsDone
	rep.ActivityRuns = activityRuns.Load() - runs0
	if err := errors.Join(runErr, faultErr); err != nil {
		return rep, err
	}
	progress("fault run done in %s", rep.Elapsed.Round(time.Millisecond))

	// 3. None lost, none twice: the server's own list of the queue's executions.
	if rep.VisibleRuns, err = checkListed(ctx, c.FrontendAddr(), queueFault, prefix, o.Workflows); err != nil {
		return rep, err
	}

	// 4. What the database holds.
	dump, err := c.Dump(ctx)
	if err != nil {
		return rep, err
	}
	rep.DumpBytes = len(dump)
	rep.SecretHits = countMarker(dump, secret)
	rep.ControlHits = countMarker(dump, control)
	progress("pg_dump: %d bytes, secret hits %d, control hits %d", rep.DumpBytes, rep.SecretHits, rep.ControlHits)
	if rep.ControlHits == 0 {
		return rep, errors.New("the dump scan did not find the control marker stored in plaintext: the scan proves nothing")
	}
	if rep.SecretHits != 0 {
		return rep, fmt.Errorf("the database holds the workflows' plaintext marker %d times", rep.SecretHits)
	}
	return rep, nil
}

// injectFaults waits for the run to reach each fault's starting point and injects it, one after another: a replica
// SIGKILLed and restarted, the Temporal server restarted, Vault stopped for o.VaultOutage.
func injectFaults(ctx context.Context, c *Cluster, o LoadOptions, started, completed *atomic.Int64, rep *Report, progress func(string, ...any)) error {
	type step struct {
		name string
		at   float64
		do   func(ctx context.Context) error
	}
	steps := []step{
		{"SIGKILL proxy-1, restart it", 0.10, func(ctx context.Context) error {
			if err := c.Proxies[1].Kill(); err != nil {
				return err
			}
			return c.StartProxy(ctx, 1)
		}},
		{"restart the Temporal server process", 0.25, c.RestartServer},
		// Early enough that workflows are still starting when Vault is back: recovery is part of what is checked.
		{fmt.Sprintf("stop Vault for %s", o.VaultOutage), 0.40, func(ctx context.Context) error {
			if err := c.Vault.Stop(); err != nil {
				return err
			}
			select {
			case <-time.After(o.VaultOutage):
			case <-ctx.Done():
				return ctx.Err()
			}
			return c.Vault.Restart()
		}},
	}
	for _, s := range steps {
		threshold := int64(math.Ceil(s.at * float64(o.Workflows)))
		for started.Load() < threshold {
			select {
			case <-ctx.Done():
				return fmt.Errorf("before fault %q: %w", s.name, ctx.Err())
			case <-time.After(20 * time.Millisecond):
			}
		}
		f := Fault{Name: s.name, AtStarted: int(started.Load())}
		progress("fault: %s (%d started, %d completed)", s.name, f.AtStarted, completed.Load())
		c0, t := completed.Load(), time.Now()
		sctx, cancel := context.WithTimeout(ctx, 2*time.Minute+o.VaultOutage)
		err := s.do(sctx)
		cancel()
		f.Took, f.CompletedDuring = time.Since(t), int(completed.Load()-c0)
		rep.Faults = append(rep.Faults, f)
		if err != nil {
			return fmt.Errorf("fault %q: %w", s.name, err)
		}
		progress("fault over: %s after %s, %d completed meanwhile", s.name, f.Took.Round(time.Millisecond), f.CompletedDuring)
	}
	return nil
}

// comparisonRounds is how many alternating rounds the comparison is split into.
const comparisonRounds = 4

// armAcc accumulates one arm's rounds.
type armAcc struct {
	lat     []time.Duration
	elapsed time.Duration
}

// run runs n workflows without timer at conc in flight, recording each round trip (start to result, signal
// included) and the round's wall time.
func (a *armAcc) run(ctx context.Context, cl client.Client, queue, prefix, marker string, n, conc int) error {
	var mu sync.Mutex
	var started atomic.Int64
	t0 := time.Now()
	err := parallel(ctx, n, conc, func(i int) error {
		d, err := oneWorkflow(ctx, cl, queue, prefix+strconv.Itoa(i), Input{Secret: marker + "-" + strconv.Itoa(i)}, &started)
		if err == nil {
			mu.Lock()
			a.lat = append(a.lat, d)
			mu.Unlock()
		}
		return err
	})
	a.elapsed += time.Since(t0)
	return err
}

func (a *armAcc) arm() Arm {
	out := Arm{Workflows: len(a.lat), Elapsed: a.elapsed, P50: percentile(a.lat, 50), P99: percentile(a.lat, 99)}
	if a.elapsed > 0 {
		out.Throughput = float64(len(a.lat)) / a.elapsed.Seconds()
	}
	return out
}

// retryEvery is the pause between attempts of a call that failed while a part was down.
const retryEvery = 250 * time.Millisecond

// workflowTimeout bounds one workflow: it must outlast every fault.
const workflowTimeout = 5 * time.Minute

// oneWorkflow starts a workflow, signals it and waits for its result, retrying each call while parts are down (the
// SDK retries transient errors itself, but within limits shorter than a server restart). A start that finds the
// workflow already started (an earlier attempt went through) takes that run: the id reuse policy guarantees one
// execution per id.
func oneWorkflow(ctx context.Context, cl client.Client, queue, id string, in Input, started *atomic.Int64) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, workflowTimeout)
	defer cancel()
	t0 := time.Now()
	opts := client.StartWorkflowOptions{
		ID: id, TaskQueue: queue,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
	}
	if err := retry(ctx, "start "+id, func(ctx context.Context) error {
		_, err := cl.ExecuteWorkflow(ctx, opts, workflowName, in)
		return err
	}); err != nil {
		return 0, err
	}
	started.Add(1)
	if err := retry(ctx, "signal "+id, func(ctx context.Context) error {
		return cl.SignalWorkflow(ctx, id, "", signalName, "sig:"+in.Secret)
	}); err != nil {
		return 0, err
	}
	var out string
	if err := retry(ctx, "result of "+id, func(ctx context.Context) error {
		return cl.GetWorkflow(ctx, id, "").Get(ctx, &out)
	}); err != nil {
		return 0, err
	}
	if out != expected(in.Secret) {
		return 0, fmt.Errorf("result of %s: got %q, want %q", id, out, expected(in.Secret))
	}
	return time.Since(t0), nil
}

// retry calls f until it succeeds, fails for good, or ctx ends. Failures of the workflow itself (it failed, was
// terminated, or does not exist) are final; everything else is taken for a part being down.
func retry(ctx context.Context, what string, f func(context.Context) error) error {
	var last error
	for {
		cctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		err := f(cctx)
		cancel()
		if err == nil {
			return nil
		}
		last = err
		var wfErr *temporal.WorkflowExecutionError
		var notFound *serviceerror.NotFound
		var appErr *temporal.ApplicationError
		if errors.As(err, &wfErr) || errors.As(err, &notFound) || errors.As(err, &appErr) {
			return fmt.Errorf("%s: %w", what, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last error: %v)", what, ctx.Err(), last)
		case <-time.After(retryEvery):
		}
	}
}

// checkListed waits until the server's visibility lists n closed executions on queue, each completed, each id once
// and each of the run's ids present.
func checkListed(ctx context.Context, frontend, queue, prefix string, n int) (int, error) {
	conn, err := grpc.NewClient(frontend, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return 0, err
	}
	defer func() { _ = conn.Close() }()
	wf := workflowservice.NewWorkflowServiceClient(conn)
	deadline := time.Now().Add(time.Minute)
	for {
		seen := map[string]int{}
		notDone := 0
		var token []byte
		var listErr error
		for {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			resp, err := wf.ListWorkflowExecutions(cctx, &workflowservice.ListWorkflowExecutionsRequest{
				Namespace: "default", PageSize: 1000, NextPageToken: token, Query: fmt.Sprintf("TaskQueue = %q", queue),
			})
			cancel()
			if err != nil {
				listErr = err
				break
			}
			for _, e := range resp.GetExecutions() {
				seen[e.GetExecution().GetWorkflowId()]++
				if e.GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
					notDone++
				}
			}
			if token = resp.GetNextPageToken(); len(token) == 0 {
				break
			}
		}
		total := 0
		var twice []string
		for id, k := range seen {
			total += k
			if k > 1 {
				twice = append(twice, id)
			}
		}
		if len(twice) > 0 {
			slices.Sort(twice)
			return total, fmt.Errorf("workflows executed more than once: %v", twice)
		}
		if listErr == nil && total == n && notDone == 0 {
			for i := range n {
				if seen[prefix+strconv.Itoa(i)] != 1 {
					return total, fmt.Errorf("workflow %s%d is not listed", prefix, i)
				}
			}
			return total, nil
		}
		if total > n {
			return total, fmt.Errorf("the server lists %d executions on %s, want %d", total, queue, n)
		}
		if time.Now().After(deadline) {
			return total, fmt.Errorf("the server lists %d executions on %s (%d not completed), want %d completed (list error: %v)",
				total, queue, notDone, n, listErr)
		}
		select {
		case <-ctx.Done():
			return total, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// countMarker counts a marker in a pg_dump, both as text (text and jsonb columns) and as lowercase hex: pg_dump
// writes bytea columns — where the server keeps history events, payloads included — as \x followed by hex.
func countMarker(dump []byte, marker string) int {
	return bytes.Count(dump, []byte(marker)) + bytes.Count(dump, []byte(hex.EncodeToString([]byte(marker))))
}

// xdsClient is an SDK client dialing xds:///ServiceName with a bootstrap naming the xDS server, without touching the
// process environment.
func xdsClient(xdsAddr, node string, logger sdklog.Logger) (client.Client, error) {
	bs, err := xds.Bootstrap(xds.BootstrapConfig{ServerURI: xdsAddr, NodeID: node})
	if err != nil {
		return nil, err
	}
	res, err := grpcxds.NewXDSResolverWithConfigForTesting(bs)
	if err != nil {
		return nil, fmt.Errorf("xds resolver: %w", err)
	}
	cl, err := client.Dial(client.Options{
		HostPort: "xds:///" + ServiceName, Namespace: "default", Logger: logger,
		ConnectionOptions: client.ConnectionOptions{DialOptions: []grpc.DialOption{grpc.WithResolvers(res)}},
	})
	if err != nil {
		return nil, fmt.Errorf("sdk client via xds: %w", err)
	}
	return cl, nil
}

// scrapeCalls sums blindfold_proxy_rpcs_total of WorkflowService on each replica's /metrics.
func scrapeCalls(ctx context.Context, urls []string) ([]int64, error) {
	out := make([]int64, len(urls))
	for i, u := range urls {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, fmt.Errorf("scrape %s: %w", u, err)
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if !strings.HasPrefix(line, "blindfold_proxy_rpcs_total{") || !strings.Contains(line, "WorkflowService") {
				continue
			}
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err == nil {
				out[i] += int64(v)
			}
		}
		_ = resp.Body.Close()
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("scrape %s: %w", u, err)
		}
	}
	return out, nil
}

// parallel runs f(0..n-1) on conc goroutines and returns the first error; after an error no new index starts.
func parallel(ctx context.Context, n, conc int, f func(i int) error) error {
	var (
		next     atomic.Int64
		failed   atomic.Bool
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for range conc {
		wg.Go(func() {
			for ctx.Err() == nil && !failed.Load() {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					failed.Store(true)
				}
			}
		})
	}
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return firstErr
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}
