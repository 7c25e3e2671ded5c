package gatewayenv_test

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/blindfold-dev/blindfold/internal/gateway"
	"github.com/blindfold-dev/blindfold/internal/testenv/gatewayenv"
)

type frontend string

func (f frontend) FrontendAddr() string { return string(f) }

// TestInFront starts a gateway (the upstream is dialed lazily, so none need answer), checks it serves on loopback with
// its keys in a temporary directory, and that the cleanup stops it.
func TestInFront(t *testing.T) {
	var addr, keyDir string
	t.Run("start", func(t *testing.T) {
		g := gatewayenv.InFront(t, frontend("127.0.0.1:1"), func(c *gateway.Config) { keyDir = c.Keys.Dir })
		addr = g.Addr()
		if host, _, err := net.SplitHostPort(addr); err != nil || host != "127.0.0.1" {
			t.Fatalf("gateway address %q, want loopback", addr)
		}
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("gateway not serving: %v", err)
		}
		conn.Close()
		if _, err := os.Stat(filepath.Join(keyDir, "master.key")); err != nil {
			t.Fatalf("no master key in the test's key directory: %v", err)
		}
		if g.Codec() == nil || g.Keys() == nil {
			t.Fatal("gateway without codec or keys")
		}
	})
	// The subtest's cleanup stopped the gateway.
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		conn.Close()
		t.Fatalf("gateway still serving on %s after the test ended", addr)
	}
}
