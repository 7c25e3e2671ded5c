package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	grpcxds "google.golang.org/grpc/xds"
	"gopkg.in/yaml.v3"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/keys"
	"github.com/blindfold-dev/blindfold/keys/vault"
	"github.com/blindfold-dev/blindfold/policy"
	"github.com/blindfold-dev/blindfold/proxy"
	"github.com/blindfold-dev/blindfold/proxy/observe"
)

func init() { rootCmd.AddCommand(newProxyCmd()) }

// DefaultMetricsListen is where `blindfold proxy` serves /metrics and /healthz unless told otherwise.
const DefaultMetricsListen = "127.0.0.1:9464"

// envPrefix prefixes the environment variable of every flag: --upstream-ca is BLINDFOLD_UPSTREAM_CA.
const envPrefix = "BLINDFOLD_"

type proxyFlags struct {
	config string

	upstream           string
	upstreamTLS        bool
	upstreamCA         string
	upstreamCert       string
	upstreamKey        string
	upstreamServerName string
	apiKey             string
	apiKeyFile         string

	listen         string
	insecureListen bool
	xdsServer      bool
	tlsCert        string
	tlsKey         string
	clientCA       string
	allowNS        []string
	policyFile     string
	maxRecv        int
	reflection     bool

	keyDir      string
	createKeys  bool
	rotateEvery time.Duration
	compress    int

	metricsListen   string
	logFormat       string
	logLevel        string
	shutdownTimeout time.Duration

	codecEP codecEndpointFlags
	kek     *kekFlags
}

// testHookGatewayReady, if set (by tests), is called once a gateway serves, with its proxy and metrics addresses.
var testHookGatewayReady func(proxyAddr, metricsAddr string)

func newProxyCmd() *cobra.Command {
	o := &proxyFlags{}
	cmd := &cobra.Command{
		Use:   "proxy",
		Short: "Run the encrypting gateway in front of a Temporal frontend (production)",
		Long: `Proxy serves Temporal's WorkflowService to SDK clients and workers, forwards every
call to the upstream frontend over one outbound connection, encrypts every payload
on the way out and decrypts it on the way back. The backend stores ciphertext only.

Whoever can call the proxy reads plaintext. It therefore refuses to listen on a
non-loopback address without inbound TLS (--tls-cert/--tls-key, and --client-ca
for mutual TLS) unless --insecure-listen is given (e.g. behind a service mesh
that terminates mTLS).

Every flag can also be set by the environment variable BLINDFOLD_<FLAG> (upper
case, dashes as underscores: --upstream-ca is BLINDFOLD_UPSTREAM_CA; lists are
comma-separated) and by the YAML file --config, whose keys are the flag names
(unknown keys are errors). A flag on the command line wins over the environment,
which wins over the file. Prefer BLINDFOLD_API_KEY or --api-key-file to --api-key:
command lines are visible to every user of the machine.

Keys: the local key directory (--key-dir) with its master key, or Vault Transit
(--kek vault). Scopes must exist (blindfold keys init --scope NS) unless
--create-keys is given.

Operability: /metrics (Prometheus) and /healthz on --metrics-listen; gRPC health
on the proxy port; OpenTelemetry traces over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT
is set. SIGINT/SIGTERM drain in-flight calls for up to --shutdown-timeout (a second
signal cuts them at once).`,
		Example: `  blindfold proxy --upstream temporal.internal:7233 --upstream-tls --upstream-ca ca.pem \
      --listen 0.0.0.0:7233 --tls-cert proxy.pem --tls-key proxy-key.pem --client-ca clients-ca.pem
  BLINDFOLD_API_KEY=… blindfold proxy --upstream my-ns.a1b2c.tmprl.cloud:7233 --upstream-tls --allow-namespace my-ns.a1b2c
  blindfold proxy --config /etc/blindfold/proxy.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			keyOnCommandLine := cmd.Flags().Changed("api-key")
			if !cmd.Flags().Changed("config") {
				o.config = os.Getenv(envPrefix + "CONFIG")
			}
			if err := bindEnvAndConfig(cmd.Flags(), o.config); err != nil {
				return err
			}
			return runProxy(cmd.Context(), cmd.ErrOrStderr(), o, keyOnCommandLine)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.config, "config", "", "YAML file of flag values, keys are flag names (env BLINDFOLD_CONFIG)")
	f.StringVar(&o.upstream, "upstream", "", "Temporal frontend to forward to, host:port or a gRPC target (required)")
	f.BoolVar(&o.upstreamTLS, "upstream-tls", false, "use TLS to the upstream (implied by the other --upstream-* TLS flags)")
	f.StringVar(&o.upstreamCA, "upstream-ca", "", "PEM CA bundle that verifies the upstream (default: system roots)")
	f.StringVar(&o.upstreamCert, "upstream-cert", "", "PEM client certificate for mutual TLS to the upstream")
	f.StringVar(&o.upstreamKey, "upstream-key", "", "PEM private key of --upstream-cert")
	f.StringVar(&o.upstreamServerName, "upstream-server-name", "", "server name to verify in the upstream's certificate, if not the address's host")
	f.StringVar(&o.apiKey, "api-key", "", "API key sent upstream as a bearer token (prefer $BLINDFOLD_API_KEY or --api-key-file)")
	f.StringVar(&o.apiKeyFile, "api-key-file", "", "file holding the API key")
	f.StringVar(&o.listen, "listen", "127.0.0.1:7233", "address the proxy serves SDK clients and workers on")
	f.BoolVar(&o.insecureListen, "insecure-listen", false, "allow a non-loopback --listen without inbound TLS (everyone who reaches it reads plaintext)")
	f.BoolVar(&o.xdsServer, "xds-server", false, "run as an xDS-enabled gRPC server: RBAC and mTLS come from the control plane (blindfold xds) named by the bootstrap in $GRPC_XDS_BOOTSTRAP or $GRPC_XDS_BOOTSTRAP_CONFIG; excludes --tls-cert")
	f.StringVar(&o.tlsCert, "tls-cert", "", "PEM certificate for inbound TLS")
	f.StringVar(&o.tlsKey, "tls-key", "", "PEM private key of --tls-cert")
	f.StringVar(&o.clientCA, "client-ca", "", "PEM CA bundle: require client certificates signed by it (mutual TLS)")
	f.StringSliceVar(&o.allowNS, "allow-namespace", nil, "serve only this namespace (repeatable; default: all)")
	f.StringVar(&o.policyFile, "policy", "", "policy file (docs/policy.md): namespaces served, what is encrypted, tenants' key scopes, plaintext from SDKs; reloaded on change or SIGHUP")
	f.IntVar(&o.maxRecv, "max-recv-msg-size", proxy.DefaultMaxRecvMsgSize, "largest request accepted from callers, in bytes (as the Temporal frontend)")
	f.BoolVar(&o.reflection, "reflection", false, "serve gRPC reflection (API schema only), for grpcurl")
	f.StringVar(&o.keyDir, "key-dir", keys.DefaultDir(), "local key directory (keysets; and the master key unless --kek vault)")
	f.BoolVar(&o.createKeys, "create-keys", false, "create a namespace's keyset on its first call instead of failing")
	f.DurationVar(&o.rotateEvery, "rotate-keys-every", 0, "add a new primary data key to every scope this often (0: never; replicas sharing --key-dir rotate once)")
	f.IntVar(&o.compress, "compress-threshold", 0, "zstd-compress payloads of at least this many bytes before encryption (0: off)")
	f.StringVar(&o.metricsListen, "metrics-listen", DefaultMetricsListen, "address of the HTTP listener for /metrics and /healthz (empty: off)")
	f.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug (one line per RPC), info, warn or error")
	f.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 20*time.Second, "how long to drain in-flight calls (long polls included) on SIGINT/SIGTERM")
	o.codecEP.register(f)
	o.kek = addKEKFlags(cmd)
	return cmd
}

// bindEnvAndConfig fills every flag not given on the command line from BLINDFOLD_<FLAG>, else from the YAML file
// configPath (if not empty). Unknown keys in the file are errors, so a typo never silently leaves a default in place.
func bindEnvAndConfig(fs *pflag.FlagSet, configPath string) error {
	file := map[string]yaml.Node{}
	if configPath != "" {
		data, err := os.ReadFile(configPath)
		if err != nil {
			return fmt.Errorf("config: %w", err)
		}
		var doc yaml.Node
		if err := yaml.Unmarshal(data, &doc); err != nil {
			return fmt.Errorf("config %s: %w", configPath, err)
		}
		if len(doc.Content) > 0 {
			root := doc.Content[0]
			if root.Kind != yaml.MappingNode {
				return fmt.Errorf("config %s: line %d: want a mapping of flag names to values", configPath, root.Line)
			}
			for i := 0; i+1 < len(root.Content); i += 2 {
				k, v := root.Content[i], root.Content[i+1]
				if fs.Lookup(k.Value) == nil || k.Value == "config" || k.Value == "help" {
					return fmt.Errorf("config %s: line %d: unknown key %q (keys are the flag names of this command)", configPath, k.Line, k.Value)
				}
				if _, dup := file[k.Value]; dup {
					return fmt.Errorf("config %s: line %d: key %q repeated", configPath, k.Line, k.Value)
				}
				file[k.Value] = *v
			}
		}
	}
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Name == "config" || f.Name == "help" {
			return
		}
		env := envPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			if err := fs.Set(f.Name, v); err != nil {
				// pflag's message quotes the value; the value may be a secret.
				errs = append(errs, fmt.Errorf("$%s: invalid value for --%s (%s)", env, f.Name, f.Value.Type()))
			}
			return
		}
		n, ok := file[f.Name]
		if !ok {
			return
		}
		var values []string
		switch {
		case n.Kind == yaml.ScalarNode:
			values = []string{n.Value}
		case n.Kind == yaml.SequenceNode && strings.HasSuffix(f.Value.Type(), "Slice"):
			for _, c := range n.Content {
				if c.Kind != yaml.ScalarNode {
					errs = append(errs, fmt.Errorf("config %s: line %d: %s: want a list of plain values", configPath, c.Line, f.Name))
					return
				}
				values = append(values, c.Value)
			}
		default:
			errs = append(errs, fmt.Errorf("config %s: line %d: %s: want a single %s value", configPath, n.Line, f.Name, f.Value.Type()))
			return
		}
		for _, v := range values {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("config %s: line %d: invalid value for %s (%s)", configPath, n.Line, f.Name, f.Value.Type()))
				return
			}
		}
	})
	return errors.Join(errs...)
}

// newLogger builds the process logger: text or JSON on w, at level.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// isLoopbackAddr reports whether a listen address binds only loopback ("localhost" or a loopback IP). An empty host
// binds every interface.
func isLoopbackAddr(addr string) (bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, fmt.Errorf("address %q: %w", addr, err)
	}
	if host == "localhost" {
		return true, nil
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback(), nil
}

func (o *proxyFlags) validate() error {
	if o.upstream == "" {
		return errors.New("--upstream is required (the Temporal frontend, host:port)")
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if o.clientCA != "" && o.tlsCert == "" {
		return errors.New("--client-ca needs --tls-cert and --tls-key (mutual TLS is TLS first)")
	}
	if o.xdsServer && (o.tlsCert != "" || o.clientCA != "") {
		return errors.New("--xds-server takes inbound TLS from the xDS control plane: drop --tls-cert/--tls-key/--client-ca")
	}
	if (o.upstreamCert == "") != (o.upstreamKey == "") {
		return errors.New("--upstream-cert and --upstream-key go together")
	}
	if o.apiKey != "" && o.apiKeyFile != "" {
		return errors.New("--api-key and --api-key-file are exclusive")
	}
	if o.compress < 0 {
		return errors.New("--compress-threshold must not be negative")
	}
	if o.rotateEvery < 0 {
		return errors.New("--rotate-keys-every must not be negative")
	}
	if err := o.kek.validate(); err != nil {
		return err
	}
	loop, err := isLoopbackAddr(o.listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	if !loop && o.tlsCert == "" && !o.insecureListen {
		return fmt.Errorf("refusing to serve plaintext on non-loopback address %s: whoever reaches it reads decrypted payloads; "+
			"give --tls-cert/--tls-key (and --client-ca), or --insecure-listen if something in front of the proxy authenticates callers", o.listen)
	}
	return nil
}

func (o *proxyFlags) inboundTLS() (*tls.Config, error) {
	if o.tlsCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(o.tlsCert, o.tlsKey)
	if err != nil {
		return nil, fmt.Errorf("inbound tls: %w", err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if o.clientCA != "" {
		pool, err := loadPool(o.clientCA)
		if err != nil {
			return nil, fmt.Errorf("--client-ca: %w", err)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

func (o *proxyFlags) upstreamTLSConfig() (*tls.Config, error) {
	if !o.upstreamTLS && o.upstreamCA == "" && o.upstreamCert == "" && o.upstreamServerName == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: o.upstreamServerName}
	if o.upstreamCA != "" {
		pool, err := loadPool(o.upstreamCA)
		if err != nil {
			return nil, fmt.Errorf("--upstream-ca: %w", err)
		}
		cfg.RootCAs = pool
	}
	if o.upstreamCert != "" {
		cert, err := tls.LoadX509KeyPair(o.upstreamCert, o.upstreamKey)
		if err != nil {
			return nil, fmt.Errorf("upstream client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func loadPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

func (o *proxyFlags) resolveAPIKey() (string, error) {
	if o.apiKeyFile == "" {
		return strings.TrimSpace(o.apiKey), nil
	}
	b, err := os.ReadFile(o.apiKeyFile)
	if err != nil {
		return "", fmt.Errorf("--api-key-file: %w", err)
	}
	k := strings.TrimSpace(string(b))
	if k == "" {
		return "", fmt.Errorf("--api-key-file %s is empty", o.apiKeyFile)
	}
	return k, nil
}

// openProxyKeys opens the key manager: local master key (never created here) or Vault Transit. closeKEK releases the
// Vault client (token renewal); it is a no-op for local keys.
func openProxyKeys(ctx context.Context, o *proxyFlags, log *slog.Logger, extra ...keys.Option) (m *keys.Manager, closeKEK func(), err error) {
	opts := append([]keys.Option{keys.WithAutoCreate(o.createKeys), keys.WithLogger(log)}, extra...)
	if o.kek.vault() {
		kek, err := vault.NewKEK(ctx, o.kek.vaultConfig())
		if err != nil {
			return nil, nil, err
		}
		m, err := keys.NewManager(keys.NewDirStore(o.keyDir), kek, opts...)
		if err != nil {
			kek.Close()
			return nil, nil, err
		}
		return m, func() { kek.Close() }, nil
	}
	kek, err := keys.LoadMasterKey(o.keyDir, false)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("no master key in %s (run: blindfold keys init --key-dir %s): %w", o.keyDir, o.keyDir, err)
	}
	if err != nil {
		return nil, nil, err
	}
	m, err = keys.NewManager(keys.NewDirStore(o.keyDir), kek, opts...)
	if err != nil {
		return nil, nil, err
	}
	return m, func() {}, nil
}

func runProxy(ctx context.Context, stderr io.Writer, o *proxyFlags, apiKeyOnCommandLine bool) (err error) {
	if err := o.validate(); err != nil {
		return err
	}
	log, err := newLogger(stderr, o.logFormat, o.logLevel)
	if err != nil {
		return err
	}
	if apiKeyOnCommandLine {
		log.Warn("--api-key on the command line is visible to every user of this machine; prefer $BLINDFOLD_API_KEY or --api-key-file")
	}
	apiKey, err := o.resolveAPIKey()
	if err != nil {
		return err
	}
	inTLS, err := o.inboundTLS()
	if err != nil {
		return err
	}
	upTLS, err := o.upstreamTLSConfig()
	if err != nil {
		return err
	}
	if !loopbackOK(o.listen) && inTLS == nil {
		log.Warn("serving plaintext on a non-loopback address (--insecure-listen)", "listen", o.listen)
	}

	// The policy, if any, picks the key scope per request (the proxy passes it to the codec with every seal) and, for
	// the codec endpoint's encodes, per namespace.
	var pol *policy.Store
	if o.policyFile != "" {
		if pol, err = policy.NewStore(o.policyFile, policy.WithStoreLogger(log.With("component", "policy"))); err != nil {
			return err
		}
		go func() { _ = pol.Watch(ctx) }()
		o.codecEP.scopes = pol
		log.Info("policy loaded; watching for changes and SIGHUP", "file", o.policyFile)
	}
	km, closeKEK, err := openProxyKeys(ctx, o, log)
	if err != nil {
		return err
	}
	defer closeKEK()
	var copts []codec.Option
	if o.compress > 0 {
		copts = append(copts, codec.WithCompression(o.compress))
	}
	c, err := codec.New(km, copts...)
	if err != nil {
		return err
	}
	if o.rotateEvery > 0 {
		stop := km.StartRotation(context.WithoutCancel(ctx), o.rotateEvery)
		defer stop()
	}

	var ep *codecEndpoint
	if o.codecEP.listen != "" {
		if ep, err = o.codecEP.start(ctx, c, log.With("component", "codec-endpoint")); err != nil {
			return err
		}
		log.Info("codec endpoint serving", "url", ep.URL)
	}
	stopEndpoint := func() {
		if ep == nil {
			return
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := ep.Stop(sctx); err != nil {
			log.Warn("codec endpoint shutdown", "error", err)
		}
	}

	pcfg := proxy.Config{
		Upstream: o.upstream, UpstreamTLS: upTLS, APIKey: apiKey, TLS: inTLS, Codec: c,
		AllowedNamespaces: o.allowNS, MaxRecvMsgSize: o.maxRecv, Reflection: o.reflection,
	}
	if o.xdsServer {
		// Without security settings from the control plane the listener falls back to plaintext, which the
		// --listen check above already limits to loopback or --insecure-listen.
		creds, err := xdscreds.NewServerCredentials(xdscreds.ServerOptions{FallbackCreds: insecure.NewCredentials()})
		if err != nil {
			stopEndpoint()
			return fmt.Errorf("xds server credentials: %w", err)
		}
		pcfg.ServerOptions = append(pcfg.ServerOptions, grpc.Creds(creds))
		pcfg.NewGRPCServer = func(opts ...grpc.ServerOption) (proxy.GRPCServer, error) {
			return grpcxds.NewGRPCServer(opts...)
		}
	}
	if pol != nil {
		pcfg.Policy = pol // only when set: a nil *policy.Store in the interface would not read as "no policy"
	}
	g, err := startGateway(ctx, gatewayConfig{
		proxy:  pcfg,
		listen: o.listen, metricsListen: o.metricsListen, keyStats: km, log: log,
	})
	if err != nil {
		stopEndpoint()
		return err
	}
	log.Info("blindfold proxy ready", "listen", g.addr, "upstream", o.upstream, "metrics", g.metricsURL(),
		"allow_namespaces", o.allowNS, "kek", o.kek.kind, "tracing", g.tracing.Enabled())

	var epDone <-chan error
	if ep != nil {
		epDone = ep.Done()
	}
	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down: draining in-flight calls", "timeout", o.shutdownTimeout)
	case runErr = <-g.serveErr:
		log.Error("proxy stopped serving", "error", runErr)
	case runErr = <-epDone:
		log.Error("codec endpoint stopped serving", "error", runErr)
	}
	err = g.stop(context.WithoutCancel(ctx), o.shutdownTimeout, log)
	stopEndpoint()
	return errors.Join(runErr, err)
}

func loopbackOK(addr string) bool {
	ok, _ := isLoopbackAddr(addr)
	return ok
}

// gatewayConfig is what startGateway needs beyond the proxy.Config fields it fills itself (logger, metrics, tracing).
type gatewayConfig struct {
	proxy  proxy.Config
	listen string
	// listener, if set, is used instead of listening on listen.
	listener      net.Listener
	metricsListen string
	keyStats      observe.KeyStatser
	log           *slog.Logger
}

// gateway is a serving proxy with its metrics listener and tracing.
type gateway struct {
	proxy       *proxy.Server
	addr        string
	metrics     *http.Server
	metricsAddr string
	tracing     *observe.Tracing
	draining    atomic.Bool
	serveErr    chan error
}

// startGateway listens, then serves the proxy and the metrics listener in goroutines.
func startGateway(ctx context.Context, gc gatewayConfig) (_ *gateway, err error) {
	g := &gateway{serveErr: make(chan error, 2)}
	if g.tracing, err = observe.StartTracing(ctx, "blindfold-proxy"); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = g.tracing.Shutdown(context.WithoutCancel(ctx))
		}
	}()
	m := observe.NewMetrics()
	if gc.keyStats != nil {
		if err := m.WatchKeys(gc.keyStats); err != nil {
			return nil, err
		}
	}
	cfg := gc.proxy
	cfg.Logger = gc.log.With("component", "proxy")
	cfg.Observer = m
	cfg.UnaryInterceptors = append([]grpc.UnaryServerInterceptor{m.UnaryServerInterceptor()}, cfg.UnaryInterceptors...)
	cfg.ServerOptions = append(cfg.ServerOptions, g.tracing.ServerOptions...)
	cfg.DialOptions = append(cfg.DialOptions, g.tracing.DialOptions...)
	if g.proxy, err = proxy.New(cfg); err != nil {
		return nil, err
	}
	lis := gc.listener
	if lis == nil {
		if lis, err = net.Listen("tcp", gc.listen); err != nil {
			_ = g.proxy.Shutdown(context.Background())
			return nil, fmt.Errorf("proxy listen: %w", err)
		}
	}
	g.addr = lis.Addr().String()

	if gc.metricsListen != "" {
		mlis, err := net.Listen("tcp", gc.metricsListen)
		if err != nil {
			_ = lis.Close()
			_ = g.proxy.Shutdown(context.Background())
			return nil, fmt.Errorf("metrics listen: %w", err)
		}
		g.metricsAddr = mlis.Addr().String()
		mux := http.NewServeMux()
		mux.Handle("/metrics", m.Handler())
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
			if g.draining.Load() {
				http.Error(w, "draining", http.StatusServiceUnavailable)
				return
			}
			_, _ = io.WriteString(w, "ok\n")
		})
		g.metrics = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := g.metrics.Serve(mlis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				g.serveErr <- fmt.Errorf("metrics listener: %w", err)
			}
		}()
	}
	go func() {
		if err := g.proxy.Serve(lis); err != nil {
			g.serveErr <- err
		}
	}()
	if testHookGatewayReady != nil {
		testHookGatewayReady(g.addr, g.metricsAddr)
	}
	return g, nil
}

func (g *gateway) metricsURL() string {
	if g.metricsAddr == "" {
		return ""
	}
	return "http://" + g.metricsAddr + "/metrics"
}

// stop drains the proxy for up to timeout (a second SIGINT/SIGTERM cuts the drain short), then stops the metrics
// listener and flushes traces.
func (g *gateway) stop(ctx context.Context, timeout time.Duration, log *slog.Logger) error {
	g.draining.Store(true)
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	go func() {
		select {
		case <-sig:
			log.Warn("second signal: cutting in-flight calls")
			cancel()
		case <-dctx.Done():
		}
	}()
	var errs []error
	if err := g.proxy.Shutdown(dctx); err != nil {
		// Cut long polls are expected at a deadline: workers retry them elsewhere.
		log.Info("proxy drain ended at the deadline", "error", err)
	}
	if g.metrics != nil {
		sctx, scancel := context.WithTimeout(ctx, 2*time.Second)
		if err := g.metrics.Shutdown(sctx); err != nil {
			errs = append(errs, fmt.Errorf("metrics listener shutdown: %w", err))
		}
		scancel()
	}
	tctx, tcancel := context.WithTimeout(ctx, 5*time.Second)
	defer tcancel()
	if err := g.tracing.Shutdown(tctx); err != nil {
		log.Warn("tracing shutdown", "error", err)
	}
	return errors.Join(errs...)
}
