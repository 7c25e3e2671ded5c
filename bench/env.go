package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/internal/devstack"
	"github.com/blindfold-dev/blindfold/internal/gateway"
	"github.com/blindfold-dev/blindfold/keys"
)

// Task queues of the shared workers: one worker reaches the frontend through the proxy, the other directly.
const (
	queueProxy  = "bench-proxy"
	queueDirect = "bench-direct"
)

// env is what scenarios share: built lazily, so the codec scenario alone needs no server.
type env struct {
	quick        bool
	loadN, openN int // overrides of the load and memory scenarios' workflow counts
	log          *slog.Logger

	tmp       string
	keyDir    string
	km        *keys.Manager
	codec     *codec.Codec
	stack     *devstack.Stack
	gateway   *gateway.Gateway
	proxyAddr string
	direct    client.Client // to the raw frontend
	viaProxy  client.Client // through the in-process proxy
	closers   []func()

	temporalCLI string // Options.TemporalCLI
}

func newEnv(quick bool) *env {
	return &env{quick: quick, log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))}
}

func (e *env) close() {
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
	e.closers = nil
}

// keys returns the codec over a local key directory (the proxy's production keyring, DEKs cached after first use).
func (e *env) ensureCodec() (*codec.Codec, error) {
	if e.codec != nil {
		return e.codec, nil
	}
	if e.tmp == "" {
		dir, err := os.MkdirTemp("", "blindfold-bench-")
		if err != nil {
			return nil, fmt.Errorf("create temp dir: %w", err)
		}
		e.tmp = dir
		e.closers = append(e.closers, func() { os.RemoveAll(dir) })
	}
	e.keyDir = e.tmp + "/keys"
	k, err := gateway.OpenKeys(context.Background(), e.keysConfig(), nil)
	if err != nil {
		return nil, err
	}
	c, err := codec.New(k.Manager)
	if err != nil {
		return nil, fmt.Errorf("new codec: %w", err)
	}
	e.km, e.codec = k.Manager, c
	return c, nil
}

// keysConfig is the bench's keys: a local key directory, as `blindfold dev` has them.
func (e *env) keysConfig() gateway.KeysConfig {
	return gateway.KeysConfig{Dir: e.keyDir, CreateMasterKey: true, AutoCreate: true}
}

// startGateway starts the production assembly in front of upstream (or, with an empty upstream, only the codec
// endpoint ec), over the bench's key directory.
func (e *env) startGateway(ctx context.Context, upstream string, ec *gateway.CodecEndpointConfig) (*gateway.Gateway, error) {
	if _, err := e.ensureCodec(); err != nil {
		return nil, err
	}
	g, err := gateway.Start(ctx, gateway.Config{
		Keys:          e.keysConfig(),
		Proxy:         gateway.ProxyConfig{Listen: "127.0.0.1:0", Upstream: upstream},
		CodecEndpoint: ec,
		Logger:        e.log,
	})
	if err != nil {
		return nil, fmt.Errorf("start gateway: %w", err)
	}
	return g, nil
}

// ensureStack starts the embedded Temporal server, the gateway in front of it, a client of each, and one
// worker per client running benchWorkflow.
func (e *env) ensureStack(ctx context.Context) error {
	if e.stack != nil {
		return nil
	}
	if _, err := e.ensureCodec(); err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	st, err := devstack.Start(sctx, devstack.Config{DataDir: e.tmp + "/temporal", LogLevel: "error"})
	if err != nil {
		return fmt.Errorf("start embedded temporal: %w", err)
	}
	e.stack = st
	e.closers = append(e.closers, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		st.Stop(ctx)
	})

	g, err := e.startGateway(ctx, st.FrontendAddr(), nil)
	if err != nil {
		return err
	}
	e.gateway, e.proxyAddr = g, g.Addr()
	e.closers = append(e.closers, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		g.Stop(ctx)
	})

	if e.direct, err = e.dial(st.FrontendAddr()); err != nil {
		return err
	}
	if e.viaProxy, err = e.dial(e.proxyAddr); err != nil {
		return err
	}
	for _, w := range []struct {
		c     client.Client
		queue string
	}{{e.viaProxy, queueProxy}, {e.direct, queueDirect}} {
		if err := e.startWorker(w.c, w.queue); err != nil {
			return err
		}
	}
	return nil
}

func (e *env) dial(addr string) (client.Client, error) {
	c, err := dialClient(addr, e.log)
	if err != nil {
		return nil, err
	}
	e.closers = append(e.closers, c.Close)
	return c, nil
}

func dialClient(addr string, log *slog.Logger) (client.Client, error) {
	c, err := client.Dial(client.Options{HostPort: addr, Namespace: devstack.DefaultNamespace, Logger: sdklog.NewStructuredLogger(log)})
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return c, nil
}

func (e *env) startWorker(c client.Client, queue string) error {
	w, err := startWorker(c, queue)
	if err != nil {
		return err
	}
	e.closers = append(e.closers, w.Stop)
	return nil
}

// startWorker runs a worker of every bench workflow and activity on queue.
func startWorker(c client.Client, queue string) (worker.Worker, error) {
	w := worker.New(c, queue, worker.Options{})
	w.RegisterWorkflowWithOptions(benchWorkflow, workflow.RegisterOptions{Name: "BenchWorkflow"})
	w.RegisterWorkflowWithOptions(waitWorkflow, workflow.RegisterOptions{Name: "WaitWorkflow"})
	w.RegisterActivityWithOptions(benchActivity, activity.RegisterOptions{Name: "BenchActivity"})
	if err := w.Start(); err != nil {
		return nil, fmt.Errorf("start worker on %s: %w", queue, err)
	}
	return w, nil
}

// benchWorkflow is the trivial workflow of the round-trip scenarios: one activity that echoes its input.
func benchWorkflow(ctx workflow.Context, in string) (string, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 30 * time.Second})
	var out string
	err := workflow.ExecuteActivity(ctx, "BenchActivity", in).Get(ctx, &out)
	return out, err
}

func benchActivity(_ context.Context, in string) (string, error) {
	activityCalls.Add(1)
	return "done:" + in, nil
}

// waitWorkflow runs one activity, then stays open until it receives the signal "finish", and returns its value.
func waitWorkflow(ctx workflow.Context, in string) (string, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 30 * time.Second})
	var out string
	if err := workflow.ExecuteActivity(ctx, "BenchActivity", in).Get(ctx, &out); err != nil {
		return "", err
	}
	var v string
	workflow.GetSignalChannel(ctx, "finish").Receive(ctx, &v)
	return out + "/" + v, nil
}
