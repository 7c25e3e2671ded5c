// Package gatewayenv starts the Blindfold gateway for tests through internal/gateway, the assembly the binary ships,
// and stops it when the test ends.
package gatewayenv

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/blindfold-dev/blindfold/internal/gateway"
	"github.com/blindfold-dev/blindfold/internal/testenv"
)

// StopTimeout bounds the drain when a test's gateway is stopped in t.Cleanup.
const StopTimeout = 10 * time.Second

// Start starts a gateway from cfg and stops it when the test ends (the drain bounded by StopTimeout; a stop error
// fails the test). An empty Proxy.Listen (and no Listener) listens on a free loopback port; a nil Logger discards.
func Start(t testing.TB, cfg gateway.Config) *gateway.Gateway {
	t.Helper()
	if cfg.Proxy.Upstream != "" && cfg.Proxy.Listen == "" && cfg.Proxy.Listener == nil {
		cfg.Proxy.Listen = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = testenv.DiscardLogger()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	g, err := gateway.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start gateway: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), StopTimeout)
		defer cancel()
		if err := g.Stop(ctx); err != nil {
			t.Errorf("stop gateway: %v", err)
		}
	})
	return g
}

// LocalKeys is the common key set-up: a fresh local master key and keysets created on first use, in keyDir.
func LocalKeys(keyDir string) gateway.KeysConfig {
	return gateway.KeysConfig{Dir: keyDir, CreateMasterKey: true, AutoCreate: true}
}

// Frontend is what a dev stack offers a gateway: the raw Temporal frontend (a *devstack.Stack is one).
type Frontend interface {
	FrontendAddr() string
}

// InFront starts the common case: a gateway in front of stack's frontend with LocalKeys in a new t.TempDir(). opts
// adjust the Config before the start.
func InFront(t testing.TB, stack Frontend, opts ...func(*gateway.Config)) *gateway.Gateway {
	t.Helper()
	cfg := gateway.Config{
		Keys:  LocalKeys(filepath.Join(t.TempDir(), "keys")),
		Proxy: gateway.ProxyConfig{Upstream: stack.FrontendAddr()},
	}
	for _, o := range opts {
		o(&cfg)
	}
	return Start(t, cfg)
}
