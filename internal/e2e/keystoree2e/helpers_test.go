package keystoree2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/blindfold-dev/blindfold/internal/devstack"
	"github.com/blindfold-dev/blindfold/internal/devstack/devstacktest"
	"github.com/blindfold-dev/blindfold/internal/gateway"
	"github.com/blindfold-dev/blindfold/internal/testenv"
	"github.com/blindfold-dev/blindfold/internal/vaultdevproc"
	"github.com/blindfold-dev/blindfold/keys/vault"
	"github.com/blindfold-dev/blindfold/keys/vaultkv"
)

func TestMain(m *testing.M) { devstacktest.Main(m) }

// EnvBinary names an environment variable holding a prebuilt blindfold binary; when set, the tests use it instead of building.
const EnvBinary = "BLINDFOLD_BIN"

// marker starts every workflow input. Ids, task queues and type names are plaintext by design and never contain it.
const marker = "BFKSTMARK"

const (
	namespace = "default"
	scope     = "default" // keys.ScopeForNamespace(namespace)
	echoWF    = "keystoree2e-echo"
	echoAct   = "keystoree2e-echo-act"
)

// echoWorkflow sends its input through an activity: a start, workflow tasks, an activity and a result, each payload sealed by
// whichever replica the caller or worker talks to and opened by another.
func echoWorkflow(ctx workflow.Context, in string) (string, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 20 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 100 * time.Millisecond, MaximumAttempts: 5},
	})
	var out string
	err := workflow.ExecuteActivity(ctx, echoAct, in).Get(ctx, &out)
	return out, err
}

func echoActivity(_ context.Context, in string) (string, error) { return in + "|echo", nil }

func unique(kind string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "kst-" + kind + "-" + hex.EncodeToString(b)
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// blindfoldBinary builds the production binary (-tags nodev: no embedded Temporal server or Web UI) once per test binary.
func blindfoldBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if p := os.Getenv(EnvBinary); p != "" {
			buildPath = p
			return
		}
		_, self, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(self), "..", "..", "..")
		// A fixed place per source tree: go build leaves an up-to-date binary alone, so later runs skip the link.
		h := fnv.New64a()
		h.Write([]byte(root))
		dir := filepath.Join(os.TempDir(), fmt.Sprintf("blindfold-keystoree2e-%x", h.Sum64()))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "blindfold")
		start := time.Now()
		cmd := exec.Command("go", "build", "-tags", "nodev", "-o", buildPath, "./cmd/blindfold")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/blindfold: %w\n%s", err, out)
			return
		}
		t.Logf("built blindfold in %s", time.Since(start).Round(time.Millisecond))
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

// env is one test's Vault, key store folder and Transit key prefix, and the package's shared Temporal stack.
type env struct {
	stack  *devstack.Stack
	vault  *vaultdevproc.Proc
	bin    string
	kvPath string
	prefix string
}

func setup(t *testing.T) env {
	t.Helper()
	if testing.Short() {
		t.Skip("builds blindfold, starts vaultdev, the embedded Temporal server and proxy processes; skipped with -short")
	}
	bin := blindfoldBinary(t)
	return env{
		stack:  devstacktest.Shared(t),
		vault:  vaultdevproc.Start(t, vaultdevproc.Options{}),
		bin:    bin,
		kvPath: unique("store") + "/scopes",
		prefix: unique("kek") + "-",
	}
}

// keyArgs are the flags that put a blindfold command on the test's shared store and Transit keys.
func (e env) keyArgs() []string {
	return []string{
		"--key-dir", unusedDir, // with --kek vault and --key-store vault-kv nothing is read or written there
		"--kek", "vault", "--vault-addr", e.vault.Addr(), "--vault-mount", e.vault.TransitMount(), "--vault-key-prefix", e.prefix,
		"--key-store", "vault-kv", "--vault-kv-mount", e.vault.KVMount(), "--vault-kv-path", e.kvPath,
	}
}

// keysConfig is the same store and KEK, opened in the test process to inspect what the replicas wrote.
func (e env) keysConfig() gateway.KeysConfig {
	return gateway.KeysConfig{
		Dir: unusedDir, KEK: gateway.KEKVault, Store: gateway.StoreVaultKV,
		Vault: vault.Config{Address: e.vault.Addr(), Mount: e.vault.TransitMount(), KeyPrefix: e.prefix,
			Auth: vault.Auth{Method: vault.AuthToken, Token: e.vault.Token()}, Logger: testenv.DiscardLogger()},
		VaultKV: vaultkv.Config{Mount: e.vault.KVMount(), Path: e.kvPath},
	}
}

// unusedDir is the --key-dir of every process: it must not be touched (checked by the tests).
var unusedDir = filepath.Join(os.TempDir(), "keystoree2e-unused-key-dir")

// childEnv is the environment of a blindfold process: no BLINDFOLD_* or VAULT_* settings of the developer, the test's token.
func (e env) childEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "BLINDFOLD_") || strings.HasPrefix(kv, "VAULT_") {
			continue
		}
		out = append(out, kv)
	}
	return append(out, "VAULT_TOKEN="+e.vault.Token())
}

// runKeys runs `blindfold keys ARGS` against the test's store and returns its output.
func (e env) runKeys(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(e.bin, append(append([]string{"keys"}, args...), e.keyArgs()...)...)
	cmd.Env = e.childEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("blindfold keys %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// proc is one `blindfold proxy` process and its log (JSON lines).
type proc struct {
	name string
	addr string
	cmd  *exec.Cmd
	done chan struct{}

	mu    sync.Mutex
	lines []map[string]any
	raw   []string
}

// startProxy starts a proxy process with the test's key flags plus extra, and waits until it serves.
func (e env) startProxy(t *testing.T, name string, extra ...string) *proc {
	t.Helper()
	args := append([]string{"proxy", "--upstream", e.stack.FrontendAddr(), "--listen", "127.0.0.1:0", "--metrics-listen", "",
		"--log-format", "json", "--log-level", "info", "--create-keys", "--shutdown-timeout", "5s"}, e.keyArgs()...)
	args = append(args, extra...)
	p := &proc{name: name, cmd: exec.Command(e.bin, args...), done: make(chan struct{})}
	p.cmd.Env = e.childEnv()
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout = io.Discard
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			var rec map[string]any
			_ = json.Unmarshal([]byte(line), &rec)
			p.mu.Lock()
			p.raw = append(p.raw, line)
			if rec != nil {
				p.lines = append(p.lines, rec)
			}
			p.mu.Unlock()
			if rec["msg"] == "blindfold proxy ready" {
				addr, _ := rec["listen"].(string)
				select {
				case ready <- addr:
				default:
				}
			}
		}
		_ = p.cmd.Wait()
	}()
	t.Cleanup(func() { p.stop(t) })
	select {
	case p.addr = <-ready:
	case <-p.done:
		t.Fatalf("proxy %s exited before it was ready:\n%s", name, p.log())
	case <-time.After(60 * time.Second):
		t.Fatalf("proxy %s not ready after 60s:\n%s", name, p.log())
	}
	return p
}

// stop ends the process with SIGTERM (a drain), killing it if it takes too long.
func (p *proc) stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("proxy %s did not stop within 20s of SIGTERM", p.name)
	}
}

// count returns how many log records have message msg.
func (p *proc) count(msg string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, r := range p.lines {
		if r["msg"] == msg {
			n++
		}
	}
	return n
}

// records returns the log records at level, as text.
func (p *proc) records(level string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for i, r := range p.lines {
		if r["level"] == level {
			out = append(out, p.raw[i])
		}
	}
	return out
}

func (p *proc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.raw, "\n")
}

// dial returns an SDK client for addr, closed when the test ends.
func dial(t *testing.T, addr string) client.Client {
	t.Helper()
	c, err := client.Dial(client.Options{HostPort: addr, Namespace: namespace, Logger: testenv.DiscardSDKLogger()})
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(c.Close)
	return c
}

// startWorker runs a worker for the package's workflow on taskQueue until the test ends.
func startWorker(t *testing.T, c client.Client, taskQueue string) {
	t.Helper()
	w := worker.New(c, taskQueue, worker.Options{})
	w.RegisterWorkflowWithOptions(echoWorkflow, workflow.RegisterOptions{Name: echoWF})
	w.RegisterActivityWithOptions(echoActivity, activity.RegisterOptions{Name: echoAct})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
}
