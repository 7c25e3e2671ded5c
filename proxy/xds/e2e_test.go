package xds_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	"google.golang.org/grpc/status"
	grpcxds "google.golang.org/grpc/xds"

	"github.com/blindfold-dev/blindfold/internal/devstack/devstacktest"
	"github.com/blindfold-dev/blindfold/internal/gateway"
	"github.com/blindfold-dev/blindfold/internal/testenv"
	"github.com/blindfold-dev/blindfold/internal/testenv/gatewayenv"
	"github.com/blindfold-dev/blindfold/proxy/xds"
)

func TestMain(m *testing.M) { devstacktest.Main(m) }

const serviceName = "blindfold-proxy"

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// replica is one proxy replica on loopback, counting the calls it serves.
type replica struct {
	addr  string
	g     *gateway.Gateway
	calls atomic.Int64
}

// startReplica starts a plain (not xDS-enabled) gateway replica in front of upstream, with the keys in keyDir
// (replicas sharing a directory share keys, as a fleet on one volume does).
func startReplica(t *testing.T, upstream, keyDir string) *replica {
	t.Helper()
	r := &replica{}
	count := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if !strings.HasPrefix(info.FullMethod, "/grpc.health.") {
			r.calls.Add(1)
		}
		return h(ctx, req)
	}
	r.g = gatewayenv.Start(t, gateway.Config{
		Keys:   gatewayenv.LocalKeys(keyDir),
		Proxy:  gateway.ProxyConfig{Upstream: upstream, UnaryInterceptors: []grpc.UnaryServerInterceptor{count}},
		Logger: quietLogger(),
	})
	r.addr = r.g.Addr()
	return r
}

// startControlPlane starts an xDS server on loopback with fast health checks.
func startControlPlane(t *testing.T) (*xds.Server, string) {
	t.Helper()
	return startControlPlaneWith(t, xds.ResourceConfig{ServiceName: serviceName})
}

func startControlPlaneWith(t *testing.T, rc xds.ResourceConfig) (*xds.Server, string) {
	t.Helper()
	s, err := xds.New(xds.Config{
		Resources:          rc,
		HealthInterval:     100 * time.Millisecond,
		HealthTimeout:      time.Second,
		UnhealthyThreshold: 1,
		Logger:             quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = s.Serve(lis) }()
	go func() { defer wg.Done(); _ = s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		s.Stop()
		wg.Wait()
	})
	return s, lis.Addr().String()
}

// xdsResolver returns a resolver for xds:/// targets whose bootstrap points at the control plane, without touching
// the process environment.
func xdsResolver(t *testing.T, xdsAddr, node string) grpc.DialOption {
	t.Helper()
	bs, err := xds.Bootstrap(xds.BootstrapConfig{ServerURI: xdsAddr, NodeID: node})
	if err != nil {
		t.Fatal(err)
	}
	b, err := grpcxds.NewXDSResolverWithConfigForTesting(bs)
	if err != nil {
		t.Fatal(err)
	}
	return grpc.WithResolvers(b)
}

func healthyCount(s *xds.Server) int {
	n := 0
	for _, r := range s.Replicas() {
		if r.Healthy {
			n++
		}
	}
	return n
}

// TestFleet runs three replicas behind the control plane: calls from a proxyless xDS client spread over all of them,
// and workflows run by an SDK client and worker dialing xds:/// all complete while one replica is stopped mid-run.
func TestFleet(t *testing.T) {
	stack := devstacktest.Shared(t)
	keyDir := t.TempDir()
	cp, xdsAddr := startControlPlane(t)
	var replicas []*replica
	var addrs []string
	for range 3 {
		r := startReplica(t, stack.FrontendAddr(), keyDir)
		replicas = append(replicas, r)
		addrs = append(addrs, r.addr)
	}
	if err := cp.SetReplicas(xds.SourceStatic, addrs); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "three healthy replicas", func() bool { return healthyCount(cp) == 3 })

	t.Run("calls spread across replicas", func(t *testing.T) {
		conn, err := grpc.NewClient("xds:///"+serviceName, xdsResolver(t, xdsAddr, "spread-client"),
			grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		wf := workflowservice.NewWorkflowServiceClient(conn)
		before := make([]int64, len(replicas))
		for i, r := range replicas {
			before[i] = r.calls.Load()
		}
		const calls = 90
		for range calls {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := wf.GetSystemInfo(ctx, &workflowservice.GetSystemInfoRequest{}, grpc.WaitForReady(true))
			cancel()
			if err != nil {
				t.Fatalf("GetSystemInfo via xds: %v", err)
			}
		}
		for i, r := range replicas {
			got := r.calls.Load() - before[i]
			t.Logf("replica %d (%s) served %d of %d calls", i, r.addr, got, calls)
			if got < calls/6 {
				t.Errorf("replica %d served %d of %d calls; round robin should give each about a third", i, got, calls)
			}
		}
	})

	t.Run("stopping a replica loses no workflow", func(t *testing.T) {
		dial := xdsResolver(t, xdsAddr, "sdk-client")
		cl, err := client.Dial(client.Options{
			HostPort:          "xds:///" + serviceName,
			Namespace:         "default",
			Logger:            sdklog.NewStructuredLogger(quietLogger()),
			ConnectionOptions: client.ConnectionOptions{DialOptions: []grpc.DialOption{dial}},
		})
		if err != nil {
			t.Fatalf("sdk client via xds: %v", err)
		}
		defer cl.Close()

		var activities atomic.Int64
		queue := "xds-fleet-" + fmt.Sprint(time.Now().UnixNano())
		w := worker.New(cl, queue, worker.Options{})
		w.RegisterWorkflowWithOptions(stepsWorkflow, workflow.RegisterOptions{Name: "steps"})
		w.RegisterActivityWithOptions(func(ctx context.Context, wfID string, i int) (string, error) {
			activities.Add(1)
			return fmt.Sprintf("%s/%d", wfID, i), nil
		}, activity.RegisterOptions{Name: "step"})
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		defer w.Stop()

		const workflows, steps = 12, 5
		// Generous: under -race on a loaded machine a task matched to a poll the stop cut is only redelivered after
		// its timeout (10 s). The bound is a guard against hangs, not a performance check.
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		defer cancel()
		var runs []client.WorkflowRun
		for i := range workflows {
			run, err := cl.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: fmt.Sprintf("%s-%d", queue, i), TaskQueue: queue}, "steps", steps)
			if err != nil {
				t.Fatalf("start workflow %d: %v", i, err)
			}
			runs = append(runs, run)
		}

		// Stop one replica while the workflows are half-way.
		testenv.WaitFor(t, 2*time.Minute, "a quarter of the activities", func() bool { return activities.Load() >= workflows*steps/4 })
		victim := replicas[1]
		// Counted when the stop begins: the workflows keep running on the other replicas while it drains, so a count
		// taken after the drain says nothing about when the replica went away.
		stoppedAt := activities.Load()
		sctx, scancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		_ = victim.g.Stop(sctx) // cuts the worker's long polls on it; the SDK polls again elsewhere
		scancel()
		t.Logf("stopped replica %s after %d of %d activities", victim.addr, stoppedAt, workflows*steps)
		testenv.WaitFor(t, 10*time.Second, "the stopped replica leaves the endpoints", func() bool { return healthyCount(cp) == 2 })
		othersBefore := replicas[0].calls.Load() + replicas[2].calls.Load()

		for i, run := range runs {
			var out []string
			if err := run.Get(ctx, &out); err != nil {
				t.Fatalf("workflow %d: %v (%d of %d activities ran)", i, err, activities.Load(), workflows*steps)
			}
			if len(out) != steps || out[steps-1] != fmt.Sprintf("%s-%d/%d", queue, i, steps-1) {
				t.Fatalf("workflow %d returned %v", i, out)
			}
		}
		if stoppedAt >= workflows*steps {
			t.Errorf("every activity ran before the replica stopped; the test stopped it too late to prove anything")
		}
		if replicas[0].calls.Load()+replicas[2].calls.Load() == othersBefore {
			t.Errorf("no calls reached the remaining replicas after the stop")
		}
	})
}

func stepsWorkflow(ctx workflow.Context, steps int) ([]string, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 100 * time.Millisecond},
	})
	var out []string
	for i := range steps {
		var s string
		if err := workflow.ExecuteActivity(ctx, "step", workflow.GetInfo(ctx).WorkflowExecution.ID, i).Get(ctx, &s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// TestRBACPushedAtRunTime runs an xDS-enabled server in front of a replica: it registers itself through its bootstrap,
// receives its listener with RBAC from the control plane, and a deny rule pushed at run time turns an allowed method
// into PermissionDenied while other methods keep working.
//
// The proxy package does not yet let its gRPC server be replaced by an xDS-enabled one, so the xDS-enabled server
// here forwards raw frames to a plain replica; RBAC is enforced by grpc-go's xDS server exactly as it would be inside
// the proxy.
func TestRBACPushedAtRunTime(t *testing.T) {
	stack := devstacktest.Shared(t)
	cp, xdsAddr := startControlPlane(t)
	backend := startReplica(t, stack.FrontendAddr(), t.TempDir())

	front := startXDSFront(t, xds.BootstrapConfig{ServerURI: xdsAddr, NodeID: "replica-rbac"}, true, backend.addr)
	// It registered itself through its bootstrap's node metadata and passed its health check.
	testenv.WaitFor(t, 10*time.Second, "self-registered replica healthy", func() bool {
		for _, r := range cp.Replicas() {
			if r.Addr == front && r.Healthy {
				return true
			}
		}
		return false
	})

	conn, err := grpc.NewClient("passthrough:///"+front, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	wf := workflowservice.NewWorkflowServiceClient(conn)
	describe := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := wf.DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: "default"})
		return err
	}
	if err := describe(); err != nil {
		t.Fatalf("DescribeNamespace before the rule: %v", err)
	}

	rules, err := xds.ParseRBAC([]byte(`
rules:
  - name: no-describe
    action: deny
    principals: ["*"]
    methods: ["/temporal.api.workflowservice.v1.WorkflowService/DescribeNamespace"]
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := cp.SetRBAC(rules); err != nil {
		t.Fatal(err)
	}
	var last error
	testenv.WaitFor(t, 10*time.Second, "DescribeNamespace denied", func() bool {
		last = describe()
		return status.Code(last) == codes.PermissionDenied
	})
	t.Logf("after the rule: %v", last)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := wf.GetSystemInfo(ctx, &workflowservice.GetSystemInfoRequest{}); err != nil {
		t.Fatalf("GetSystemInfo, not covered by the rule: %v", err)
	}

	if err := cp.SetRBAC(xds.RBACConfig{}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "DescribeNamespace allowed again", func() bool { return describe() == nil })
}

// TestMTLSAndPrincipalsFromControlPlane: the control plane pushes mTLS to an xDS-enabled replica (certificates from
// the file-watcher provider its bootstrap declares) and an RBAC rule naming a client certificate's SAN: a caller
// without a certificate cannot connect, the worker's certificate may call WorkflowService but not OperatorService.
func TestMTLSAndPrincipalsFromControlPlane(t *testing.T) {
	stack := devstacktest.Shared(t)
	rules, err := xds.ParseRBAC([]byte(`
rules:
  - name: workers-no-operator
    action: deny
    principals: ["spiffe://blindfold.test/worker"]
    methods: ["/temporal.api.operatorservice.v1.OperatorService/"]
`))
	if err != nil {
		t.Fatal(err)
	}
	_, xdsAddr := startControlPlaneWith(t, xds.ResourceConfig{
		ServiceName: serviceName,
		RBAC:        rules,
		ServerTLS:   &xds.ServerTLS{CertProviderInstance: xds.CertProviderName, RequireClientCert: true},
	})
	backend := startReplica(t, stack.FrontendAddr(), t.TempDir())

	pki := testenv.NewPKI(t)
	certDir := t.TempDir()
	pki.Server(t, "blindfold test").Write(t, certDir, "cert.pem", "key.pem")
	pki.WriteCA(t, certDir, "ca.pem")
	creds, err := xdscreds.NewServerCredentials(xdscreds.ServerOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		t.Fatal(err)
	}
	front := startXDSFront(t, xds.BootstrapConfig{ServerURI: xdsAddr, NodeID: "replica-mtls", CertDir: certDir}, false, backend.addr, grpc.Creds(creds))

	call := func(tc *tls.Config, method string) error {
		var dc credentials.TransportCredentials = insecure.NewCredentials()
		if tc != nil {
			dc = credentials.NewTLS(tc)
		}
		conn, err := grpc.NewClient("passthrough:///"+front, grpc.WithTransportCredentials(dc))
		if err != nil {
			return err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if method == "operator" {
			_, err = operatorservice.NewOperatorServiceClient(conn).ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: "default"})
		} else {
			_, err = workflowservice.NewWorkflowServiceClient(conn).GetSystemInfo(ctx, &workflowservice.GetSystemInfoRequest{})
		}
		return err
	}
	worker := clientTLS(pki, pki.Client(t, "worker", "spiffe://blindfold.test/worker"))
	admin := clientTLS(pki, pki.Client(t, "admin", "spiffe://blindfold.test/admin"))
	if err := call(worker, "workflow"); err != nil {
		t.Fatalf("worker certificate, WorkflowService: %v", err)
	}
	if err := call(worker, "operator"); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("worker certificate, OperatorService: %v, want PermissionDenied", err)
	}
	if err := call(admin, "operator"); err != nil {
		t.Fatalf("admin certificate, OperatorService: %v", err)
	}
	if err := call(nil, "workflow"); status.Code(err) != codes.Unavailable {
		t.Fatalf("plaintext caller: %v, want Unavailable (handshake refused)", err)
	}
	noCert := clientTLS(pki, nil)
	if err := call(noCert, "workflow"); err == nil {
		t.Fatal("a caller without a client certificate was served")
	}
}

// clientTLS trusts the PKI and presents cert (none if nil), verifying the replica as 127.0.0.1.
func clientTLS(pki *testenv.PKI, cert *testenv.Cert) *tls.Config {
	tc := pki.ClientTLS(cert)
	tc.ServerName = "127.0.0.1"
	return tc
}

// startXDSFront serves an xDS-enabled gRPC server on loopback whose bootstrap is bc (advertising its own address
// when advertise is set), forwarding raw frames to backend, and waits until it serves. It returns its address.
func startXDSFront(t *testing.T, bc xds.BootstrapConfig, advertise bool, backend string, opts ...grpc.ServerOption) string {
	t.Helper()
	lis := testenv.Listen(t)
	if advertise {
		bc.AdvertiseAddr = lis.Addr().String()
	}
	bs, err := xds.Bootstrap(bc)
	if err != nil {
		t.Fatal(err)
	}
	fwdConn := testenv.DialInsecure(t, "passthrough:///"+backend)
	var serving atomic.Bool
	front, err := grpcxds.NewGRPCServer(append(opts,
		grpcxds.BootstrapContentsForTesting(bs),
		grpcxds.ServingModeCallback(func(_ net.Addr, a grpcxds.ServingModeChangeArgs) {
			serving.Store(a.Mode == connectivity.ServingModeServing)
		}),
		grpc.ForceServerCodec(testenv.RawCodec{}),
		grpc.UnknownServiceHandler(testenv.Forward(fwdConn, nil)),
	)...)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = front.Serve(lis) }()
	t.Cleanup(front.Stop)
	testenv.WaitFor(t, 10*time.Second, "the xds-enabled replica serves", serving.Load)
	return lis.Addr().String()
}
