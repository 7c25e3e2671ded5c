// Package devstacktest starts embedded Temporal stacks for tests: one per test, or one shared by a whole test binary.
//
// The machine running the tests is small, and a server start costs about a
// CPU-second, so prefer one shared stack per test package:
//
//	func TestMain(m *testing.M) { devstacktest.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		stack := devstacktest.Shared(t)
//		c, err := client.Dial(client.Options{HostPort: stack.FrontendAddr()})
//		...
//	}
//
// Use Start for a stack of the test's own, e.g. to scan its SQLite files
// (stack.SQLiteFiles()) for plaintext or to restart it on the same data.
//
// Stacks listen on free loopback ports and have no UI unless asked
// (WithUI). The server logs at error level to stderr; the environment
// variable DEVSTACK_LOG_LEVEL changes the level ("debug", "info", "warn")
// or silences it ("none").
package devstacktest

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/blindfold-dev/blindfold/internal/devstack"
)

// StartTimeout bounds how long a test waits for a stack to come up.
const StartTimeout = 60 * time.Second

// Option adjusts the devstack.Config a helper starts with.
type Option func(*devstack.Config)

// WithUI turns the Web UI on.
func WithUI() Option { return func(c *devstack.Config) { c.UI = true } }

// WithNamespaces registers extra namespaces besides "default".
func WithNamespaces(ns ...string) Option {
	return func(c *devstack.Config) { c.Namespaces = append(c.Namespaces, ns...) }
}

// WithDataDir runs on dir instead of a fresh t.TempDir(), e.g. to restart a
// stack on the state a previous one left.
func WithDataDir(dir string) Option { return func(c *devstack.Config) { c.DataDir = dir } }

// WithConfig lets a test set any other field.
func WithConfig(f func(*devstack.Config)) Option { return Option(f) }

// config is the base for every helper: free loopback ports, no UI, and the
// server log on stderr at error level unless DEVSTACK_LOG_LEVEL says
// otherwise ("none" silences it).
func config(opts []Option) devstack.Config {
	var cfg devstack.Config
	switch lvl := os.Getenv("DEVSTACK_LOG_LEVEL"); lvl {
	case "none":
		cfg.LogOutput = io.Discard
	default:
		cfg.LogLevel = lvl
	}
	for _, o := range opts {
		o(&cfg)
	}
	return cfg
}

// Start starts a stack private to t, on t.TempDir() unless WithDataDir says
// otherwise, and stops it in t.Cleanup. A server start takes a second of
// CPU; on a small machine prefer Shared unless the test needs its own
// database (for example to scan it for plaintext).
func Start(t testing.TB, opts ...Option) *devstack.Stack {
	t.Helper()
	cfg := config(opts)
	if cfg.DataDir == "" {
		// Requested before the Stop cleanup is registered, so the directory
		// is removed only after the server has closed the database.
		cfg.DataDir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	s, err := devstack.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start dev stack: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Errorf("stop dev stack: %v", err)
		}
	})
	return s
}

var shared struct {
	sync.Mutex
	stack *devstack.Stack
	err   error
	opts  []Option
}

// SetSharedOptions sets the options the shared stack starts with (for
// example extra namespaces). Call it from TestMain before the first Shared.
func SetSharedOptions(opts ...Option) {
	shared.Lock()
	defer shared.Unlock()
	shared.opts = opts
}

// Shared returns the test binary's one stack, starting it on first use in
// an ephemeral data directory. Tests sharing it must not depend on what
// others do there: use unique workflow ids and task queues. A start failure
// is remembered and fails every caller. Stop it with StopShared, or use
// Main, which does.
func Shared(t testing.TB) *devstack.Stack {
	t.Helper()
	s, err := sharedStack()
	if err != nil {
		t.Fatalf("shared dev stack: %v", err)
	}
	return s
}

func sharedStack() (*devstack.Stack, error) {
	shared.Lock()
	defer shared.Unlock()
	if shared.stack == nil && shared.err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
		defer cancel()
		// No DataDir: devstack makes a temporary one and removes it on Stop.
		shared.stack, shared.err = devstack.Start(ctx, config(shared.opts))
	}
	return shared.stack, shared.err
}

// StopShared stops the shared stack if it was started. Later calls to
// Shared start a new one.
func StopShared() error {
	shared.Lock()
	defer shared.Unlock()
	s := shared.stack
	shared.stack, shared.err = nil, nil
	if s == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return s.Stop(ctx)
}

// Main is a TestMain body: it runs the tests, stops the shared stack and
// exits. Use it as
//
//	func TestMain(m *testing.M) { devstacktest.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	if err := StopShared(); err != nil {
		fmt.Fprintf(os.Stderr, "devstacktest: stop shared stack: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}
