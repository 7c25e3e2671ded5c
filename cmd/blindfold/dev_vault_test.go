//go:build !nodev

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/blindfold-dev/blindfold/examples/hello"
	"github.com/blindfold-dev/blindfold/internal/vaultdevproc"
)

// TestDevCommandVault runs `blindfold dev --vault`: keys are wrapped by a real Vault Transit (vaultdev), no local
// master key is created, and the hello workflow runs through the proxy.
func TestDevCommandVault(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the embedded Temporal server and Vault")
	}
	if os.Getenv(vaultdevproc.EnvBinary) == "" {
		// Build once into the shared test cache rather than into the temporary data dir.
		t.Setenv(vaultdevproc.EnvBinary, vaultdevproc.Build(t))
	}
	dataDir := t.TempDir()
	a, dev := startDev(t, dataDir, "--vault", "--headless")
	if !strings.Contains(dev.out.String(), "vault transit is the key-encryption key") {
		t.Errorf("dev did not report Vault as the KEK:\n%s", dev.out.String())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, stopHello := startHello(t, a.Proxy)
	marker := fmt.Sprintf("vault-%d@example.com", time.Now().UnixNano())
	g, _, err := hello.Run(ctx, c, fmt.Sprintf("dev-vault-%d", time.Now().UnixNano()), hello.Request{Name: "Ada", Email: marker}, hello.Approval{By: "v"})
	stopHello()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(g.Text, marker) {
		t.Fatalf("greeting %+v", g)
	}

	keyDir := filepath.Join(dataDir, "keys")
	if _, err := os.Stat(filepath.Join(keyDir, "master.key")); !os.IsNotExist(err) {
		t.Errorf("dev --vault created a local master key (stat: %v)", err)
	}
	if _, err := os.Stat(filepath.Join(keyDir, "scopes", "default.keyset")); err != nil {
		t.Errorf("no wrapped keyset for namespace default: %v", err)
	}
	if err := dev.stop(t); err != nil {
		t.Fatalf("dev --vault stopped with %v\n%s", err, dev.out.String())
	}
}
