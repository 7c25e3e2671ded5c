package kekplugin_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/internal/testenv"
	"github.com/blindfold-dev/blindfold/keys"
	"github.com/blindfold-dev/blindfold/keys/kekplugin"
)

// EnvExampleBinary names a prebuilt examples/kekplugin binary; without it the test builds one (a few seconds warm).
const EnvExampleBinary = "BLINDFOLD_KEKPLUGIN_EXAMPLE"

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// exampleBinary returns the example plugin, built once per test binary.
func exampleBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if p := os.Getenv(EnvExampleBinary); p != "" {
			buildPath = p
			return
		}
		_, self, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(self), "..", "..")
		dir, err := os.MkdirTemp("", "kekplugin-example")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "kekplugin")
		cmd := exec.Command("go", "build", "-o", buildPath, "./examples/kekplugin")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./examples/kekplugin: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

// plugin is a running example plugin process.
type plugin struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
}

// startPlugin runs the example plugin on socket with key (base64) and waits for its ready line.
func startPlugin(t *testing.T, socket, key string) *plugin {
	t.Helper()
	cmd := exec.Command(exampleBinary(t), "-listen", socket)
	cmd.Env = append(os.Environ(), "KEKPLUGIN_EXAMPLE_KEY="+key)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &plugin{cmd: cmd, done: make(chan struct{})}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			ready <- sc.Text()
		}
		close(ready)
		for sc.Scan() {
		}
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.kill(t) })
	select {
	case line, ok := <-ready:
		if !ok || !strings.HasPrefix(line, "kekplugin: serving on ") {
			t.Fatalf("example plugin did not start: first line %q", line)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("example plugin: no ready line within 30s")
	}
	return p
}

// kill sends SIGKILL (no graceful stop: the plugin dies mid-run) and waits until the process is gone.
func (p *plugin) kill(t *testing.T) {
	t.Helper()
	select {
	case <-p.done:
		return
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("kill plugin: %v", err)
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatal("plugin did not exit after SIGKILL")
	}
}

func newKey(t *testing.T) string {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(k)
}

// socketDir is a short private directory for sockets (unix socket paths are limited to ~100 bytes).
func socketDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "kekp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func payloads(texts ...string) []*commonpb.Payload {
	out := make([]*commonpb.Payload, len(texts))
	for i, s := range texts {
		out[i] = &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte(`"` + s + `"`)}
	}
	return out
}

func mustDecode(t *testing.T, c *codec.Codec, ns string, sealed []*commonpb.Payload, want string) {
	t.Helper()
	got, err := c.Decode(context.Background(), ns, sealed)
	if err != nil {
		t.Fatalf("decode %s: %v", ns, err)
	}
	if string(got[0].GetData()) != `"`+want+`"` {
		t.Fatalf("decode %s = %q, want %q", ns, got[0].GetData(), want)
	}
}

// TestExamplePluginDiesMidRun runs the example plugin as a real process, seals and opens payloads through a keys.Manager
// using it, SIGKILLs it, and checks the outage contract: cached keys keep working within their TTL (with zero plugin calls),
// a storm of forged key ids does not push them out, new keysets and expired ones fail closed as unavailable with an error
// naming the plugin, and a restarted plugin is picked up without restarting Blindfold.
func TestExamplePluginDiesMidRun(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sock := filepath.Join(socketDir(t), "kek.sock")
	key := newKey(t)
	p := startPlugin(t, sock, key)

	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %04o, want 0600", fi.Mode().Perm())
	}

	addr := "unix://" + sock
	kek, err := kekplugin.Dial(ctx, kekplugin.Config{Address: addr, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer kek.Close()
	if h, err := kek.Health(ctx); err != nil || h.Name != "example-aes-gcm" {
		t.Fatalf("Health = %+v, %v", h, err)
	}

	clk := testenv.NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	dir := t.TempDir()
	m, err := keys.NewManager(keys.NewDirStore(dir), kek, keys.WithClock(clk.Now),
		keys.WithCacheTTL(10*time.Minute), keys.WithMinRefreshInterval(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	c, err := codec.New(m)
	if err != nil {
		t.Fatal(err)
	}
	sealed := map[string][]*commonpb.Payload{}
	for _, ns := range []string{"default", "payments"} {
		out, err := c.Encode(ctx, ns, payloads("secret of "+ns))
		if err != nil {
			t.Fatalf("encode %s: %v", ns, err)
		}
		if !codec.IsEncrypted(out[0]) {
			t.Fatalf("encode %s: not sealed", ns)
		}
		sealed[ns] = out
		mustDecode(t, c, ns, out, "secret of "+ns)
	}
	// Another replica, with nothing cached, unwraps the stored keysets through the plugin.
	replica, err := keys.NewManager(keys.NewDirStore(dir), kek)
	if err != nil {
		t.Fatal(err)
	}
	rc, _ := codec.New(replica)
	for ns, s := range sealed {
		mustDecode(t, rc, ns, s, "secret of "+ns)
	}
	if s := replica.Stats(); s.KEKCalls != 2 {
		t.Errorf("replica made %d plugin calls to open two scopes, want 2", s.KEKCalls)
	}

	// Scope binding through the real plugin: payments' keyset copied to scope "moved", its scope field edited to match,
	// reaches the plugin with the associated data of "moved", and the plugin rejects it.
	moved := moveKeyset(t, dir, "payments", "moved")
	if _, err := replica.OpeningKey(ctx, "moved", moved); !errors.Is(err, keys.ErrUnwrap) || !strings.Contains(err.Error(), "kek plugin "+addr+" rejected") {
		t.Fatalf("keyset moved to another scope = %v, want the plugin's rejection (ErrUnwrap)", err)
	}

	// The plugin dies. Cached keys keep serving with no plugin call at all.
	p.kill(t)
	before := m.Stats()
	for range 100 {
		for ns, s := range sealed {
			mustDecode(t, c, ns, s, "secret of "+ns)
		}
	}

	if s := m.Stats(); s.KEKCalls != before.KEKCalls {
		t.Errorf("plugin calls while serving cached keys: %d, want 0", s.KEKCalls-before.KEKCalls)
	}

	// A storm of forged key ids (unknown scopes, unknown ids in a real scope) while the plugin is down.
	for i := range 4000 { // the big storm is keys.TestForgedKeyIDStorm; this one is with the real plugin dead
		id := keys.KeyID(fmt.Sprintf("forged-%d", i), uint32(i))
		if i%2 == 1 {
			id = keys.KeyID("default", uint32(i))
		}
		if _, err := m.OpeningKey(ctx, "default", id); err == nil {
			t.Fatalf("forged key id %s opened", id)
		}
	}
	for ns, s := range sealed {
		mustDecode(t, c, ns, s, "secret of "+ns)
	}
	// Forged ids in "default" may trigger one reload of it per MinRefreshInterval (the clock stands still: one).
	if s := m.Stats(); s.KEKCalls-before.KEKCalls > 1 || s.CachedScopes != 2 {
		t.Errorf("after the storm: %d plugin calls (want at most 1), %d cached scopes (want 2)", s.KEKCalls-before.KEKCalls, s.CachedScopes)
	}

	// Past the refresh age the reload fails, and the cached keys still serve.
	clk.Advance(6 * time.Minute) // also past MinRefreshInterval
	for ns, s := range sealed {
		mustDecode(t, c, ns, s, "secret of "+ns)
	}
	if s := m.Stats(); s.RefreshFailures == 0 {
		t.Errorf("no refresh failure recorded after the refresh age with the plugin dead: %+v", s)
	}

	// A new scope needs the plugin to wrap its keyset: unavailable, naming the plugin.
	_, err = c.Encode(ctx, "newscope", payloads("x"))
	checkUnavailable(t, "encode for a new scope", err, sock)

	// Past the TTL the cached keys expire: fail closed, naming the plugin.
	clk.Advance(5 * time.Minute)
	_, err = c.Decode(ctx, "default", sealed["default"])
	checkUnavailable(t, "decode past the ttl", err, sock)

	// The plugin comes back (same socket, same key): decoding recovers once gRPC reconnects, without a new KEK.
	startPlugin(t, sock, key)
	restarted := time.Now()
	testenv.WaitFor(t, 15*time.Second, "decoding to recover after the plugin restarted", func() bool {
		clk.Advance(time.Second) // past MinRefreshInterval: retry the load
		_, err := c.Decode(ctx, "default", sealed["default"])
		return err == nil
	})
	t.Logf("decoding recovered %v after the plugin restarted", time.Since(restarted).Round(time.Millisecond))
	mustDecode(t, c, "payments", sealed["payments"], "secret of payments")
	if _, err := c.Encode(ctx, "newscope", payloads("x")); err != nil {
		t.Fatalf("encode for a new scope after the restart: %v", err)
	}
}

// TestExamplePluginWrongKey: a plugin that answers but rejects the keysets (restarted with another key) is a bad keyset,
// not an outage: codec.ErrKeyRejected (the manager also reports the scope unavailable, as for any unloadable keyset).
func TestExamplePluginWrongKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sock := filepath.Join(socketDir(t), "kek.sock")
	p := startPlugin(t, sock, newKey(t))
	kek, err := kekplugin.Dial(ctx, kekplugin.Config{Address: sock})
	if err != nil {
		t.Fatal(err)
	}
	defer kek.Close()
	dir := t.TempDir()
	m, err := keys.NewManager(keys.NewDirStore(dir), kek)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := codec.New(m)
	sealed, err := c.Encode(ctx, "default", payloads("hello"))
	if err != nil {
		t.Fatal(err)
	}
	p.kill(t)
	startPlugin(t, sock, newKey(t))

	fresh, err := keys.NewManager(keys.NewDirStore(dir), kek)
	if err != nil {
		t.Fatal(err)
	}
	fc, _ := codec.New(fresh)
	var derr error
	testenv.WaitFor(t, 15*time.Second, "the restarted plugin to answer", func() bool {
		_, derr = fc.Decode(ctx, "default", sealed)
		return errors.Is(derr, keys.ErrUnwrap) // before: unavailable, while gRPC reconnects
	})
	if !errors.Is(derr, codec.ErrKeyRejected) || !errors.Is(derr, keys.ErrUnwrap) {
		t.Fatalf("decode with a plugin holding another key = %v, want ErrKeyRejected/ErrUnwrap", derr)
	}
	if !strings.Contains(derr.Error(), sock) {
		t.Errorf("error %q does not name the plugin %s", derr, sock)
	}
}

// moveKeyset copies scope from's stored keyset to scope to, editing the scope it names, and returns a key id of it.
func moveKeyset(t *testing.T, dir, from, to string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "scopes", from+".keyset"))
	if err != nil {
		t.Fatal(err)
	}
	var f map[string]any
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	f["scope"] = to
	var id string
	for k := range f["created"].(map[string]any) {
		id = to + "/" + k
	}
	out, _ := json.Marshal(f)
	if err := os.WriteFile(filepath.Join(dir, "scopes", to+".keyset"), out, 0o600); err != nil {
		t.Fatal(err)
	}
	return id
}

func checkUnavailable(t *testing.T, what string, err error, sock string) {
	t.Helper()
	if !errors.Is(err, codec.ErrKeyUnavailable) || !errors.Is(err, keys.ErrUnavailable) {
		t.Fatalf("%s with the plugin dead = %v, want ErrKeyUnavailable", what, err)
	}
	if errors.Is(err, keys.ErrUnwrap) {
		t.Fatalf("%s: an outage reported as a rejected keyset: %v", what, err)
	}
	if !strings.Contains(err.Error(), sock) {
		t.Fatalf("%s: error %q does not name the plugin %s", what, err, sock)
	}
}

// TestExamplePluginHangs freezes the plugin (SIGSTOP: it accepts connections but never answers, as a wedged KMS call
// would). Cached keys serve at once; a load that needs the plugin gives up after the per-call timeout as unavailable,
// never as a rejected keyset; after SIGCONT it works again.
func TestExamplePluginHangs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sock := filepath.Join(socketDir(t), "kek.sock")
	p := startPlugin(t, sock, newKey(t))
	const timeout = 300 * time.Millisecond
	kek, err := kekplugin.Dial(ctx, kekplugin.Config{Address: sock, Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	defer kek.Close()
	dir := t.TempDir()
	m, _ := keys.NewManager(keys.NewDirStore(dir), kek)
	c, _ := codec.New(m)
	sealed, err := c.Encode(ctx, "default", payloads("hello"))
	if err != nil {
		t.Fatal(err)
	}

	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	cont := func() { _ = p.cmd.Process.Signal(syscall.SIGCONT) }
	t.Cleanup(cont) // before the kill in startPlugin's cleanup (cleanups run last first)
	// The signal is delivered asynchronously: wait until the kernel reports the process stopped.
	stat := fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid)
	if _, err := os.Stat(stat); err != nil {
		t.Skipf("no %s to see the plugin stop: %v", stat, err)
	}
	testenv.WaitFor(t, 10*time.Second, "the plugin to stop", func() bool {
		b, err := os.ReadFile(stat)
		i := strings.LastIndexByte(string(b), ')') // state follows the command name, which may hold spaces
		return err == nil && i > 0 && len(b) > i+2 && (b[i+2] == 'T' || b[i+2] == 't')
	})
	mustDecode(t, c, "default", sealed, "hello")

	replica, _ := keys.NewManager(keys.NewDirStore(dir), kek)
	rc, _ := codec.New(replica)
	start := time.Now()
	_, err = rc.Decode(ctx, "default", sealed)
	took := time.Since(start)
	checkUnavailable(t, "decode with the plugin frozen", err, sock)
	if took > 10*timeout {
		t.Errorf("decode with the plugin frozen took %v; the per-call timeout is %v", took, timeout)
	}
	t.Logf("a load with the plugin frozen failed after %v (timeout %v)", took.Round(time.Millisecond), timeout)

	cont()
	fresh, _ := keys.NewManager(keys.NewDirStore(dir), kek)
	fc, _ := codec.New(fresh)
	mustDecode(t, fc, "default", sealed, "hello")
}
