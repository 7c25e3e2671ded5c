// Command vaultdev runs a real Vault (v1.14.1) with Transit and KV v2 mounted on
// loopback, for Blindfold's tests and dev stack. When Vault is ready it prints
// one JSON line {"addr":…,"token":…,"transit_mount":…,"kv_mount":…} on stdout (with
// "ca_cert" under --tls-dir) and writes it to --ready-file, then runs until
// SIGINT or SIGTERM.
//
// It is a test fixture: the unseal key of a --storage-dir Vault is stored in
// that directory, and without --storage-dir everything, keys included, lives
// in memory and is gone when the process exits.
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

	"github.com/hashicorp/go-hclog"

	"github.com/blindfold-dev/blindfold/internal/vaultdev"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "vaultdev:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		cfg       vaultdev.Config
		readyFile string
		logLevel  string
	)
	flag.StringVar(&cfg.Addr, "addr", "127.0.0.1:8200", "loopback host:port to listen on (port 0 picks a free one)")
	flag.StringVar(&cfg.RootToken, "root-token", "", "fixed root token ID (default: generated)")
	flag.StringVar(&cfg.TransitMount, "transit-mount", vaultdev.DefaultTransitMount, "path to mount Transit at")
	flag.StringVar(&cfg.KVMount, "kv-mount", vaultdev.DefaultKVMount, "path to mount a KV version 2 engine at (the shared key store)")
	flag.StringVar(&cfg.StorageDir, "storage-dir", "", "keep Vault's data (and its unseal key) in this directory; default in memory")
	flag.StringVar(&cfg.TLSDir, "tls-dir", "", "serve HTTPS with a self-signed loopback certificate kept in this directory (ready JSON names it as ca_cert)")
	flag.StringVar(&readyFile, "ready-file", "", "also write the ready JSON line to this file")
	flag.StringVar(&logLevel, "log-level", "warn", "Vault log level: trace, debug, info, warn, error")
	flag.Parse()
	if flag.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	level := hclog.LevelFromString(logLevel)
	if level == hclog.NoLevel {
		return fmt.Errorf("unknown --log-level %q", logLevel)
	}
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "vault", Level: level, Output: os.Stderr})

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	srv, err := vaultdev.Start(ctx, cfg)
	if err != nil {
		return err
	}
	line, err := json.Marshal(srv.Info())
	if err != nil {
		return errors.Join(fmt.Errorf("encode ready line: %w", err), srv.Close())
	}
	line = append(line, '\n')
	if readyFile != "" {
		if err := vaultdev.WriteFileAtomic(readyFile, line, 0o600); err != nil {
			return errors.Join(err, srv.Close())
		}
	}
	if _, err := os.Stdout.Write(line); err != nil {
		return errors.Join(fmt.Errorf("print ready line: %w", err), srv.Close())
	}

	<-ctx.Done()
	stop()
	if err := srv.Close(); err != nil {
		return fmt.Errorf("shut down: %w", err)
	}
	return nil
}
