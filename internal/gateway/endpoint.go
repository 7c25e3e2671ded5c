package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"golang.org/x/time/rate"
	"gopkg.in/yaml.v3"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/policy"
	"github.com/blindfold-dev/blindfold/proxy/codecserver"
)

// CodecEndpointConfig configures the auditors' codec endpoint (the Temporal remote codec protocol) that the Web UI and
// the temporal CLI decode through.
type CodecEndpointConfig struct {
	// Listen is the endpoint's address; Listener, if set, is used instead (already bound).
	Listen   string
	Listener net.Listener
	// Dev serves the endpoint the way `blindfold dev` needs it: loopback only, requests without a token act as
	// codecserver.DevSubject, every namespace may be decoded, every decision is still audited. PolicyFile and the
	// authenticators are ignored then.
	Dev bool
	// PolicyFile's access section says who may decode which namespace (required unless Dev).
	PolicyFile string
	// AuditLog is the hash-chained audit log of every decision (required).
	AuditLog string
	// AuditSyncWindow trades the audit log's durability for latency (policy.AuditOptions.SyncWindow). Zero takes the
	// mode's default: strict outside Dev (every record fsynced before its response; concurrent requests share
	// fsyncs), DevAuditSyncWindow in Dev. Negative is strict in either mode. Positive: each record is written before
	// its response (it survives the process crashing) and fsynced within the window (a power loss or kernel crash can
	// lose the records of the last window).
	AuditSyncWindow time.Duration
	// Origins are the browser origins (the Web UI's) allowed to call the endpoint.
	Origins []string
	// TLSCert and TLSKey serve HTTPS (the Web UI passes tokens only to https endpoints). Required beyond loopback
	// unless InsecureListen.
	TLSCert, TLSKey string
	// InsecureListen lets a production endpoint listen beyond loopback without TLS, for when a TLS-terminating ingress
	// in front is the only way in. It never waives the authenticator.
	InsecureListen bool
	// OIDC, if set, verifies bearer JWTs against an issuer.
	OIDC *codecserver.OIDCConfig
	// StaticTokensFile is a YAML list of {token, subject, groups}.
	StaticTokensFile string
	// Limits; zero values take the codecserver defaults. MaxDecodedBytesPerRequest caps the bytes the compressed
	// payloads of one decode request may expand to, all together (0: the codec's cap, Config.MaxDecodedBytesPerResponse).
	MaxBodyBytes              int64
	MaxPayloads               int
	MaxDecodedBytesPerRequest int64
	// RateLimit and RateBurst are per identity, in payloads; AuthFailureRate and AuthFailureBurst per remote IP, in
	// failed authentications (codecserver.Config).
	RateLimit        float64
	RateBurst        int
	AuthFailureRate  float64
	AuthFailureBurst int
	// IPRateLimit and IPRateBurst are per remote IP, in requests of any kind, counted before any token is verified
	// (codecserver.Config).
	IPRateLimit    float64
	IPRateBurst    int
	HandlerTimeout time.Duration

	// onRefused counts refused requests in the gateway's metrics (set by Start).
	onRefused func(status int)
}

// DevAuditSyncWindow is the dev endpoint's audit sync window: on a developer's machine a serial client (the temporal
// CLI decodes one payload per request) should not wait for an fsync per payload.
const DevAuditSyncWindow = 5 * time.Millisecond

// auditOptions resolves AuditSyncWindow for the mode.
func (cfg CodecEndpointConfig) auditOptions() policy.AuditOptions {
	switch w := cfg.AuditSyncWindow; {
	case w < 0:
		return policy.AuditOptions{}
	case w == 0 && cfg.Dev:
		return policy.AuditOptions{SyncWindow: DevAuditSyncWindow}
	default:
		return policy.AuditOptions{SyncWindow: w}
	}
}

// codecEndpoint is a serving endpoint.
type codecEndpoint struct {
	url       string
	srv       *http.Server
	audit     *policy.AuditLog
	done      chan error
	stopWatch func() // stops watching the policy file
}

// stop drains in-flight requests (until ctx ends) and closes the audit log.
func (e *codecEndpoint) stop(ctx context.Context) error {
	err := e.srv.Shutdown(ctx)
	if e.stopWatch != nil {
		e.stopWatch()
	}
	if cerr := e.audit.Close(); err == nil {
		err = cerr
	}
	return err
}

// startCodecEndpoint serves the endpoint over c; scopes, if not nil, picks the key scope its encode seals under. In
// production mode an authenticator and a policy are required and everything not allowed is denied. shared, if not
// nil, is the already watched store of cfg.PolicyFile (the proxy's): the endpoint then reads its access rules from it
// instead of watching the file again.
func startCodecEndpoint(ctx context.Context, cfg CodecEndpointConfig, c *codec.Codec, scopes codecserver.ScopeSource, shared *policy.Store, log *slog.Logger) (_ *codecEndpoint, err error) {
	if cfg.Listen == "" && cfg.Listener == nil {
		return nil, errors.New("codec endpoint: no listen address")
	}
	if !cfg.Dev && (cfg.PolicyFile == "" || cfg.AuditLog == "") {
		return nil, errors.New("the codec endpoint needs --codec-policy and --codec-audit-log")
	}
	if cfg.AuditLog == "" {
		return nil, errors.New("the codec endpoint needs an audit log")
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return nil, errors.New("--codec-tls-cert and --codec-tls-key go together")
	}
	var hcfg codecserver.Config
	stopWatch := func() {}
	defer func() {
		if err != nil {
			stopWatch() // err is the function's result: every failed return below stops the watch
		}
	}()
	if cfg.Dev {
		if err := requireLoopback(cfg); err != nil {
			return nil, err
		}
	} else {
		// The access section is read from the policy in force on every request: a reload (file change or SIGHUP)
		// applies to the next one, so a revoked auditor is refused from then on.
		store := shared
		if store == nil {
			if store, err = policy.NewStore(cfg.PolicyFile, policy.WithStoreLogger(log.With("component", "codec-policy"))); err != nil {
				return nil, err
			}
			wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
			watched := make(chan struct{})
			go func() { defer close(watched); _ = store.Watch(wctx) }()
			stopWatch = func() { cancel(); <-watched }
		}
		var chain codecserver.Chain
		if cfg.OIDC != nil {
			o, err := codecserver.NewOIDC(ctx, *cfg.OIDC)
			if err != nil {
				return nil, err
			}
			chain = append(chain, o)
		}
		if cfg.StaticTokensFile != "" {
			st, err := LoadStaticTokens(cfg.StaticTokensFile)
			if err != nil {
				return nil, err
			}
			chain = append(chain, st)
		}
		if len(chain) == 0 {
			return nil, errors.New("the codec endpoint needs --codec-oidc-issuer or --codec-static-tokens")
		}
		hcfg = codecserver.Config{Authenticator: chain, Authorizer: codecserver.AccessOf(store)}
	}
	audit, err := policy.OpenAuditWith(cfg.AuditLog, cfg.auditOptions())
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = audit.Close()
		}
	}()
	if cfg.Dev {
		if hcfg, err = codecserver.DevConfig(c, audit, "", cfg.Origins...); err != nil {
			return nil, err
		}
	}
	hcfg.Codec, hcfg.Scopes, hcfg.Audit, hcfg.Logger = c, scopes, audit, log
	hcfg.AllowedOrigins = cfg.Origins
	hcfg.MaxBodyBytes, hcfg.MaxPayloads, hcfg.HandlerTimeout = cfg.MaxBodyBytes, cfg.MaxPayloads, cfg.HandlerTimeout
	hcfg.MaxDecodedBytes = cfg.MaxDecodedBytesPerRequest
	hcfg.OnRefused = cfg.onRefused
	hcfg.RateLimit, hcfg.RateBurst = rate.Limit(cfg.RateLimit), cfg.RateBurst
	hcfg.AuthFailureRate, hcfg.AuthFailureBurst = rate.Limit(cfg.AuthFailureRate), cfg.AuthFailureBurst
	hcfg.IPRateLimit, hcfg.IPRateBurst = rate.Limit(cfg.IPRateLimit), cfg.IPRateBurst
	h, err := codecserver.New(hcfg)
	if err != nil {
		return nil, err
	}
	ln := cfg.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			return nil, fmt.Errorf("codec endpoint: %w", err)
		}
	}
	srv := h.Server()
	e := &codecEndpoint{srv: srv, audit: audit, done: make(chan error, 1), stopWatch: stopWatch}
	scheme := "http"
	if cfg.TLSCert != "" {
		scheme = "https"
	}
	e.url = scheme + "://" + ln.Addr().String()
	go func() {
		var err error
		if cfg.TLSCert != "" {
			err = srv.ServeTLS(ln, cfg.TLSCert, cfg.TLSKey)
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

// requireLoopback refuses a dev endpoint (which lets everyone decode) anywhere but loopback.
func requireLoopback(cfg CodecEndpointConfig) error {
	addr := cfg.Listen
	if cfg.Listener != nil {
		addr = cfg.Listener.Addr().String()
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("codec endpoint address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("the dev codec endpoint allows everyone and must listen on loopback, not %q", host)
	}
	return nil
}

type staticTokenFile []struct {
	Token   string   `yaml:"token"`
	Subject string   `yaml:"subject"`
	Groups  []string `yaml:"groups"`
}

// LoadStaticTokens reads a YAML list of {token, subject, groups} strictly (unknown keys and repeated tokens are errors).
func LoadStaticTokens(path string) (*codecserver.StaticTokens, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("static tokens: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
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
