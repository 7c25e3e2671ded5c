package faulttest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/blindfold-dev/blindfold/internal/devstack"
	"github.com/blindfold-dev/blindfold/internal/gateway"
	"github.com/blindfold-dev/blindfold/internal/testenv"
	"github.com/blindfold-dev/blindfold/internal/testenv/gatewayenv"
)

// envRole makes the test binary run as a child: "upstream" (an embedded Temporal server) or "proxy".
const (
	envRole   = "FAULTTEST_ROLE"
	envConfig = "FAULTTEST_CONFIG"
)

// childConfig is what a child process runs with, passed as JSON in envConfig.
type childConfig struct {
	// Upstream role.
	DataDir                                                               string
	FrontendPort, FrontendHTTPPort, HistoryPort, MatchingPort, WorkerPort int
	// Proxy role.
	Upstream, Listen, KeyDir string
}

func TestMain(m *testing.M) {
	switch os.Getenv(envRole) {
	case "":
	case "upstream", "proxy":
		if err := runChild(os.Getenv(envRole)); err != nil {
			fmt.Fprintf(os.Stderr, "faulttest child: %v\n", err)
			os.Exit(1)
		}
		os.Exit(0)
	default:
		fmt.Fprintf(os.Stderr, "unknown %s\n", envRole)
		os.Exit(2)
	}
	code := m.Run()
	stopSharedUpstream()
	os.Exit(code)
}

// runChild serves until SIGTERM/SIGINT or until stdin closes (the parent died), printing "ready <addr>" once serving.
func runChild(role string) error {
	var cfg childConfig
	if err := json.Unmarshal([]byte(os.Getenv(envConfig)), &cfg); err != nil {
		return fmt.Errorf("parse %s: %w", envConfig, err)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	stdin := make(chan struct{})
	go func() { io.Copy(io.Discard, os.Stdin); close(stdin) }()
	wait := func() {
		select {
		case <-sig:
		case <-stdin:
		}
	}
	ctx := context.Background()
	switch role {
	case "upstream":
		sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		st, err := devstack.Start(sctx, devstack.Config{
			DataDir: cfg.DataDir, FrontendPort: cfg.FrontendPort, FrontendHTTPPort: cfg.FrontendHTTPPort,
			HistoryPort: cfg.HistoryPort, MatchingPort: cfg.MatchingPort, WorkerPort: cfg.WorkerPort,
		})
		if err != nil {
			return err
		}
		fmt.Printf("ready %s\n", st.FrontendAddr())
		wait()
		stopCtx, cancel2 := context.WithTimeout(ctx, 30*time.Second)
		defer cancel2()
		return st.Stop(stopCtx)
	default:
		var (
			g   *gateway.Gateway
			err error
		)
		for i := 0; ; i++ { // a restarted proxy may find its port briefly busy
			if g, err = startGateway(ctx, cfg.Upstream, cfg.KeyDir, cfg.Listen); err == nil || i == 50 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			return err
		}
		fmt.Printf("ready %s\n", g.Addr())
		wait()
		stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return g.Stop(stopCtx)
	}
}

var quietLog = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))

// startGateway runs the gateway over a local key directory in front of upstream, as `blindfold proxy --create-keys`
// runs it, listening on listen.
func startGateway(ctx context.Context, upstream, keyDir, listen string) (*gateway.Gateway, error) {
	return gateway.Start(ctx, gateway.Config{
		Keys:   gatewayenv.LocalKeys(keyDir),
		Proxy:  gateway.ProxyConfig{Listen: listen, Upstream: upstream},
		Logger: quietLog,
	})
}

// child is a running child process of this test binary.
type child struct {
	role  string
	cfg   childConfig
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addr  string
	done  chan struct{}
}

func startChild(role string, cfg childConfig) (*child, error) {
	js, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envRole+"="+role, envConfig+"="+string(js))
	cmd.Stderr = os.Stderr
	stdin, stdout, err := testenv.StartPiped(cmd)
	if err != nil {
		return nil, fmt.Errorf("start %s child: %w", role, err)
	}
	c := &child{role: role, cfg: cfg, cmd: cmd, stdin: stdin, done: make(chan struct{})}
	go func() { cmd.Wait(); close(c.done) }()
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "ready "); ok {
				ready <- a
			}
		}
	}()
	select {
	case c.addr = <-ready:
		return c, nil
	case <-c.done:
		return nil, fmt.Errorf("%s child exited before it was ready", role)
	case <-time.After(2 * time.Minute):
		c.kill()
		return nil, fmt.Errorf("%s child not ready within 2 minutes", role)
	}
}

// kill ends the child at once (SIGKILL): no drain, no goodbye to its clients.
func (c *child) kill() {
	c.cmd.Process.Kill()
	<-c.done
}

// stop asks the child to shut down cleanly and kills it if it takes over 30 s.
func (c *child) stop() {
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		c.kill()
	}
}

// restart starts the same role again with the same config (same ports, same data directory).
func (c *child) restart() (*child, error) { return startChild(c.role, c.cfg) }

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int { return testenv.FreePort(t) }

func upstreamConfig(t testing.TB, dataDir string) childConfig {
	return childConfig{DataDir: dataDir, FrontendPort: freePort(t), FrontendHTTPPort: freePort(t), HistoryPort: freePort(t),
		MatchingPort: freePort(t), WorkerPort: freePort(t)}
}

var (
	sharedMu  sync.Mutex
	shared    *child
	sharedErr error
	sharedDir string
)

// sharedUpstream is one embedded Temporal server in a child process for the tests that do not restart it.
func sharedUpstream(t testing.TB) string {
	t.Helper()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared == nil && sharedErr == nil {
		sharedDir, sharedErr = os.MkdirTemp("", "faulttest-upstream-")
		if sharedErr == nil {
			shared, sharedErr = startChild("upstream", upstreamConfig(t, sharedDir))
		}
	}
	if sharedErr != nil {
		t.Fatalf("shared upstream: %v", sharedErr)
	}
	return shared.addr
}

func stopSharedUpstream() {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared != nil {
		shared.stop()
	}
	if sharedDir != "" {
		os.RemoveAll(sharedDir)
	}
}
