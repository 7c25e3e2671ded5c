// Command proxyproc runs only the Blindfold gateway's proxy (local key directory, no metrics listener, no codec
// endpoint; built by the same assembly as blindfold proxy), so the bench can
// measure the proxy's memory in a process of its own, free of the embedded server and the bench's own allocations.
//
// It prints "listening <addr>" on stdout once it serves, and exits on SIGTERM/SIGINT or when stdin is closed (so it
// never outlives the bench that started it).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/blindfold-dev/blindfold/internal/gateway"
)

func main() {
	upstream := flag.String("upstream", "", "Temporal frontend host:port")
	listen := flag.String("listen", "127.0.0.1:0", "loopback address to serve on")
	keyDir := flag.String("key-dir", "", "local key directory (created if missing)")
	flag.Parse()
	if err := run(*upstream, *listen, *keyDir); err != nil {
		fmt.Fprintln(os.Stderr, "proxyproc:", err)
		os.Exit(1)
	}
}

func run(upstream, listen, keyDir string) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	var (
		g   *gateway.Gateway
		err error
	)
	// A restarted proxy may find its old port briefly busy.
	for i := 0; ; i++ {
		g, err = gateway.Start(context.Background(), gateway.Config{
			Keys:   gateway.KeysConfig{Dir: keyDir, CreateMasterKey: true, AutoCreate: true},
			Proxy:  gateway.ProxyConfig{Listen: listen, Upstream: upstream},
			Logger: log,
		})
		if err == nil || i == 50 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	fmt.Printf("listening %s\n", g.Addr())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	stdin := make(chan struct{})
	go func() { io.Copy(io.Discard, os.Stdin); close(stdin) }()
	select {
	case <-sig:
	case <-stdin:
	case err := <-g.Done():
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return g.Stop(ctx)
}
