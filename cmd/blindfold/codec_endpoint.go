package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/time/rate"
	"gopkg.in/yaml.v3"

	"github.com/blindfold-dev/blindfold/policy"
	"github.com/blindfold-dev/blindfold/proxy/codecserver"
)

// codecEndpointFlags configures the auditors' codec endpoint for `blindfold proxy` (and, in dev mode, `blindfold dev`).
// A command registers them with register and starts the endpoint with start.
type codecEndpointFlags struct {
	// scopes, if set, picks the key scope of encodes (the proxy's policy); not a flag.
	scopes         codecserver.ScopeSource
	listen         string
	policyFile     string
	auditLog       string
	origins        []string
	tlsCert        string
	tlsKey         string
	oidcIssuer     string
	oidcAudiences  []string
	oidcJWKSURL    string
	oidcSubject    string
	oidcGroups     string
	oidcIDToken    bool
	staticTokens   string
	maxBody        int64
	maxPayloads    int
	rateLimit      float64
	rateBurst      int
	handlerTimeout time.Duration
}

func (f *codecEndpointFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.listen, "codec-listen", "", "address of the auditors' codec endpoint for the Web UI and temporal CLI (empty: off)")
	fs.StringVar(&f.policyFile, "codec-policy", "", "policy file whose access section says who may decode which namespace")
	fs.StringVar(&f.auditLog, "codec-audit-log", "", "hash-chained audit log of every codec endpoint decision (JSON lines)")
	fs.StringSliceVar(&f.origins, "codec-ui-origin", nil, "browser origin allowed to call the endpoint, e.g. https://temporal-ui.example (repeatable)")
	fs.StringVar(&f.tlsCert, "codec-tls-cert", "", "TLS certificate for the endpoint (the Web UI passes tokens only to https endpoints)")
	fs.StringVar(&f.tlsKey, "codec-tls-key", "", "TLS private key for the endpoint")
	fs.StringVar(&f.oidcIssuer, "codec-oidc-issuer", "", "OIDC issuer whose JWTs authenticate callers")
	fs.StringSliceVar(&f.oidcAudiences, "codec-oidc-audience", nil, "accepted JWT audience (repeatable; required with --codec-oidc-issuer)")
	fs.StringVar(&f.oidcJWKSURL, "codec-oidc-jwks-url", "", "fetch signing keys from this URL instead of OIDC discovery")
	fs.StringVar(&f.oidcSubject, "codec-oidc-subject-claim", "sub", "JWT claim naming the caller")
	fs.StringVar(&f.oidcGroups, "codec-oidc-groups-claim", "groups", "JWT claim holding groups or roles (dotted paths reach nested claims)")
	fs.BoolVar(&f.oidcIDToken, "codec-oidc-accept-id-token", false, "also accept the ID token the Web UI sends in Authorization-Extras")
	fs.StringVar(&f.staticTokens, "codec-static-tokens", "", "YAML file of static bearer tokens: a list of {token, subject, groups}")
	fs.Int64Var(&f.maxBody, "codec-max-body", codecserver.DefaultMaxBodyBytes, "largest request body in bytes (413 above)")
	fs.IntVar(&f.maxPayloads, "codec-max-payloads", codecserver.DefaultMaxPayloads, "most payloads in one request (413 above)")
	fs.Float64Var(&f.rateLimit, "codec-rate-limit", codecserver.DefaultRateLimit, "requests per second per identity (429 above)")
	fs.IntVar(&f.rateBurst, "codec-rate-burst", codecserver.DefaultRateBurst, "burst of requests per identity")
	fs.DurationVar(&f.handlerTimeout, "codec-timeout", codecserver.DefaultHandlerTimeout, "time limit for one request's work")
}

// codecEndpoint is a running endpoint.
type codecEndpoint struct {
	// URL is the endpoint's base URL (http[s]://host:port), for the Web UI's codec.endpoint or the CLI's --codec-endpoint.
	URL   string
	srv   *http.Server
	audit *policy.AuditLog
	done  chan error
}

// Done delivers the server's error if it stops serving on its own (nil after Stop).
func (e *codecEndpoint) Done() <-chan error { return e.done }

// Stop drains in-flight requests (until ctx ends) and closes the audit log.
func (e *codecEndpoint) Stop(ctx context.Context) error {
	err := e.srv.Shutdown(ctx)
	if cerr := e.audit.Close(); err == nil {
		err = cerr
	}
	return err
}

// start serves the endpoint in production mode: an authenticator and a policy are required, default deny.
func (f *codecEndpointFlags) start(ctx context.Context, c codecserver.Codec, log *slog.Logger) (*codecEndpoint, error) {
	if f.listen == "" {
		return nil, errors.New("--codec-listen is empty")
	}
	if f.policyFile == "" || f.auditLog == "" {
		return nil, errors.New("the codec endpoint needs --codec-policy and --codec-audit-log")
	}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return nil, errors.New("--codec-tls-cert and --codec-tls-key go together")
	}
	pol, err := policy.Load(f.policyFile)
	if err != nil {
		return nil, err
	}
	var chain codecserver.Chain
	if f.oidcIssuer != "" {
		o, err := codecserver.NewOIDC(ctx, codecserver.OIDCConfig{
			Issuer: f.oidcIssuer, Audiences: f.oidcAudiences, JWKSURL: f.oidcJWKSURL,
			SubjectClaim: f.oidcSubject, GroupsClaim: f.oidcGroups, AcceptIDTokenFromExtras: f.oidcIDToken,
		})
		if err != nil {
			return nil, err
		}
		chain = append(chain, o)
	}
	if f.staticTokens != "" {
		st, err := loadStaticTokens(f.staticTokens)
		if err != nil {
			return nil, err
		}
		chain = append(chain, st)
	}
	if len(chain) == 0 {
		return nil, errors.New("the codec endpoint needs --codec-oidc-issuer or --codec-static-tokens")
	}
	audit, err := policy.OpenAudit(f.auditLog)
	if err != nil {
		return nil, err
	}
	cfg := codecserver.Config{
		Codec: c, Scopes: f.scopes, Authenticator: chain, Authorizer: pol.Access, Audit: audit,
		AllowedOrigins: f.origins, MaxBodyBytes: f.maxBody, MaxPayloads: f.maxPayloads,
		RateLimit: rate.Limit(f.rateLimit), RateBurst: f.rateBurst, HandlerTimeout: f.handlerTimeout, Logger: log,
	}
	e, err := serveCodec(cfg, f.listen, f.tlsCert, f.tlsKey)
	if err != nil {
		audit.Close()
		return nil, err
	}
	return e, nil
}

// startDevCodecEndpoint serves the endpoint the way `blindfold dev` needs it on loopback: no token required
// (the UI sends none to an http:// endpoint), every namespace allowed, every decision still audited.
func startDevCodecEndpoint(c codecserver.Codec, listen, auditLog string, log *slog.Logger, uiOrigins ...string) (*codecEndpoint, error) {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("codec endpoint address %q: %w", listen, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("the dev codec endpoint allows everyone and must listen on loopback, not %q", host)
	}
	audit, err := policy.OpenAudit(auditLog)
	if err != nil {
		return nil, err
	}
	cfg, err := codecserver.DevConfig(c, audit, "", uiOrigins...)
	if err != nil {
		audit.Close()
		return nil, err
	}
	cfg.Logger = log
	e, err := serveCodec(cfg, listen, "", "")
	if err != nil {
		audit.Close()
		return nil, err
	}
	return e, nil
}

func serveCodec(cfg codecserver.Config, listen, cert, key string) (*codecEndpoint, error) {
	h, err := codecserver.New(cfg)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("codec endpoint: %w", err)
	}
	srv := h.Server()
	e := &codecEndpoint{srv: srv, audit: cfg.Audit.(*policy.AuditLog), done: make(chan error, 1)}
	scheme := "http"
	if cert != "" {
		scheme = "https"
	}
	e.URL = scheme + "://" + ln.Addr().String()
	go func() {
		var err error
		if cert != "" {
			err = srv.ServeTLS(ln, cert, key)
		} else {
			err = srv.Serve(ln)
		}
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		e.done <- err
	}()
	return e, nil
}

type staticTokenFile []struct {
	Token   string   `yaml:"token"`
	Subject string   `yaml:"subject"`
	Groups  []string `yaml:"groups"`
}

func loadStaticTokens(path string) (*codecserver.StaticTokens, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("static tokens: %w", err)
	}
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	var file staticTokenFile
	if err := dec.Decode(&file); err != nil {
		return nil, fmt.Errorf("static tokens %s: %w", path, err)
	}
	m := map[string]policy.Identity{}
	for i, t := range file {
		if _, dup := m[t.Token]; dup {
			return nil, fmt.Errorf("static tokens %s: entry %d repeats a token", path, i)
		}
		m[t.Token] = policy.Identity{Subject: t.Subject, Groups: t.Groups}
	}
	st, err := codecserver.NewStaticTokens(m)
	if err != nil {
		return nil, fmt.Errorf("static tokens %s: %w", path, err)
	}
	return st, nil
}
