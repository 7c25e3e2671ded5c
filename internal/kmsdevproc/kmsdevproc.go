package kmsdevproc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

// EnvBinary names an environment variable holding the path of a prebuilt kmsdev binary; when set, Build uses it instead
// of compiling.
const EnvBinary = "BLINDFOLD_KMSDEV"

// ErrStopped is returned when the process exits before it is ready.
var ErrStopped = errors.New("kmsdev exited before it was ready")

const (
	readyTimeout = 30 * time.Second
	stopTimeout  = 10 * time.Second
)

// TB is the part of testing.TB the helpers use.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
	TempDir() string
}

// Credentials are what clients of a kmsdev sign with: local-kms accepts any.
var Credentials = credentials.NewStaticCredentialsProvider("kmsdev", "kmsdev-secret", "")

// Options configures a kmsdev process.
type Options struct {
	// DataDir keeps the key database (empty: a new temp dir of the test). A Restart keeps the keys.
	DataDir string
}

// Proc is a running (or stopped) kmsdev.
type Proc struct {
	bin, dataDir string

	mu       sync.Mutex
	addr     string // host:port, pinned after the first start
	endpoint string
	region   string
	cmd      *exec.Cmd
	done     chan struct{}
	tail     *bytes.Buffer
	tailMu   *sync.Mutex
}

type readyLine struct {
	Endpoint string `json:"endpoint"`
	Region   string `json:"region"`
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// Build compiles kmsdev once per test binary (into a fixed place under the temp dir, so later builds are quick no-ops)
// or returns $BLINDFOLD_KMSDEV.
func Build(t TB) string {
	t.Helper()
	buildOnce.Do(func() { buildPath, buildErr = BuildBinary(context.Background()) })
	if buildErr != nil {
		t.Fatalf("build kmsdev: %v", buildErr)
	}
	return buildPath
}

// BuildBinary returns $BLINDFOLD_KMSDEV if set, else builds the kmsdev module and returns the binary's path.
func BuildBinary(ctx context.Context) (string, error) {
	if p := os.Getenv(EnvBinary); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s: %w", EnvBinary, err)
		}
		return p, nil
	}
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("locate kmsdev source: no caller information")
	}
	dir := filepath.Join(filepath.Dir(self), "..", "kmsdev")
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		return "", fmt.Errorf("locate kmsdev source (set %s to a prebuilt binary): %w", EnvBinary, err)
	}
	h := fnv.New64a()
	h.Write([]byte(dir))
	out := filepath.Join(os.TempDir(), fmt.Sprintf("blindfold-kmsdev-%x", h.Sum64()), "kmsdev")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/kmsdev")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build in %s: %w\n%s", dir, err, b)
	}
	return out, nil
}

// Start builds kmsdev if needed, starts it, waits until it is ready and stops it when the test ends.
func Start(t TB, opts Options) *Proc {
	t.Helper()
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	p := &Proc{bin: Build(t), dataDir: opts.DataDir, addr: "127.0.0.1:0"}
	if err := p.Restart(); err != nil {
		t.Fatalf("start kmsdev: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Logf("stop kmsdev: %v", err)
		}
	})
	return p
}

// Endpoint is the base URL for an AWS SDK client; it does not change across Restart.
func (p *Proc) Endpoint() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.endpoint
}

// Region is the region of the key ARNs.
func (p *Proc) Region() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.region
}

// Client returns a KMS client for the process, for test set-up (creating, disabling, deleting keys).
func (p *Proc) Client() *kms.Client {
	return kms.New(kms.Options{
		Region: p.Region(), BaseEndpoint: aws.String(p.Endpoint()), Credentials: Credentials,
		RetryMaxAttempts: 1,
	})
}

// CreateKey creates a symmetric encryption key and returns its ARN.
func (p *Proc) CreateKey(ctx context.Context, description string) (string, error) {
	out, err := p.Client().CreateKey(ctx, &kms.CreateKeyInput{
		Description: aws.String(description), KeySpec: types.KeySpecSymmetricDefault, KeyUsage: types.KeyUsageTypeEncryptDecrypt,
	})
	if err != nil {
		return "", fmt.Errorf("kmsdev: create key: %w", err)
	}
	return aws.ToString(out.KeyMetadata.Arn), nil
}

// Stop sends SIGTERM and waits for the exit (the database is closed, so a Restart can open it), killing the process if it
// takes too long. Stopping a stopped process does nothing.
func (p *Proc) Stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return nil
	}
	cmd, done := p.cmd, p.done
	p.cmd = nil
	_ = cmd.Process.Signal(syscall.SIGCONT) // a paused process must run to handle SIGTERM
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal kmsdev: %w", err)
	}
	select {
	case <-done:
		return nil
	case <-time.After(stopTimeout):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("kmsdev ignored SIGTERM for %s and was killed", stopTimeout)
	}
}

// Restart stops the process if it runs and starts it again on the same address with the same keys.
func (p *Proc) Restart() error {
	if err := p.Stop(); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	tail, tailMu := &bytes.Buffer{}, &sync.Mutex{}
	ready := &firstLine{ch: make(chan []byte, 1)}
	cmd := exec.Command(p.bin, "--addr", p.addr, "--data-dir", p.dataDir)
	cmd.Stdout = ready
	cmd.Stderr = &lockedTail{buf: tail, mu: tailMu}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.bin, err)
	}
	done := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(done) }()
	tailText := func() string { tailMu.Lock(); defer tailMu.Unlock(); return tail.String() }
	var line []byte
	select {
	case line = <-ready.ch:
	case <-done:
		return fmt.Errorf("%w: %v\n%s", ErrStopped, waitErr, tailText())
	case <-time.After(readyTimeout):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("kmsdev not ready after %s\n%s", readyTimeout, tailText())
	}
	var info readyLine
	if err := json.Unmarshal(line, &info); err != nil || info.Endpoint == "" {
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("parse kmsdev ready line %q: %v", line, err)
	}
	if u, err := url.Parse(info.Endpoint); err == nil {
		if _, _, err := net.SplitHostPort(u.Host); err == nil {
			p.addr = u.Host // pin the port, so clients keep their endpoint across a restart
		}
	}
	p.endpoint, p.region, p.cmd, p.done, p.tail, p.tailMu = info.Endpoint, info.Region, cmd, done, tail, tailMu
	return nil
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

// lockedTail keeps the last 8 KiB of the process's log (local-kms logs every request), for start errors.
type lockedTail struct {
	buf *bytes.Buffer
	mu  *sync.Mutex
}

func (l *lockedTail) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(b)
	if l.buf.Len() > 8<<10 {
		rest := append([]byte(nil), l.buf.Bytes()[l.buf.Len()-8<<10:]...)
		l.buf.Reset()
		l.buf.Write(rest)
	}
	return len(b), nil
}

// Running reports whether the process runs.
func (p *Proc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Pause stops the process with SIGSTOP: connections are accepted by the kernel but never answered, like a KMS that hangs.
// It returns once the process is stopped (Linux: its /proc state; elsewhere right after the signal). Resume continues it;
// the test's cleanup resumes it before stopping.
func (p *Proc) Pause() error {
	if err := p.signal(syscall.SIGSTOP); err != nil {
		return err
	}
	p.mu.Lock()
	pid := p.cmd.Process.Pid
	p.mu.Unlock()
	stat := fmt.Sprintf("/proc/%d/stat", pid)
	for range 500 {
		b, err := os.ReadFile(stat)
		if err != nil {
			return nil // no procfs: the signal is all we can do
		}
		// The state follows the parenthesized command name: "pid (comm) T ...".
		if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) && (b[i+2] == 'T' || b[i+2] == 't') {
			return nil
		}
		time.Sleep(2 * time.Millisecond)
	}
	return errors.New("kmsdev did not stop after SIGSTOP")
}

// Resume continues a paused process.
func (p *Proc) Resume() error { return p.signal(syscall.SIGCONT) }

func (p *Proc) signal(s syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return errors.New("kmsdev is not running")
	}
	if err := p.cmd.Process.Signal(s); err != nil {
		return fmt.Errorf("signal kmsdev: %w", err)
	}
	return nil
}
