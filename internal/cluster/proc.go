package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Proc is one child process of the harness (a blindfold proxy, the xDS server, the Temporal server), restartable
// with the same arguments. Its stdout and stderr are appended to a log file that survives restarts.
type Proc struct {
	name string
	bin  string
	args []string
	env  []string
	log  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	pids []int // every pid started, for the leak check
}

// NewProc describes a process of bin with args, logging to the file log; Start starts it.
func NewProc(name, bin, log string, args ...string) *Proc {
	return newProc(name, bin, log, args...)
}

func newProc(name, bin, log string, args ...string) *Proc {
	return &Proc{name: name, bin: bin, args: args, log: log}
}

// Name is the process's role, e.g. "proxy-1".
func (p *Proc) Name() string { return p.name }

// LogFile is where the process's output goes.
func (p *Proc) LogFile() string { return p.log }

// Start starts the process; it fails if it already runs.
func (p *Proc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.runningLocked() {
		return fmt.Errorf("%s already runs", p.name)
	}
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open log of %s: %w", p.name, err)
	}
	fmt.Fprintf(f, "=== %s start %s\n", time.Now().UTC().Format(time.RFC3339Nano), p.name)
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = f, f
	// Its own process group, so a ^C to the test does not reach it before the harness stops it in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = f.Close()
		close(done)
	}()
	p.cmd, p.done = cmd, done
	p.pids = append(p.pids, cmd.Process.Pid)
	return nil
}

// Running reports whether the process runs.
func (p *Proc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.runningLocked()
}

func (p *Proc) runningLocked() bool {
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

// Done is closed when the current run of the process has exited.
func (p *Proc) Done() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return p.done
}

// Kill sends SIGKILL and waits for the exit.
func (p *Proc) Kill() error {
	return p.signalAndWait(syscall.SIGKILL, time.Minute)
}

// Stop sends SIGTERM, waits up to timeout for the exit, then kills.
func (p *Proc) Stop(timeout time.Duration) error {
	err := p.signalAndWait(syscall.SIGTERM, timeout)
	if errors.Is(err, errTimeout) {
		if kerr := p.Kill(); kerr != nil {
			return kerr
		}
		return fmt.Errorf("%s ignored SIGTERM for %s and was killed", p.name, timeout)
	}
	return err
}

var errTimeout = errors.New("timed out")

func (p *Proc) signalAndWait(sig syscall.Signal, timeout time.Duration) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	default:
	}
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal %s: %w", p.name, err)
	}
	select {
	case <-done:
		return nil
	case <-time.After(timeout):
		return errTimeout
	}
}

// pidsStarted lists every pid this Proc started.
func (p *Proc) pidsStarted() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]int(nil), p.pids...)
}

// WaitReady polls ready until it succeeds, the process exits, or ctx ends; what names the awaited state in errors.
func (p *Proc) WaitReady(ctx context.Context, what string, ready func(context.Context) error) error {
	return p.waitReady(ctx, what, ready)
}

// waitReady polls ready until it succeeds, the process exits, or ctx ends.
func (p *Proc) waitReady(ctx context.Context, what string, ready func(context.Context) error) error {
	done := p.Done()
	var last error
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		last = ready(cctx)
		cancel()
		if last == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("%s exited before %s: %v\n%s", p.name, what, last, tailFile(p.log, 4<<10))
		case <-ctx.Done():
			return fmt.Errorf("wait for %s (%s): %v: %w\n%s", what, p.name, last, ctx.Err(), tailFile(p.log, 4<<10))
		case <-time.After(50 * time.Millisecond):
		}
	}
}
