// Command proxyproc runs only the Blindfold proxy (local key directory, no metrics, no codec endpoint), so the bench can
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
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/keys"
	"github.com/blindfold-dev/blindfold/proxy"
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
	km, err := keys.OpenLocal(keyDir, keys.WithAutoCreate(true))
	if err != nil {
		return err
	}
	c, err := codec.New(km)
	if err != nil {
		return err
	}
	p, err := proxy.New(proxy.Config{Upstream: upstream, Codec: c, Logger: log})
	if err != nil {
		return err
	}
	var lis net.Listener
	// A restarted proxy may find its old port briefly busy.
	for i := 0; ; i++ {
		lis, err = net.Listen("tcp", listen)
		if err == nil || i == 50 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	fmt.Printf("listening %s\n", lis.Addr())
	done := make(chan error, 1)
	go func() { done <- p.Serve(lis) }()

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	stdin := make(chan struct{})
	go func() { io.Copy(io.Discard, os.Stdin); close(stdin) }()
	select {
	case <-sig:
	case <-stdin:
	case err := <-done:
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return p.Shutdown(ctx)
}
