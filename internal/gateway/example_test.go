package gateway_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/blindfold-dev/blindfold/internal/gateway"
)

// A gateway in front of a Temporal frontend, with keys in a local directory and metrics on loopback. The upstream
// connection is made on the first call, so Start succeeds before the frontend answers.
func ExampleStart() {
	dir, _ := os.MkdirTemp("", "blindfold-example-")
	defer os.RemoveAll(dir)
	g, err := gateway.Start(context.Background(), gateway.Config{
		Keys: gateway.KeysConfig{Dir: filepath.Join(dir, "keys"), CreateMasterKey: true, AutoCreate: true},
		Proxy: gateway.ProxyConfig{
			Listen:   "127.0.0.1:0",
			Upstream: "127.0.0.1:7234", // the raw Temporal frontend
		},
		MetricsListen: "127.0.0.1:0",
	})
	if err != nil {
		fmt.Println("start:", err)
		return
	}
	fmt.Println("proxy serving:", g.Addr() != "")
	fmt.Println("metrics at /metrics:", filepath.Base(g.MetricsURL()))

	// Drain for at most 5 s, then stop everything.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fmt.Println("stopped:", g.Stop(ctx) == nil)
	// Output:
	// proxy serving: true
	// metrics at /metrics: metrics
	// stopped: true
}
