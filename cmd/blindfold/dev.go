//go:build !nodev

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/blindfold-dev/blindfold/internal/dev"
	"github.com/blindfold-dev/blindfold/internal/devstack"
)

type devFlags struct {
	dataDir      string
	db           string
	keyDir       string
	vault        bool
	proxyPort    int
	frontendPort int
	uiPort       int
	codecPort    int
	metricsPort  int
	headless     bool
	namespaces   []string
	logFormat    string
	logLevel     string
	serverLog    string
	drain        time.Duration
}

// devAddrs are the addresses of a running dev stack.
type devAddrs = dev.Addrs

// testHookDevReady, if set (by tests), is called once the dev stack is ready.
var testHookDevReady func(devAddrs)

func init() { rootCmd.AddCommand(newDevCmd()) }

// defaultDevDir is ~/.blindfold/dev: one place per user, next to the default key directory, so the stack keeps its
// workflows and keys whatever directory it is started from.
func defaultDevDir() string {
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		return filepath.Join(".blindfold", "dev")
	}
	return filepath.Join(home, ".blindfold", "dev")
}

func newDevCmd() *cobra.Command { return newDevCmdFor(&devFlags{}) }

// newDevCmdFor builds the command over o, which receives the parsed flags (tests read it).
func newDevCmdFor(o *devFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run Temporal, the Web UI and Blindfold on this machine, in one process",
		Long: `Dev starts, in this process and on loopback only:

  - the Blindfold proxy on 127.0.0.1:7233, Temporal's standard port, so every SDK
    with default settings goes through encryption;
  - a Temporal server (SQLite in --data-dir, namespace "default") whose raw
    frontend listens on 127.0.0.1:7234 and stores only ciphertext;
  - the Temporal Web UI on 127.0.0.1:8233, reading the raw frontend and decoding
    payloads in the browser through the codec endpoint;
  - the codec endpoint on 127.0.0.1:8081 (no token needed on loopback; every
    decode is written to <data-dir>/audit.jsonl);
  - /metrics and /healthz on 127.0.0.1:9464.

State (workflows, keys, audit log) lives in --data-dir, ~/.blindfold/dev by
default, and survives restarts.

--db postgres://USER:PASSWORD@HOST:PORT/DATABASE keeps Temporal's state in a
PostgreSQL you run instead (12 or newer; the production path). Dev creates the
database DATABASE and DATABASE_visibility if they are missing (the user then
needs CREATEDB) and creates or updates Temporal's schema in both, with the
server's own schema tooling; keys and the audit log stay in --data-dir. Query
parameters (sslmode=disable, sslrootcert=…) go to the driver; the default
database name is "temporal". Prefer $BLINDFOLD_DB to put a password on the
command line. Keys are in <data-dir>/keys unless --key-dir is
given; a namespace's keyset is created on its first call. Port 0 picks a free one.
Ctrl-C stops everything: the proxy first (drained for --drain-timeout), then
the codec endpoint, the Web UI and the server.`,
		Example: `  blindfold dev
  go run ./examples/hello/worker     # in a second terminal
  go run ./examples/hello/starter    # in a third
  blindfold dev --data-dir /tmp/bf --port 17233 --frontend-port 17234 --ui-port 18233
  blindfold dev --db postgres://temporal:secret@127.0.0.1:5432/temporal?sslmode=disable`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDev(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dataDir, "data-dir", defaultDevDir(), "directory of the SQLite database, keys and audit log")
	f.StringVar(&o.db, "db", os.Getenv("BLINDFOLD_DB"), "postgres:// URL of a PostgreSQL for Temporal's state instead of SQLite in --data-dir; databases and schema are created or updated (env BLINDFOLD_DB)")
	f.StringVar(&o.keyDir, "key-dir", "", "key directory (default <data-dir>/keys)")
	f.BoolVar(&o.vault, "vault", false, "wrap the keys with Vault Transit: starts vaultdev (a real Vault 1.14 on loopback, data in <data-dir>/vault; built from internal/vaultdev, or $BLINDFOLD_VAULTDEV) instead of using the local master key")
	f.IntVarP(&o.proxyPort, "port", "p", dev.DefaultProxyPort, "port of the Blindfold proxy (point SDKs here)")
	f.IntVar(&o.frontendPort, "frontend-port", devstack.DefaultFrontendPort, "port of the raw Temporal frontend (ciphertext; for the Web UI and temporal CLI)")
	f.IntVar(&o.uiPort, "ui-port", devstack.DefaultUIPort, "port of the Temporal Web UI")
	f.IntVar(&o.codecPort, "codec-port", dev.DefaultCodecPort, "port of the codec endpoint the Web UI decodes through")
	f.IntVar(&o.metricsPort, "metrics-port", dev.DefaultMetricsPort, "port of /metrics and /healthz (-1: off)")
	f.BoolVar(&o.headless, "headless", false, "do not start the Web UI")
	f.StringSliceVarP(&o.namespaces, "namespace", "n", nil, "register this namespace too (repeatable)")
	f.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&o.logLevel, "log-level", "info", "Blindfold's log level: debug (one line per RPC), info, warn or error")
	f.StringVar(&o.serverLog, "server-log-level", "error", "the Temporal server's log level: debug, info, warn, error or none")
	f.DurationVar(&o.drain, "drain-timeout", 2*time.Second, "on Ctrl-C, how long the proxy waits for in-flight calls (workers' long polls) before cutting them")
	return cmd
}

func runDev(ctx context.Context, stdout, stderr io.Writer, o *devFlags) error {
	log, err := newLogger(stderr, o.logFormat, o.logLevel)
	if err != nil {
		return err
	}
	st, err := dev.Start(ctx, o.config(log))
	if err != nil {
		return err
	}
	addrs := st.Addrs()
	printDevBanner(stdout, addrs, addrs.Proxy == net.JoinHostPort("127.0.0.1", strconv.Itoa(sdkDefaultPort)))
	if testHookDevReady != nil {
		testHookDevReady(addrs)
	}
	var runErr error
	select {
	case <-ctx.Done():
		fmt.Fprintln(stdout, "\nstopping: proxy, codec endpoint, web ui, temporal server")
	case runErr = <-st.Done():
	}
	// Whatever ended the run, stop what runs: the proxy first (callers see it go before the backend does), then the
	// codec endpoint, then the Web UI and the server.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	return errors.Join(runErr, st.Stop(sctx, o.drain))
}

// config is the dev stack the flags describe.
func (o *devFlags) config(log *slog.Logger) dev.Config {
	return dev.Config{
		DataDir: o.dataDir, DB: o.db, KeyDir: o.keyDir, Vault: o.vault,
		ProxyPort: o.proxyPort, FrontendPort: o.frontendPort, UIPort: o.uiPort, CodecPort: o.codecPort, MetricsPort: o.metricsPort,
		Headless: o.headless, Namespaces: o.namespaces, ServerLogLevel: o.serverLog, Logger: log,
	}
}

// sdkDefaultPort is the port SDKs dial when given no address.
const sdkDefaultPort = 7233

func printDevBanner(w io.Writer, a devAddrs, sdkDefault bool) {
	fmt.Fprintf(w, "Blindfold dev stack is ready (data: %s)\n", a.DataDir)
	if a.Database != "" {
		fmt.Fprintf(w, "Temporal's state is in PostgreSQL: %s\n", a.Database)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  Temporal via Blindfold  %-28s SDKs and workers connect here: payloads are encrypted\n", a.Proxy)
	fmt.Fprintf(w, "  Temporal raw frontend   %-28s stores ciphertext only (Web UI, temporal CLI)\n", a.Frontend)
	if a.UI != "" {
		fmt.Fprintf(w, "  Web UI                  %-28s decodes in your browser via the codec endpoint\n", a.UI)
	}
	fmt.Fprintf(w, "  Codec endpoint          %-28s no token needed on loopback; decodes audited in %s\n", a.Codec, a.AuditLog)
	if a.Metrics != "" {
		fmt.Fprintf(w, "  Metrics                 %s\n", a.Metrics)
	}
	fmt.Fprintf(w, "  Keys                    %s\n\n", a.KeyDir)
	env := ""
	if !sdkDefault {
		env = "TEMPORAL_ADDRESS=" + a.Proxy + " "
	}
	fmt.Fprintf(w, "Run the example (from the repository root), each in its own terminal:\n")
	fmt.Fprintf(w, "  %sgo run ./examples/hello/worker\n", env)
	fmt.Fprintf(w, "  %sgo run ./examples/hello/starter\n", env)
	fmt.Fprintf(w, "What the backend stored:\n")
	fmt.Fprintf(w, "  temporal workflow show --address %s --workflow-id hello-blindfold\n", a.Frontend)
	fmt.Fprintf(w, "The same, decoded through the codec endpoint (audited):\n")
	fmt.Fprintf(w, "  temporal workflow show --address %s --workflow-id hello-blindfold --codec-endpoint %s\n", a.Frontend, a.Codec)
	if a.UI != "" {
		fmt.Fprintf(w, "In the Web UI: %s/namespaces/default/workflows\n", a.UI)
	}
	fmt.Fprintf(w, "\nCtrl-C stops everything.\n")
}
