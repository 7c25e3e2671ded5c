package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/internal/gateway"
	"github.com/blindfold-dev/blindfold/keys"
	"github.com/blindfold-dev/blindfold/proxy"
)

func init() { rootCmd.AddCommand(newProxyCmd()) }

// DefaultMetricsListen is where `blindfold proxy` serves /metrics and /healthz unless told otherwise.
const DefaultMetricsListen = "127.0.0.1:9464"

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
	maxDecoded  int

	metricsListen   string
	logFormat       string
	logLevel        string
	shutdownTimeout time.Duration

	codecEP codecEndpointFlags
	auth    proxyAuthFlags
	kek     *kekFlags
	cache   cacheFlags
}

// testHookGatewayReady, if set (by tests), is called once a gateway serves, with its proxy and metrics addresses.
var testHookGatewayReady func(proxyAddr, metricsAddr string)

func newProxyCmd() *cobra.Command { return newProxyCmdFor(&proxyFlags{}) }

// newProxyCmdFor builds the command over o, which receives the parsed flags (tests read it).
func newProxyCmdFor(o *proxyFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "proxy",
		Short: "Run the encrypting gateway in front of a Temporal frontend (production)",
		Long: `Proxy serves Temporal's WorkflowService to SDK clients and workers, forwards every
call to the upstream frontend over one outbound connection, encrypts every payload
on the way out and decrypts it on the way back. The backend stores ciphertext only.

Whoever can call the proxy reads plaintext. It therefore refuses to listen on a
non-loopback address (0.0.0.0, ::, an empty host or a host name included) unless
it authenticates callers: mutual TLS (--tls-cert/--tls-key with --client-ca).
--insecure-listen overrides that (e.g. behind a service mesh that enforces mTLS).
The codec endpoint beyond loopback needs TLS (--codec-tls-cert/--codec-tls-key,
or --codec-insecure-listen behind a TLS-terminating ingress) and an authenticator.

Callers: by default every caller the listener admits may call every method of
every namespace served. --auth-client-certs (identity from the client
certificate), --auth-static-tokens and --auth-oidc-issuer (bearer tokens, verified
as the codec endpoint verifies them) authorize each call instead, by the access
section of --policy (required then): a worker needs "worker" on its namespace, a
client "client-write" or "client-read", OperatorService "admin" (docs/policy.md).
Refusals are PERMISSION_DENIED or UNAUTHENTICATED, counted in
blindfold_proxy_errors_total and recorded in --auth-audit-log (default: the codec
endpoint's log). With --api-key the caller's token is verified first, then
replaced by the API key upstream. TLS with bearer tokens counts as authenticating
callers beyond loopback.

Every flag can also be set by the environment variable BLINDFOLD_<FLAG> (upper
case, dashes as underscores: --upstream-ca is BLINDFOLD_UPSTREAM_CA; lists are
comma-separated) and by the YAML file --config, whose keys are the flag names
(unknown keys are errors). A flag on the command line wins over the environment,
which wins over the file. Prefer BLINDFOLD_API_KEY or --api-key-file to --api-key:
command lines are visible to every user of the machine.

Keys: the local key directory (--key-dir) with its master key, Vault Transit
(--kek vault), or a KEK plugin process (--kek plugin, docs/kek-plugin.md).
Keysets live in --key-dir, or with --key-store vault-kv in Vault KV v2, shared
by every replica (no volume; replicas may all rotate at once).
Scopes must exist (blindfold keys init --scope NS) unless --create-keys is given.

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
	f.BoolVar(&o.insecureListen, "insecure-listen", false, "DANGEROUS: allow a non-loopback --listen that does not authenticate callers (plaintext, or TLS without --client-ca): "+
		"everyone who reaches it reads decrypted payloads; only for when something in front (a mesh enforcing mTLS) authenticates them")
	f.BoolVar(&o.xdsServer, "xds-server", false, "run as an xDS-enabled gRPC server: RBAC and mTLS come from the control plane (blindfold xds) named by the bootstrap in $GRPC_XDS_BOOTSTRAP or $GRPC_XDS_BOOTSTRAP_CONFIG; excludes --tls-cert")
	f.StringVar(&o.tlsCert, "tls-cert", "", "PEM certificate for inbound TLS")
	f.StringVar(&o.tlsKey, "tls-key", "", "PEM private key of --tls-cert")
	f.StringVar(&o.clientCA, "client-ca", "", "PEM CA bundle: require client certificates signed by it (mutual TLS)")
	f.StringSliceVar(&o.allowNS, "allow-namespace", nil, "serve only this namespace (repeatable; default: all)")
	f.StringVar(&o.policyFile, "policy", "", "policy file (docs/policy.md): namespaces served, what is encrypted, tenants' key scopes, plaintext from SDKs; reloaded on change or SIGHUP")
	f.IntVar(&o.maxRecv, "max-recv-msg-size", proxy.DefaultMaxRecvMsgSize, "largest request accepted from callers, in bytes (as the Temporal frontend)")
	f.BoolVar(&o.reflection, "reflection", false, "serve gRPC reflection (API schema only), for grpcurl")
	f.StringVar(&o.keyDir, "key-dir", keys.DefaultDir(), "local key directory (keysets; and the master key unless --kek vault or plugin)")
	f.BoolVar(&o.createKeys, "create-keys", false, "create a namespace's keyset on its first call instead of failing")
	f.DurationVar(&o.rotateEvery, "rotate-keys-every", 0, "add a new primary data key to every scope this often (0: never; replicas sharing the key store rotate once per period)")
	f.IntVar(&o.compress, "compress-threshold", 0, "zstd-compress payloads of at least this many bytes before encryption (0: off)")
	f.IntVar(&o.maxDecoded, "max-decoded-bytes", codec.DefaultMaxDecodedTotal, "most bytes the zstd-compressed payloads of one response may expand to when decrypted, all together (RESOURCE_EXHAUSTED above; guards against decompression bombs; each payload is also capped at 128 MiB, or at this if lower)")
	f.StringVar(&o.metricsListen, "metrics-listen", DefaultMetricsListen, "address of the HTTP listener for /metrics and /healthz (empty: off)")
	f.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug (one line per RPC), info, warn or error")
	f.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 20*time.Second, "how long to drain in-flight calls (long polls included) on SIGINT/SIGTERM")
	o.codecEP.register(f)
	o.auth.register(f)
	o.kek = addKEKFlags(cmd)
	o.cache.register(f)
	return cmd
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
	if o.maxDecoded <= 0 {
		return errors.New("--max-decoded-bytes must be positive")
	}
	if o.codecEP.maxDecoded < 0 {
		return errors.New("--codec-max-decoded-bytes must not be negative")
	}
	if o.rotateEvery < 0 {
		return errors.New("--rotate-keys-every must not be negative")
	}
	if o.auth.clientCerts && o.clientCA == "" && !o.xdsServer {
		return errors.New("--auth-client-certs needs --client-ca (client certificates are verified against it)")
	}
	if a := o.auth.config(); a != nil && o.policyFile == "" {
		return errors.New("--auth-client-certs, --auth-static-tokens and --auth-oidc-issuer need --policy: its access section says who may do what")
	}
	if o.auth.oidcIssuer != "" && len(o.auth.oidcAudiences) == 0 {
		return errors.New("--auth-oidc-issuer needs --auth-oidc-audience")
	}
	if err := o.kek.validate(); err != nil {
		return err
	}
	if err := o.cache.validate(); err != nil {
		return err
	}
	// Listener safety (loopback, client authentication, --insecure-listen) is the gateway's rule: gateway.Start checks
	// it before anything is opened.
	return nil
}

// gatewayConfig is the gateway the flags describe.
func (o *proxyFlags) gatewayConfig(log *slog.Logger) (gateway.Config, error) {
	apiKey, err := o.resolveAPIKey()
	if err != nil {
		return gateway.Config{}, err
	}
	inTLS, err := o.inboundTLS()
	if err != nil {
		return gateway.Config{}, err
	}
	upTLS, err := o.upstreamTLSConfig()
	if err != nil {
		return gateway.Config{}, err
	}
	cfg := gateway.Config{
		Keys:                       o.kek.keysConfig(o.keyDir, o.createKeys, o.rotateEvery),
		CompressThreshold:          o.compress,
		MaxDecodedBytesPerResponse: o.maxDecoded,
		PolicyFile:                 o.policyFile,
		Proxy: gateway.ProxyConfig{
			Listen: o.listen, Upstream: o.upstream, UpstreamTLS: upTLS, APIKey: apiKey, TLS: inTLS,
			AllowedNamespaces: o.allowNS, MaxRecvMsgSize: o.maxRecv, Reflection: o.reflection, XDSServer: o.xdsServer,
			InsecureListen: o.insecureListen, Auth: o.auth.config(),
		},
		MetricsListen: o.metricsListen,
		Logger:        log,
	}
	o.cache.apply(&cfg.Keys)
	if o.codecEP.listen != "" {
		ec := o.codecEP.config()
		cfg.CodecEndpoint = &ec
	}
	return cfg, nil
}

func runProxy(ctx context.Context, stderr io.Writer, o *proxyFlags, apiKeyOnCommandLine bool) error {
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
	cfg, err := o.gatewayConfig(log)
	if err != nil {
		return err
	}
	g, err := gateway.Start(ctx, cfg)
	if err != nil {
		return err
	}
	if testHookGatewayReady != nil {
		testHookGatewayReady(g.Addr(), g.MetricsAddr())
	}
	log.Info("blindfold proxy ready", "listen", g.Addr(), "upstream", o.upstream, "metrics", g.MetricsURL(),
		"codec_endpoint", g.CodecURL(), "allow_namespaces", o.allowNS, "kek", o.kek.kind, "tracing", g.TracingEnabled())

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down: draining in-flight calls", "timeout", o.shutdownTimeout)
	case runErr = <-g.Done():
		log.Error("gateway stopped serving", "error", runErr)
	}
	return errors.Join(runErr, stopGateway(ctx, g, o.shutdownTimeout, log))
}

// stopGateway drains the gateway for up to timeout; a second SIGINT/SIGTERM cuts the drain short.
func stopGateway(ctx context.Context, g *gateway.Gateway, timeout time.Duration, log *slog.Logger) error {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
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
	return g.Stop(dctx)
}
