package vaultdevproc

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// EnvBinary names an environment variable holding the path of a prebuilt
// vaultdev binary; when set, Build uses it instead of compiling.
const EnvBinary = "BLINDFOLD_VAULTDEV"

// ErrStopped is returned when the process exits before it is ready.
var ErrStopped = errors.New("vaultdev exited before it was ready")

// readyTimeout bounds the wait for the ready line; startup is well under a
// second, so this only catches a wedged process.
const readyTimeout = 30 * time.Second

// stopTimeout is how long Stop waits after SIGTERM before it kills.
const stopTimeout = 15 * time.Second

// TB is the part of testing.TB the test helpers use; it keeps the package
// free of the testing import so non-test code (the dev stack) can use it.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
}

// Options configures a vaultdev process.
type Options struct {
	// Addr is the loopback host:port; empty picks a free port. Restart reuses
	// the port the first start got, so clients keep their address.
	Addr string
	// RootToken is the root token ID; empty means a random one chosen once, so
	// it stays valid across Restart.
	RootToken string
	// TransitMount is where Transit is mounted; empty means "transit".
	TransitMount string
	// KVMount is where the KV version 2 engine is mounted; empty means "secret".
	KVMount string
	// StorageDir selects file storage there, so Restart keeps Transit keys.
	// Empty means in-memory: a restarted process has no keys left.
	StorageDir string
	// TLSDir makes Vault serve HTTPS with a self-signed loopback certificate
	// kept there (and kept across Restart); trust Proc.CACert.
	TLSDir string
	// Stderr receives vaultdev's log; nil discards it (the last lines are
	// still quoted in start errors).
	Stderr io.Writer
}

// Proc is a running (or stopped) vaultdev process.
type Proc struct {
	bin  string
	opts Options

	mu     sync.Mutex
	addr   string // http(s)://host:port
	mount  string
	kv     string
	caCert string
	cmd    *exec.Cmd
	done   chan struct{}
	tail   *tailBuffer
}

type readyLine struct {
	Addr         string `json:"addr"`
	Token        string `json:"token"`
	TransitMount string `json:"transit_mount"`
	KVMount      string `json:"kv_mount"`
	CACert       string `json:"ca_cert"`
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// Build compiles vaultdev once per test binary and returns its path, or
// returns $BLINDFOLD_VAULTDEV when that is set. The output lives in a fixed
// place under the temp dir, so later test binaries find it up to date
// (about 2 s); a cold build of Vault takes minutes.
func Build(t TB) string {
	t.Helper()
	buildOnce.Do(func() {
		start := time.Now()
		buildPath, buildErr = BuildBinary(context.Background(), "")
		if buildErr == nil {
			t.Logf("vaultdev built at %s in %s", buildPath, time.Since(start).Round(time.Millisecond))
		}
	})
	if buildErr != nil {
		t.Fatalf("build vaultdev: %v", buildErr)
	}
	return buildPath
}

// ModuleDir is the source directory of the vaultdev module, found relative
// to this file, so it works from any package's tests in the source tree.
func ModuleDir() (string, error) {
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("locate vaultdev source: no caller information")
	}
	dir := filepath.Join(filepath.Dir(self), "..", "vaultdev")
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		return "", fmt.Errorf("locate vaultdev source (built with -trimpath? set %s to a prebuilt binary): %w", EnvBinary, err)
	}
	return dir, nil
}

// BuildBinary returns $BLINDFOLD_VAULTDEV if set; otherwise it runs go build
// of the vaultdev module into out (empty means a fixed path under the temp
// dir) and returns the binary's path. Without the source tree it falls back
// to a vaultdev on PATH.
func BuildBinary(ctx context.Context, out string) (string, error) {
	if p := os.Getenv(EnvBinary); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s: %w", EnvBinary, err)
		}
		return p, nil
	}
	dir, err := ModuleDir()
	if err != nil {
		// Outside the source tree (an installed blindfold), a vaultdev on
		// PATH is the only option left.
		if p, lerr := exec.LookPath("vaultdev"); lerr == nil {
			return p, nil
		}
		return "", err
	}
	if out == "" {
		h := fnv.New64a()
		h.Write([]byte(dir))
		out = filepath.Join(os.TempDir(), fmt.Sprintf("blindfold-vaultdev-%x", h.Sum64()), "vaultdev")
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", fmt.Errorf("create vaultdev build directory: %w", err)
	}
	// go build moves a finished link into place with a rename, and leaves an
	// up-to-date target alone, so concurrent test binaries and a running
	// vaultdev do not disturb each other.
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/vaultdev")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build in %s: %w\n%s", dir, err, b)
	}
	return out, nil
}

// Start builds vaultdev if needed, starts it, waits until it is ready and
// stops it when the test ends.
func Start(t TB, opts Options) *Proc {
	t.Helper()
	bin := Build(t)
	p, err := Launch(context.Background(), bin, opts)
	if err != nil {
		t.Fatalf("start vaultdev: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Logf("stop vaultdev: %v", err)
		}
	})
	return p
}

// Launch starts the vaultdev binary bin and waits for its ready line. The
// caller must Stop it.
func Launch(ctx context.Context, bin string, opts Options) (*Proc, error) {
	if opts.RootToken == "" {
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("generate root token: %w", err)
		}
		opts.RootToken = "bfdev-" + hex.EncodeToString(b)
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	p := &Proc{bin: bin, opts: opts}
	if err := p.start(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// Addr is Vault's base URL, e.g. http://127.0.0.1:41234 (https with
// Options.TLSDir); it does not change across Restart.
func (p *Proc) Addr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addr
}

// Token is the root token; it does not change across Restart.
func (p *Proc) Token() string { return p.opts.RootToken }

// TransitMount is the path Transit is mounted at.
func (p *Proc) TransitMount() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mount
}

// KVMount is the path the KV version 2 engine is mounted at.
func (p *Proc) KVMount() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.kv
}

// CACert is the PEM file to trust when Options.TLSDir is set; empty otherwise.
func (p *Proc) CACert() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.caCert
}

// Running reports whether the process is running.
func (p *Proc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Stop sends SIGTERM and waits for a clean exit, killing the process if it
// takes too long. Stopping a stopped process does nothing.
func (p *Proc) Stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stopLocked()
}

// Restart stops the process if it runs and starts it again on the same
// address with the same token and storage. Without StorageDir the new Vault
// is empty: in-memory Transit keys do not survive.
func (p *Proc) Restart() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.stopLocked(); err != nil {
		return err
	}
	return p.startLocked(context.Background())
}

func (p *Proc) start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.startLocked(ctx)
}

func (p *Proc) startLocked(ctx context.Context) error {
	args := []string{"--addr", p.opts.Addr, "--root-token", p.opts.RootToken}
	if p.opts.TransitMount != "" {
		args = append(args, "--transit-mount", p.opts.TransitMount)
	}
	if p.opts.KVMount != "" {
		args = append(args, "--kv-mount", p.opts.KVMount)
	}
	if p.opts.StorageDir != "" {
		args = append(args, "--storage-dir", p.opts.StorageDir)
	}
	if p.opts.TLSDir != "" {
		args = append(args, "--tls-dir", p.opts.TLSDir)
	}
	tail := &tailBuffer{max: 8 << 10, next: p.opts.Stderr}
	ready := &firstLine{ch: make(chan []byte, 1)}
	cmd := exec.Command(p.bin, args...)
	cmd.Stdout = ready
	cmd.Stderr = tail
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.bin, err)
	}
	done := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(done)
	}()
	kill := func() {
		_ = cmd.Process.Kill()
		<-done
	}

	timer := time.NewTimer(readyTimeout)
	defer timer.Stop()
	var line []byte
	select {
	case line = <-ready.ch:
	case <-done:
		return fmt.Errorf("%w: %v\n%s", ErrStopped, waitErr, tail.String())
	case <-timer.C:
		kill()
		return fmt.Errorf("vaultdev not ready after %s\n%s", readyTimeout, tail.String())
	case <-ctx.Done():
		kill()
		return fmt.Errorf("wait for vaultdev: %w", ctx.Err())
	}
	var info readyLine
	if err := json.Unmarshal(line, &info); err != nil || info.Addr == "" {
		kill()
		return fmt.Errorf("parse vaultdev ready line %q: %v", line, err)
	}
	if info.Token != p.opts.RootToken {
		kill()
		return fmt.Errorf("vaultdev reported a different root token than requested")
	}
	// Pin the port the first start got, so a restart keeps the address.
	if u, err := url.Parse(info.Addr); err == nil && u.Host != "" {
		if _, port, err := net.SplitHostPort(u.Host); err == nil {
			host, _, _ := net.SplitHostPort(p.opts.Addr)
			p.opts.Addr = net.JoinHostPort(host, port)
		}
	}
	p.addr, p.mount, p.kv, p.caCert = info.Addr, info.TransitMount, info.KVMount, info.CACert
	p.cmd, p.done, p.tail = cmd, done, tail
	return nil
}

func (p *Proc) stopLocked() error {
	if p.cmd == nil {
		return nil
	}
	select {
	case <-p.done:
		p.cmd = nil
		return nil
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal vaultdev: %w", err)
	}
	timer := time.NewTimer(stopTimeout)
	defer timer.Stop()
	var err error
	select {
	case <-p.done:
		if st := p.cmd.ProcessState; st != nil && !st.Success() {
			err = fmt.Errorf("vaultdev exited with %v\n%s", st, p.tail.String())
		}
	case <-timer.C:
		_ = p.cmd.Process.Kill()
		<-p.done
		err = fmt.Errorf("vaultdev ignored SIGTERM for %s and was killed", stopTimeout)
	}
	p.cmd = nil
	return err
}

// firstLine hands the first line written to it to ch and drops the rest.
type firstLine struct {
	buf  []byte
	sent bool
	ch   chan []byte
}

func (f *firstLine) Write(b []byte) (int, error) {
	if f.sent {
		return len(b), nil
	}
	f.buf = append(f.buf, b...)
	if i := bytes.IndexByte(f.buf, '\n'); i >= 0 {
		f.sent = true
		f.ch <- f.buf[:i]
	}
	return len(b), nil
}

// tailBuffer keeps the last max bytes written, for error messages, and
// forwards everything to next when set.
type tailBuffer struct {
	mu   sync.Mutex
	max  int
	buf  []byte
	next io.Writer
}

func (t *tailBuffer) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if len(t.buf) > t.max {
		t.buf = append([]byte(nil), t.buf[len(t.buf)-t.max:]...)
	}
	if t.next != nil {
		_, _ = t.next.Write(b)
	}
	return len(b), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
