package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/blindfold-dev/blindfold/internal/testenv"
)

// proxyProc is a proxyproc child process.
type proxyProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addr  string
}

// buildProxyProc compiles bench/proxyproc into dir: a binary with the proxy only, so its RSS is the proxy's.
func buildProxyProc(ctx context.Context, dir string) (string, error) {
	out := filepath.Join(dir, "proxyproc")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "github.com/blindfold-dev/blindfold/bench/proxyproc")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build proxyproc: %w\n%s", err, b)
	}
	return out, nil
}

func startProxyProc(ctx context.Context, bin, upstream, keyDir string) (*proxyProc, error) {
	cmd := exec.Command(bin, "--upstream", upstream, "--key-dir", keyDir)
	cmd.Stderr = os.Stderr
	stdin, stdout, err := testenv.StartPiped(cmd)
	if err != nil {
		return nil, fmt.Errorf("start proxyproc: %w", err)
	}
	p := &proxyProc{cmd: cmd, stdin: stdin}
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case line <- sc.Text():
			default:
			}
		}
	}()
	select {
	case l := <-line:
		if a, ok := strings.CutPrefix(l, "listening "); ok {
			p.addr = a
			return p, nil
		}
		p.stop()
		return nil, fmt.Errorf("proxyproc said %q", l)
	case <-time.After(30 * time.Second):
		p.stop()
		return nil, errors.New("proxyproc did not start within 30 s")
	case <-ctx.Done():
		p.stop()
		return nil, ctx.Err()
	}
}

func (p *proxyProc) stop() {
	p.stdin.Close()
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
}

// procStatusKiB reads a "VmRSS"/"VmHWM"-style field (in KiB) of /proc/<pid>/status.
func procStatusKiB(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

func mib(kib int64) float64 { return float64(kib) / 1024 }

var activityCalls atomic.Int64

// runMemory runs the proxy as a process of its own, opens 1,000 workflows through it that wait for a signal (their
// activity done, two workers polling through the proxy), samples the proxy's RSS throughout, then finishes them.
func runMemory(ctx context.Context, e *env) ([]Row, error) {
	if err := e.ensureStack(ctx); err != nil {
		return nil, err
	}
	n := pick(e, 100, 1000)
	if e.openN > 0 {
		n = e.openN
	}
	bin, err := buildProxyProc(ctx, e.tmp)
	if err != nil {
		return nil, err
	}
	pp, err := startProxyProc(ctx, bin, e.stack.FrontendAddr(), e.tmp+"/memkeys")
	if err != nil {
		return nil, err
	}
	defer pp.stop()
	pid := pp.cmd.Process.Pid
	idle, err := procStatusKiB(pid, "VmRSS")
	if err != nil {
		return nil, err
	}

	var peak atomic.Int64
	sampleDone := make(chan struct{})
	stopSampling := make(chan struct{})
	go func() {
		defer close(sampleDone)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			if v, err := procStatusKiB(pid, "VmRSS"); err == nil && v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-t.C:
			case <-stopSampling:
				return
			}
		}
	}()
	defer func() {
		select {
		case <-stopSampling:
		default:
			close(stopSampling)
		}
		<-sampleDone
	}()

	const queue = "bench-memory"
	var clients []client.Client
	for range 2 {
		c, err := dialClient(pp.addr, e.log)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		clients = append(clients, c)
		w, err := startWorker(c, queue)
		if err != nil {
			return nil, err
		}
		defer w.Stop()
	}
	afterWorkers, _ := procStatusKiB(pid, "VmRSS")

	prefix := fmt.Sprintf("bench-mem-%d-", time.Now().UnixNano())
	before := activityCalls.Load()
	if err := parallel(ctx, n, 32, func(i int) error {
		_, err := clients[i%2].ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: prefix + strconv.Itoa(i), TaskQueue: queue}, "WaitWorkflow", "m")
		return err
	}); err != nil {
		return nil, fmt.Errorf("start workflows: %w", err)
	}
	// Wait until every workflow has run its activity and is parked on the signal.
	deadline := time.Now().Add(5 * time.Minute)
	for activityCalls.Load()-before < int64(n) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("only %d of %d workflows ran their activity", activityCalls.Load()-before, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // let the last workflow tasks complete
	open, err := procStatusKiB(pid, "VmRSS")
	if err != nil {
		return nil, err
	}
	if err := parallel(ctx, n, 32, func(i int) error {
		id := prefix + strconv.Itoa(i)
		c := clients[i%2]
		if err := c.SignalWorkflow(ctx, id, "", "finish", "go"); err != nil {
			return err
		}
		var out string
		if err := c.GetWorkflow(ctx, id, "").Get(ctx, &out); err != nil {
			return err
		}
		if out != "done:m/go" {
			return fmt.Errorf("workflow %s returned %q", id, out)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("finish workflows: %w", err)
	}
	close(stopSampling)
	<-sampleDone
	hwm, err := procStatusKiB(pid, "VmHWM")
	if err != nil {
		return nil, err
	}
	pk := mib(max(peak.Load(), open))
	return []Row{
		{Measure: fmt.Sprintf("RSS with %d open workflows", n), Value: mib(open), Baseline: mib(idle), Unit: "MiB", Target: "< 100", Met: met(mib(open) < 100),
			Note: "baseline the same process idle, before any call"},
		{Measure: "RSS peak (sampled every 50 ms)", Value: pk, Baseline: mib(idle), Unit: "MiB", Target: "< 100", Met: met(pk < 100),
			Note: fmt.Sprintf("starts and signals at 32 concurrent; RSS with two idle workers polling: %.1f MiB", mib(afterWorkers))},
		{Measure: "VmHWM (kernel high-water mark)", Value: mib(hwm), Baseline: mib(idle), Unit: "MiB", Target: "< 100", Met: met(mib(hwm) < 100)},
	}, nil
}

// parallel calls f(0..n-1) on conc goroutines and returns the first error (after all calls returned).
func parallel(ctx context.Context, n, conc int, f func(i int) error) error {
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for range conc {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("item %d: %w", i, err)
					}
					mu.Unlock()
					return
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
