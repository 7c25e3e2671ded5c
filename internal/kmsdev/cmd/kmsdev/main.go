// Command kmsdev runs local-kms, a real AWS KMS implementation, on loopback for Blindfold's tests. When it is ready it
// prints one JSON line {"endpoint":…,"region":…,"account_id":…} on stdout, then runs until SIGINT or SIGTERM, when it
// closes its database so a restarted kmsdev on the same --data-dir finds the same keys.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/blindfold-dev/blindfold/internal/kmsdev"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "kmsdev:", err)
		os.Exit(1)
	}
}

func run() error {
	var cfg kmsdev.Config
	flag.StringVar(&cfg.Addr, "addr", "127.0.0.1:0", "loopback host:port to listen on (port 0 picks a free one)")
	flag.StringVar(&cfg.DataDir, "data-dir", "", "directory of the key database (required; kept across restarts)")
	flag.StringVar(&cfg.Region, "region", kmsdev.DefaultRegion, "region in key ARNs")
	flag.StringVar(&cfg.AccountID, "account-id", kmsdev.DefaultAccountID, "account id in key ARNs")
	flag.Parse()
	if flag.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := kmsdev.Start(cfg)
	if err != nil {
		return err
	}
	line, err := json.Marshal(srv.Info())
	if err != nil {
		return errors.Join(fmt.Errorf("encode ready line: %w", err), srv.Close())
	}
	if _, err := os.Stdout.Write(append(line, '\n')); err != nil {
		return errors.Join(fmt.Errorf("print ready line: %w", err), srv.Close())
	}
	<-ctx.Done()
	return srv.Close()
}
