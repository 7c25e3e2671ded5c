// Package dev runs the whole Blindfold stack on one machine, on loopback: the embedded Temporal server and Web UI
// (internal/devstack), optionally a real Vault Transit (vaultdev) as the key-encryption key, and the gateway
// (internal/gateway) in front of the server with a dev codec endpoint. `blindfold dev` and tests use it.
//
// It is the only assembly that links the Temporal server and UI server; the production binary (built with the
// nodev tag) leaves it out.
package dev

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/blindfold-dev/blindfold/internal/devstack"
	"github.com/blindfold-dev/blindfold/internal/gateway"
	"github.com/blindfold-dev/blindfold/internal/vaultdevproc"
	"github.com/blindfold-dev/blindfold/keys/vault"
)

// Default ports. The proxy takes Temporal's standard frontend port so that SDK defaults go through encryption; the
// raw frontend moves next to it.
const (
	DefaultProxyPort   = 7233
	DefaultCodecPort   = 8081
	DefaultMetricsPort = 9464
)

// Config configures a dev stack. Port 0 picks a free port.
type Config struct {
	// DataDir holds the SQLite database, the keys (unless KeyDir), the audit log and vaultdev's storage.
	DataDir string
	// KeyDir is the key directory (default <DataDir>/keys).
	KeyDir string
	// DB, when set, is a postgres:// URL: the Temporal server keeps its state there instead of SQLite in DataDir
	// (devstack.Config.Postgres). The PostgreSQL server is the caller's; the databases and schema are created or
	// updated at start.
	DB string
	// Vault wraps the keys with Vault Transit from a vaultdev process (storage in <DataDir>/vault).
	Vault                                      bool
	ProxyPort, FrontendPort, UIPort, CodecPort int
	// MetricsPort of /metrics and /healthz; -1 turns the listener off.
	MetricsPort int
	// Headless starts no Web UI.
	Headless bool
	// Namespaces are registered besides "default".
	Namespaces []string
	// ServerLogLevel is the Temporal server's log level; "none" silences it.
	ServerLogLevel string
	Logger         *slog.Logger
}

// Addrs are the addresses of a running dev stack.
type Addrs struct {
	Proxy, Frontend, UI, Codec, Metrics, DataDir, KeyDir, AuditLog string
	// Database is the PostgreSQL URL of Temporal's state with its password masked; empty for SQLite.
	Database string
}

// maskPassword returns a URL with its password replaced, for banners and logs.
func maskPassword(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable URL)"
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// Stack is a running dev stack.
type Stack struct {
	addrs   Addrs
	log     *slog.Logger
	gw      *gateway.Gateway
	server  *devstack.Stack
	vault   *vaultdevproc.Proc
	stopped bool
}

// Addrs returns the stack's addresses.
func (s *Stack) Addrs() Addrs { return s.addrs }

// Gateway is the running gateway (proxy, codec endpoint, metrics).
func (s *Stack) Gateway() *gateway.Gateway { return s.gw }

// Done delivers the first error of a part that stopped serving on its own.
func (s *Stack) Done() <-chan error { return s.gw.Done() }

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// KeysConfig is the key configuration dev uses for keyDir: keysets created on first use, a master key created if
// missing (or Vault when withVault is set; its address and token are filled in by Start).
func KeysConfig(keyDir string, withVault bool) gateway.KeysConfig {
	kc := gateway.KeysConfig{Dir: keyDir, KEK: gateway.KEKLocal, CreateMasterKey: true, AutoCreate: true}
	if withVault {
		kc.KEK = gateway.KEKVault
		kc.Vault = vault.Config{CreateKeys: true}
	}
	return kc
}

// Start starts the stack: listeners first (so a port taken by another Temporal is reported before anything runs),
// then vaultdev if asked, the Temporal server and Web UI, then the gateway in front of the server. Whatever failed,
// what was started is stopped again.
func Start(ctx context.Context, cfg Config) (_ *Stack, err error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for name, p := range map[string]int{"--port": cfg.ProxyPort, "--frontend-port": cfg.FrontendPort, "--ui-port": cfg.UIPort, "--codec-port": cfg.CodecPort} {
		if p < 0 || p > 65535 {
			return nil, fmt.Errorf("%s %d: out of range", name, p)
		}
	}
	if cfg.MetricsPort < -1 || cfg.MetricsPort > 65535 {
		return nil, fmt.Errorf("--metrics-port %d: out of range", cfg.MetricsPort)
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	s := &Stack{log: log}
	var listeners []net.Listener
	defer func() {
		if err != nil {
			for _, l := range listeners {
				_ = l.Close()
			}
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			err = errors.Join(err, s.Stop(sctx, time.Second))
		}
	}()
	// The proxy's port first: if another Temporal already holds 7233, say so before starting anything.
	proxyLis, err := net.Listen("tcp", loopback(cfg.ProxyPort))
	if err != nil {
		return nil, fmt.Errorf("proxy port (--port): %w", err)
	}
	listeners = append(listeners, proxyLis)
	// The codec endpoint's URL goes into the Web UI's configuration, so its port is bound before the UI starts.
	codecLis, err := net.Listen("tcp", loopback(cfg.CodecPort))
	if err != nil {
		return nil, fmt.Errorf("codec endpoint port (--codec-port): %w", err)
	}
	listeners = append(listeners, codecLis)
	keyDir := cfg.KeyDir
	if keyDir == "" {
		keyDir = filepath.Join(dataDir, "keys")
	}
	kc := KeysConfig(keyDir, cfg.Vault)
	if cfg.Vault {
		if s.vault, err = startVault(ctx, dataDir); err != nil {
			return nil, err
		}
		kc.Vault.Address = s.vault.Addr()
		kc.Vault.Auth = vault.Auth{Method: vault.AuthToken, Token: s.vault.Token()}
		log.Info("vault transit is the key-encryption key", "vault", s.vault.Addr())
	}

	// The UI's origin goes into the codec endpoint's CORS allowlist, so its port is fixed first.
	uiPort := cfg.UIPort
	if !cfg.Headless && uiPort == 0 {
		if uiPort, err = freeLoopbackPort(); err != nil {
			return nil, err
		}
	}
	var origins []string
	if !cfg.Headless {
		origins = []string{"http://" + loopback(uiPort), "http://localhost:" + strconv.Itoa(uiPort)}
	}
	codecURL := "http://" + codecLis.Addr().String()
	scfg := devstack.Config{
		DataDir:         dataDir,
		Postgres:        cfg.DB,
		FrontendPort:    cfg.FrontendPort,
		UI:              !cfg.Headless,
		UIPort:          uiPort,
		UICodecEndpoint: codecURL,
		Namespaces:      cfg.Namespaces,
		LogLevel:        cfg.ServerLogLevel,
	}
	if cfg.ServerLogLevel == "none" {
		scfg.LogLevel, scfg.LogOutput = "", io.Discard
	}
	if s.server, err = devstack.Start(ctx, scfg); err != nil {
		return nil, err
	}

	metricsListen := ""
	if cfg.MetricsPort >= 0 {
		metricsListen = loopback(cfg.MetricsPort)
	}
	auditLog := filepath.Join(dataDir, "audit.jsonl")
	s.gw, err = gateway.Start(ctx, gateway.Config{
		Keys: kc,
		// No allowlist: every namespace the server knows.
		Proxy:         gateway.ProxyConfig{Listener: proxyLis, Upstream: s.server.FrontendAddr()},
		CodecEndpoint: &gateway.CodecEndpointConfig{Listener: codecLis, Dev: true, AuditLog: auditLog, Origins: origins},
		MetricsListen: metricsListen,
		Logger:        log,
	})
	if err != nil {
		return nil, err
	}
	s.addrs = Addrs{Proxy: s.gw.Addr(), Frontend: s.server.FrontendAddr(), UI: s.server.UIAddr(), Codec: s.gw.CodecURL(),
		Metrics: s.gw.MetricsURL(), DataDir: dataDir, KeyDir: keyDir, AuditLog: auditLog}
	if cfg.DB != "" {
		s.addrs.Database = maskPassword(cfg.DB)
	}
	return s, nil
}

// startVault runs vaultdev with its storage in <dataDir>/vault, so Transit keys survive a restart of dev.
func startVault(ctx context.Context, dataDir string) (*vaultdevproc.Proc, error) {
	bin, err := vaultdevproc.BuildBinary(ctx, filepath.Join(dataDir, "bin", "vaultdev"))
	if err != nil {
		return nil, fmt.Errorf("build vaultdev (or set %s): %w", vaultdevproc.EnvBinary, err)
	}
	proc, err := vaultdevproc.Launch(ctx, bin, vaultdevproc.Options{StorageDir: filepath.Join(dataDir, "vault")})
	if err != nil {
		return nil, fmt.Errorf("start vaultdev: %w", err)
	}
	return proc, nil
}

// Stop stops what runs, callers' door first: the gateway (its proxy drained for up to drain, then the codec
// endpoint), then the Web UI and the server, then vaultdev.
func (s *Stack) Stop(ctx context.Context, drain time.Duration) error {
	if s.stopped {
		return nil
	}
	s.stopped = true
	var errs []error
	t := time.Now()
	if s.gw != nil {
		dctx, cancel := context.WithTimeout(ctx, drain)
		errs = append(errs, s.gw.Stop(dctx))
		cancel()
		s.log.Debug("dev: gateway stopped", "took", time.Since(t))
	}
	if s.server != nil {
		errs = append(errs, s.server.Stop(ctx))
		s.log.Debug("dev: web ui and temporal server stopped", "took", time.Since(t))
	}
	if s.vault != nil {
		if err := s.vault.Stop(); err != nil {
			s.log.Warn("stop vaultdev", "error", err.Error())
		}
	}
	return errors.Join(errs...)
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
