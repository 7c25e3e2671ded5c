package cluster

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/blindfold-dev/blindfold/internal/vaultdevproc"
)

// EnvBinary names an environment variable holding a prebuilt blindfold binary (built without the nodev tag, so it
// has `blindfold dev`); when set, the harness uses it instead of compiling ./cmd/blindfold.
const EnvBinary = "BLINDFOLD_BIN"

// ServiceName is the xDS service the replicas are published under; clients dial "xds:///" + ServiceName.
const ServiceName = "blindfold-proxy"

// Database is the PostgreSQL database the Temporal server keeps its state in; its visibility records live in
// Database + devstack.VisibilitySuffix.
const Database = "temporal"

// VisibilityDatabase is the database of the visibility records.
const VisibilityDatabase = Database + "_visibility"

// Options configures a Cluster.
type Options struct {
	// Replicas is the number of proxy replicas; 0 means 3.
	Replicas int
	// WorkDir holds the logs, the key directory and Vault's storage; empty means a temporary directory that Stop
	// removes.
	WorkDir string
	// Progress receives a line per part started; nil discards them.
	Progress io.Writer
}

// Cluster is the production path on one machine, every part its own process: PostgreSQL, a Vault with Transit
// (vaultdev), the Temporal server on PostgreSQL (`blindfold dev --db … --headless`, used only for its server:
// its own proxy is not in the path), several `blindfold proxy` replicas sharing one key directory whose keysets
// Vault Transit wraps, and `blindfold xds` load-balancing proxyless gRPC clients over the replicas.
type Cluster struct {
	work      string
	ephemeral bool
	bin       string

	PG      *Postgres
	Vault   *vaultdevproc.Proc
	Server  *Proc
	Proxies []*Proc
	XDS     *Proc

	frontendPort int
	proxyPorts   []int
	metricsPorts []int
	xdsPort      int
}

// Start builds (or finds) the binaries and starts every part, waiting until each answers. On error whatever was
// started is stopped again.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	n := opts.Replicas
	if n == 0 {
		n = 3
	}
	c := &Cluster{work: opts.WorkDir}
	t0 := time.Now()
	step := func(what string) {
		if opts.Progress != nil {
			fmt.Fprintf(opts.Progress, "%s at +%s\n", what, time.Since(t0).Round(time.Millisecond))
		}
	}
	if c.work == "" {
		if c.work, err = os.MkdirTemp("", "blindfold-cluster-"); err != nil {
			return nil, fmt.Errorf("create work directory: %w", err)
		}
		c.ephemeral = true
	} else if err := os.MkdirAll(c.work, 0o700); err != nil {
		return nil, fmt.Errorf("create work directory: %w", err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.Stop())
		}
	}()
	if c.bin, err = BuildBlindfold(ctx); err != nil {
		return nil, err
	}
	vaultBin, err := vaultdevproc.BuildBinary(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("build vaultdev (or set %s): %w", vaultdevproc.EnvBinary, err)
	}

	step("binaries ready")
	if c.PG, err = StartPostgres(ctx); err != nil {
		return nil, err
	}
	step("postgresql up")
	// File storage, so the Transit keys survive the Vault outage the fault run causes.
	if c.Vault, err = vaultdevproc.Launch(ctx, vaultBin, vaultdevproc.Options{StorageDir: filepath.Join(c.work, "vault")}); err != nil {
		return nil, fmt.Errorf("start vaultdev: %w", err)
	}
	step("vault up")

	ports, err := freePorts(2 + 2*n)
	if err != nil {
		return nil, err
	}
	c.frontendPort, c.xdsPort = ports[0], ports[1]
	c.proxyPorts, c.metricsPorts = ports[2:2+n], ports[2+n:]

	c.Server = newProc("temporal", c.bin, filepath.Join(c.work, "temporal.log"), "dev",
		"--db", c.PG.URL(Database), "--headless", "--data-dir", filepath.Join(c.work, "dev"),
		"--frontend-port", strconv.Itoa(c.frontendPort), "--port", "0", "--codec-port", "0", "--metrics-port", "-1",
		"--log-level", "warn", "--server-log-level", "error", "--drain-timeout", "1s")
	if err := c.StartServer(ctx); err != nil {
		return nil, err
	}
	step("temporal server up (schema created)")

	// One keyset, created before the replicas start, so three of them do not race to create it on their first calls.
	keyDir := filepath.Join(c.work, "keys")
	if out, err := c.blindfold(ctx, append([]string{"keys", "init", "--scope", "default", "--key-dir", keyDir}, c.vaultFlags()...)...); err != nil {
		return nil, fmt.Errorf("blindfold keys init: %w\n%s", err, out)
	}
	for i := range n {
		p := newProc(fmt.Sprintf("proxy-%d", i), c.bin, filepath.Join(c.work, fmt.Sprintf("proxy-%d.log", i)),
			append([]string{"proxy", "--upstream", c.FrontendAddr(), "--listen", c.ProxyAddrs()[i],
				"--metrics-listen", loopback(c.metricsPorts[i]), "--key-dir", keyDir, "--log-level", "warn",
				"--shutdown-timeout", "2s"}, c.vaultFlags()...)...)
		p.env = []string{"VAULT_TOKEN=" + c.Vault.Token()}
		c.Proxies = append(c.Proxies, p)
		if err := c.StartProxy(ctx, i); err != nil {
			return nil, err
		}
	}
	step("replicas up")

	c.XDS = newProc("xds", c.bin, filepath.Join(c.work, "xds.log"), "xds",
		"--listen", c.XDSAddr(), "--replicas", strings.Join(c.ProxyAddrs(), ","), "--service", ServiceName,
		"--health-interval", "250ms", "--unhealthy-threshold", "1")
	if err := c.XDS.Start(); err != nil {
		return nil, err
	}
	if err := c.XDS.waitReady(ctx, "xds listening", func(ctx context.Context) error {
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", c.XDSAddr())
		if err == nil {
			_ = conn.Close()
		}
		return err
	}); err != nil {
		return nil, err
	}
	return c, nil
}

// vaultFlags are the flags of blindfold proxy and blindfold keys that make Vault Transit the KEK; the token goes in
// the environment, not on the command line.
func (c *Cluster) vaultFlags() []string {
	return []string{"--kek", "vault", "--vault-addr", c.Vault.Addr()}
}

// blindfold runs a short blindfold command to completion.
func (c *Cluster) blindfold(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = append(os.Environ(), "VAULT_TOKEN="+c.Vault.Token())
	return cmd.CombinedOutput()
}

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// FrontendAddr is the raw Temporal frontend: ciphertext only for what went through the proxies.
func (c *Cluster) FrontendAddr() string { return loopback(c.frontendPort) }

// XDSAddr is the xDS server's address.
func (c *Cluster) XDSAddr() string { return loopback(c.xdsPort) }

// ProxyAddrs are the replicas' gRPC addresses.
func (c *Cluster) ProxyAddrs() []string {
	out := make([]string, len(c.proxyPorts))
	for i, p := range c.proxyPorts {
		out[i] = loopback(p)
	}
	return out
}

// MetricsURLs are the replicas' /metrics URLs.
func (c *Cluster) MetricsURLs() []string {
	out := make([]string, len(c.metricsPorts))
	for i, p := range c.metricsPorts {
		out[i] = "http://" + loopback(p) + "/metrics"
	}
	return out
}

// StartServer starts the Temporal server process and waits until its frontend serves namespace default.
func (c *Cluster) StartServer(ctx context.Context) error {
	if err := c.Server.Start(); err != nil {
		return err
	}
	return c.Server.waitReady(ctx, "the frontend", func(ctx context.Context) error {
		return describeDefault(ctx, c.FrontendAddr())
	})
}

// RestartServer stops the Temporal server process (SIGTERM: a rolling restart of a deployment) and starts it again
// on the same frontend port.
func (c *Cluster) RestartServer(ctx context.Context) error {
	if err := c.Server.Stop(30 * time.Second); err != nil {
		return err
	}
	return c.StartServer(ctx)
}

// StartProxy starts replica i and waits until it reports SERVING on gRPC health.
func (c *Cluster) StartProxy(ctx context.Context, i int) error {
	p := c.Proxies[i]
	if err := p.Start(); err != nil {
		return err
	}
	return p.waitReady(ctx, "gRPC health SERVING", func(ctx context.Context) error {
		return healthServing(ctx, c.ProxyAddrs()[i])
	})
}

// DescribeDefault succeeds once the frontend at addr serves namespace "default".
func DescribeDefault(ctx context.Context, addr string) error { return describeDefault(ctx, addr) }

func describeDefault(ctx context.Context, addr string) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	_, err = workflowservice.NewWorkflowServiceClient(conn).DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: "default"})
	return err
}

func healthServing(ctx context.Context, addr string) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	r, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return err
	}
	if r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("health %s", r.GetStatus())
	}
	return nil
}

// Dump returns pg_dump of both of the server's databases, concatenated.
func (c *Cluster) Dump(ctx context.Context) ([]byte, error) {
	var all []byte
	for _, db := range []string{Database, VisibilityDatabase} {
		b, err := c.PG.Dump(ctx, db)
		if err != nil {
			return nil, err
		}
		all = append(all, b...)
	}
	return all, nil
}

// Ports lists every TCP port the cluster listens on.
func (c *Cluster) Ports() []int {
	ports := []int{c.frontendPort, c.xdsPort}
	ports = append(ports, c.proxyPorts...)
	ports = append(ports, c.metricsPorts...)
	if c.PG != nil {
		ports = append(ports, c.PG.Port())
	}
	return ports
}

// Leftovers reports what still runs or listens after Stop: any process the harness started that is alive, any
// cluster port that accepts connections. Empty means nothing was left behind.
func (c *Cluster) Leftovers() []string {
	var out []string
	for _, p := range c.procs() {
		for _, pid := range p.pidsStarted() {
			// A zombie would answer signal 0 too, but every Proc reaps its child (cmd.Wait), so an answer means alive.
			if syscall.Kill(pid, 0) == nil {
				out = append(out, fmt.Sprintf("%s (pid %d) still runs", p.Name(), pid))
			}
		}
	}
	if c.PG != nil && c.PG.Running() {
		out = append(out, "postgresql still runs")
	}
	if c.Vault != nil && c.Vault.Running() {
		out = append(out, "vaultdev still runs")
	}
	for _, port := range c.Ports() {
		if port == 0 {
			continue
		}
		if conn, err := net.DialTimeout("tcp", loopback(port), 200*time.Millisecond); err == nil {
			_ = conn.Close()
			out = append(out, fmt.Sprintf("port %d still accepts connections", port))
		}
	}
	if c.ephemeral {
		if _, err := os.Stat(c.work); err == nil {
			out = append(out, "work directory "+c.work+" still exists")
		}
	}
	return out
}

func (c *Cluster) procs() []*Proc {
	var ps []*Proc
	if c.XDS != nil {
		ps = append(ps, c.XDS)
	}
	ps = append(ps, c.Proxies...)
	if c.Server != nil {
		ps = append(ps, c.Server)
	}
	return ps
}

// Stop stops everything, callers' side first: xDS, the replicas, the Temporal server, Vault, PostgreSQL; then it
// removes the work directory if it made it. It is safe to call more than once.
func (c *Cluster) Stop() error {
	var errs []error
	for _, p := range c.procs() {
		if err := p.Stop(20 * time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Vault != nil {
		if err := c.Vault.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("stop vaultdev: %w", err))
		}
	}
	if c.PG != nil {
		if err := c.PG.Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.ephemeral {
		if err := os.RemoveAll(c.work); err != nil {
			errs = append(errs, fmt.Errorf("remove work directory: %w", err))
		}
	}
	return errors.Join(errs...)
}

// WorkDir is the directory of the logs, keys and Vault storage.
func (c *Cluster) WorkDir() string { return c.work }

// BuildBlindfold returns $BLINDFOLD_BIN if set, else builds ./cmd/blindfold (with the dev stack) into a fixed place
// under the temp directory, so later runs find it up to date.
func BuildBlindfold(ctx context.Context) (string, error) {
	if p := os.Getenv(EnvBinary); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s: %w", EnvBinary, err)
		}
		return p, nil
	}
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("locate the module: no caller information")
	}
	root := filepath.Join(filepath.Dir(self), "..", "..")
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return "", fmt.Errorf("locate the module (built with -trimpath? set %s): %w", EnvBinary, err)
	}
	h := fnv.New64a()
	h.Write([]byte(root))
	out := filepath.Join(os.TempDir(), fmt.Sprintf("blindfold-cluster-bin-%x", h.Sum64()), "blindfold")
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", fmt.Errorf("create build directory: %w", err)
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/blindfold")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/blindfold: %w\n%s", err, b)
	}
	return out, nil
}

// freePorts returns n distinct loopback ports that were free a moment ago; all are held until every one is chosen,
// so the kernel cannot hand out one twice.
func freePorts(n int) ([]int, error) {
	var held []net.Listener
	defer func() {
		for _, l := range held {
			_ = l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		held = append(held, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
