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

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/internal/devstack"
	"github.com/blindfold-dev/blindfold/internal/vaultdevproc"
	"github.com/blindfold-dev/blindfold/keys"
	"github.com/blindfold-dev/blindfold/keys/vault"
	"github.com/blindfold-dev/blindfold/proxy"
)

// Default ports of `blindfold dev`. The proxy takes Temporal's standard frontend port so that SDK defaults go through
// encryption; the raw frontend moves next to it.
const (
	DefaultDevProxyPort   = 7233
	DefaultDevCodecPort   = 8081
	DefaultDevMetricsPort = 9464
)

type devFlags struct {
	dataDir      string
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
type devAddrs struct {
	Proxy, Frontend, UI, Codec, Metrics, DataDir, KeyDir, AuditLog string
}

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

func newDevCmd() *cobra.Command {
	o := &devFlags{}
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
default, and survives restarts. Keys are in <data-dir>/keys unless --key-dir is
given; a namespace's keyset is created on its first call. Port 0 picks a free one.
Ctrl-C stops everything: the proxy first (drained for --drain-timeout), then
the codec endpoint, the Web UI and the server.`,
		Example: `  blindfold dev
  go run ./examples/hello/worker     # in a second terminal
  go run ./examples/hello/starter    # in a third
  blindfold dev --data-dir /tmp/bf --port 17233 --frontend-port 17234 --ui-port 18233`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDev(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dataDir, "data-dir", defaultDevDir(), "directory of the SQLite database, keys and audit log")
	f.StringVar(&o.keyDir, "key-dir", "", "key directory (default <data-dir>/keys)")
	f.BoolVar(&o.vault, "vault", false, "wrap the keys with Vault Transit: starts vaultdev (a real Vault 1.14 on loopback, data in <data-dir>/vault; built from internal/vaultdev, or $BLINDFOLD_VAULTDEV) instead of using the local master key")
	f.IntVarP(&o.proxyPort, "port", "p", DefaultDevProxyPort, "port of the Blindfold proxy (point SDKs here)")
	f.IntVar(&o.frontendPort, "frontend-port", devstack.DefaultFrontendPort, "port of the raw Temporal frontend (ciphertext; for the Web UI and temporal CLI)")
	f.IntVar(&o.uiPort, "ui-port", devstack.DefaultUIPort, "port of the Temporal Web UI")
	f.IntVar(&o.codecPort, "codec-port", DefaultDevCodecPort, "port of the codec endpoint the Web UI decodes through")
	f.IntVar(&o.metricsPort, "metrics-port", DefaultDevMetricsPort, "port of /metrics and /healthz (-1: off)")
	f.BoolVar(&o.headless, "headless", false, "do not start the Web UI")
	f.StringSliceVarP(&o.namespaces, "namespace", "n", nil, "register this namespace too (repeatable)")
	f.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&o.logLevel, "log-level", "info", "Blindfold's log level: debug (one line per RPC), info, warn or error")
	f.StringVar(&o.serverLog, "server-log-level", "error", "the Temporal server's log level: debug, info, warn, error or none")
	f.DurationVar(&o.drain, "drain-timeout", 2*time.Second, "on Ctrl-C, how long the proxy waits for in-flight calls (workers' long polls) before cutting them")
	return cmd
}

// freeLoopbackPort returns a port that was free on 127.0.0.1 a moment ago.
func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

func runDev(ctx context.Context, stdout, stderr io.Writer, o *devFlags) (err error) {
	begin := time.Now()
	log, err := newLogger(stderr, o.logFormat, o.logLevel)
	if err != nil {
		return err
	}
	for name, p := range map[string]int{"--port": o.proxyPort, "--frontend-port": o.frontendPort, "--ui-port": o.uiPort, "--codec-port": o.codecPort} {
		if p < 0 || p > 65535 {
			return fmt.Errorf("%s %d: out of range", name, p)
		}
	}
	if o.metricsPort < -1 || o.metricsPort > 65535 {
		return fmt.Errorf("--metrics-port %d: out of range", o.metricsPort)
	}
	if o.dataDir, err = filepath.Abs(o.dataDir); err != nil {
		return err
	}
	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	var (
		g     *gateway
		ep    *codecEndpoint
		stack *devstack.Stack
	)
	// The proxy's port first: if another Temporal already holds 7233, say so before starting anything.
	proxyLis, err := net.Listen("tcp", loopback(o.proxyPort))
	if err != nil {
		return fmt.Errorf("proxy port (--port): %w", err)
	}
	defer func() {
		if g == nil {
			_ = proxyLis.Close()
		}
	}()
	keyDir := o.keyDir
	if keyDir == "" {
		keyDir = filepath.Join(o.dataDir, "keys")
	}
	var km *keys.Manager
	if o.vault {
		kek, stopVault, err := startDevVault(ctx, o.dataDir, log)
		if err != nil {
			return err
		}
		defer stopVault()
		km, err = keys.NewManager(keys.NewDirStore(keyDir), kek, keys.WithAutoCreate(true), keys.WithLogger(log),
			keys.WithBackgroundRefresh(5*time.Second))
		if err != nil {
			return fmt.Errorf("open keys in %s with vault: %w", keyDir, err)
		}
	} else {
		km, err = keys.OpenLocal(keyDir, keys.WithAutoCreate(true), keys.WithLogger(log))
		if err != nil {
			return fmt.Errorf("open keys in %s: %w", keyDir, err)
		}
	}
	c, err := codec.New(km)
	if err != nil {
		return err
	}

	// Whatever failed, stop what runs: the proxy first (callers see it go before the backend does), then the codec
	// endpoint, then the Web UI and the server.
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		errs := []error{err}
		t := time.Now()
		if g != nil {
			errs = append(errs, g.stop(sctx, o.drain, log))
			log.Debug("dev: proxy stopped", "took", time.Since(t))
		}
		if ep != nil {
			errs = append(errs, ep.Stop(sctx))
			log.Debug("dev: codec endpoint stopped", "took", time.Since(t))
		}
		if stack != nil {
			errs = append(errs, stack.Stop(sctx))
			log.Debug("dev: web ui and temporal server stopped", "took", time.Since(t))
		}
		err = errors.Join(errs...)
	}()

	// The UI's origin goes into the codec endpoint's CORS allowlist, so its port is fixed first.
	uiPort := o.uiPort
	if !o.headless && uiPort == 0 {
		if uiPort, err = freeLoopbackPort(); err != nil {
			return err
		}
	}
	var origins []string
	if !o.headless {
		origins = []string{"http://" + loopback(uiPort), "http://localhost:" + strconv.Itoa(uiPort)}
	}
	auditLog := filepath.Join(o.dataDir, "audit.jsonl")
	if ep, err = startDevCodecEndpoint(c, loopback(o.codecPort), auditLog, log.With("component", "codec-endpoint"), origins...); err != nil {
		return err
	}

	scfg := devstack.Config{
		DataDir:         o.dataDir,
		FrontendPort:    o.frontendPort,
		UI:              !o.headless,
		UIPort:          uiPort,
		UICodecEndpoint: ep.URL,
		Namespaces:      o.namespaces,
		LogLevel:        o.serverLog,
	}
	if o.serverLog == "none" {
		scfg.LogLevel, scfg.LogOutput = "", io.Discard
	}
	log.Debug("dev: keys and codec endpoint ready", "elapsed", time.Since(begin))
	if stack, err = devstack.Start(ctx, scfg); err != nil {
		return err
	}
	log.Debug("dev: temporal server and web ui ready", "elapsed", time.Since(begin))

	metricsListen := ""
	if o.metricsPort >= 0 {
		metricsListen = loopback(o.metricsPort)
	}
	g, err = startGateway(ctx, gatewayConfig{
		// Keys are created on first use in dev; no allowlist: every namespace the server knows.
		proxy:    proxy.Config{Upstream: stack.FrontendAddr(), Codec: c},
		listener: proxyLis, metricsListen: metricsListen, keyStats: km, log: log,
	})
	if err != nil {
		return err
	}

	addrs := devAddrs{Proxy: g.addr, Frontend: stack.FrontendAddr(), UI: stack.UIAddr(), Codec: ep.URL,
		Metrics: g.metricsURL(), DataDir: o.dataDir, KeyDir: keyDir, AuditLog: auditLog}
	log.Debug("dev: proxy serving", "elapsed", time.Since(begin))
	printDevBanner(stdout, addrs, g.addr == loopback(sdkDefaultPort))
	if testHookDevReady != nil {
		testHookDevReady(addrs)
	}

	select {
	case <-ctx.Done():
		fmt.Fprintln(stdout, "\nstopping: proxy, codec endpoint, web ui, temporal server")
		return nil
	case err := <-g.serveErr:
		return err
	case err := <-ep.Done():
		return fmt.Errorf("codec endpoint: %w", err)
	}
}

// sdkDefaultPort is the port SDKs dial when given no address.
const sdkDefaultPort = 7233

func printDevBanner(w io.Writer, a devAddrs, sdkDefault bool) {
	fmt.Fprintf(w, "Blindfold dev stack is ready (data: %s)\n\n", a.DataDir)
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
	if a.UI != "" {
		fmt.Fprintf(w, "The same workflow, decoded: %s/namespaces/default/workflows\n", a.UI)
	}
	fmt.Fprintf(w, "\nCtrl-C stops everything.\n")
}

// startDevVault runs vaultdev with its storage in <dataDir>/vault (so Transit keys survive a restart of dev) and
// returns a Transit KEK on it and a function that stops both.
func startDevVault(ctx context.Context, dataDir string, log *slog.Logger) (*vault.KEK, func(), error) {
	bin, err := vaultdevproc.BuildBinary(ctx, filepath.Join(dataDir, "bin", "vaultdev"))
	if err != nil {
		return nil, nil, fmt.Errorf("build vaultdev (or set %s): %w", vaultdevproc.EnvBinary, err)
	}
	proc, err := vaultdevproc.Launch(ctx, bin, vaultdevproc.Options{StorageDir: filepath.Join(dataDir, "vault")})
	if err != nil {
		return nil, nil, fmt.Errorf("start vaultdev: %w", err)
	}
	kek, err := vault.NewKEK(ctx, vault.Config{
		Address:    proc.Addr(),
		Auth:       vault.Auth{Method: vault.AuthToken, Token: proc.Token()},
		CreateKeys: true,
		Logger:     log,
	})
	if err != nil {
		_ = proc.Stop()
		return nil, nil, fmt.Errorf("vault transit kek: %w", err)
	}
	log.Info("vault transit is the key-encryption key", "vault", proc.Addr())
	return kek, func() {
		kek.Close()
		if err := proc.Stop(); err != nil {
			log.Warn("stop vaultdev", "error", err.Error())
		}
	}, nil
}
