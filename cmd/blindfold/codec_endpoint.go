package main

import (
	"time"

	"github.com/spf13/pflag"

	"github.com/blindfold-dev/blindfold/internal/gateway"
	"github.com/blindfold-dev/blindfold/proxy/codecserver"
)

// codecEndpointFlags configure the auditors' codec endpoint of `blindfold proxy`. A command registers them with
// register; the gateway starts the endpoint from config.
type codecEndpointFlags struct {
	listen         string
	policyFile     string
	auditLog       string
	auditSync      time.Duration
	origins        []string
	tlsCert        string
	tlsKey         string
	insecureListen bool
	oidcIssuer     string
	oidcAudiences  []string
	oidcJWKSURL    string
	oidcSubject    string
	oidcGroups     string
	oidcIDToken    bool
	oidcSkew       time.Duration
	staticTokens   string
	maxBody        int64
	maxPayloads    int
	maxDecoded     int64
	rateLimit      float64
	rateBurst      int
	authFailRate   float64
	authFailBurst  int
	ipRate         float64
	ipBurst        int
	handlerTimeout time.Duration
}

func (f *codecEndpointFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.listen, "codec-listen", "", "address of the auditors' codec endpoint for the Web UI and temporal CLI (empty: off)")
	fs.StringVar(&f.policyFile, "codec-policy", "", "policy file whose access section says who may decode which namespace")
	fs.StringVar(&f.auditLog, "codec-audit-log", "", "hash-chained audit log of every codec endpoint decision (JSON lines)")
	fs.DurationVar(&f.auditSync, "codec-audit-sync-window", 0, "0: fsync every audit record before its response (concurrent requests share fsyncs); "+
		"e.g. 5ms: write each record before its response and fsync within the window, so a serial client (the temporal CLI) "+
		"does not wait for an fsync per payload: records survive a crash of the process, but a power loss or kernel crash can lose the last window's")
	fs.StringSliceVar(&f.origins, "codec-ui-origin", nil, "browser origin allowed to call the endpoint, e.g. https://temporal-ui.example (repeatable)")
	fs.StringVar(&f.tlsCert, "codec-tls-cert", "", "TLS certificate for the endpoint (the Web UI passes tokens only to https endpoints)")
	fs.StringVar(&f.tlsKey, "codec-tls-key", "", "TLS private key for the endpoint")
	fs.BoolVar(&f.insecureListen, "codec-insecure-listen", false, "DANGEROUS: allow a non-loopback --codec-listen without TLS: "+
		"bearer tokens and decoded payloads cross the network in the clear; only for when a TLS-terminating ingress on a private path is the only way in (an authenticator is still required)")
	fs.StringVar(&f.oidcIssuer, "codec-oidc-issuer", "", "OIDC issuer whose JWTs authenticate callers")
	fs.StringSliceVar(&f.oidcAudiences, "codec-oidc-audience", nil, "accepted JWT audience (repeatable; required with --codec-oidc-issuer)")
	fs.StringVar(&f.oidcJWKSURL, "codec-oidc-jwks-url", "", "fetch signing keys from this URL instead of OIDC discovery")
	fs.StringVar(&f.oidcSubject, "codec-oidc-subject-claim", "sub", "JWT claim naming the caller")
	fs.StringVar(&f.oidcGroups, "codec-oidc-groups-claim", "groups", "JWT claim holding groups or roles (dotted paths reach nested claims)")
	fs.BoolVar(&f.oidcIDToken, "codec-oidc-accept-id-token", false, "also accept the ID token the Web UI sends in Authorization-Extras")
	fs.DurationVar(&f.oidcSkew, "codec-oidc-clock-skew", 0, "accept JWTs this long after their exp, for a clock behind the issuer's (at most 5m)")
	fs.StringVar(&f.staticTokens, "codec-static-tokens", "", "YAML file of static bearer tokens: a list of {token, subject, groups}")
	fs.Int64Var(&f.maxBody, "codec-max-body", codecserver.DefaultMaxBodyBytes, "largest request body in bytes (413 above)")
	fs.IntVar(&f.maxPayloads, "codec-max-payloads", codecserver.DefaultMaxPayloads, "most payloads in one request (413 above)")
	fs.Int64Var(&f.maxDecoded, "codec-max-decoded-bytes", 0, "most bytes the zstd-compressed payloads of one decode request may expand to, all together (413 above; 0: as --max-decoded-bytes)")
	fs.Float64Var(&f.rateLimit, "codec-rate-limit", codecserver.DefaultRateLimit, "payloads per second per identity, a request costing at least one (429 above)")
	fs.IntVar(&f.rateBurst, "codec-rate-burst", codecserver.DefaultRateBurst, "burst of payloads per identity (a request with more gets 413)")
	fs.Float64Var(&f.authFailRate, "codec-auth-failure-rate", codecserver.DefaultAuthFailureRate, "failed authentications per second per remote IP, before they are audited (429 above)")
	fs.IntVar(&f.authFailBurst, "codec-auth-failure-burst", codecserver.DefaultAuthFailureBurst, "burst of failed authentications per remote IP")
	fs.Float64Var(&f.ipRate, "codec-ip-rate-limit", codecserver.DefaultIPRateLimit, "requests per second per remote IP, counted before any token is verified (429 above; negative: off)")
	fs.IntVar(&f.ipBurst, "codec-ip-rate-burst", codecserver.DefaultIPRateBurst, "burst of requests per remote IP")
	fs.DurationVar(&f.handlerTimeout, "codec-timeout", codecserver.DefaultHandlerTimeout, "time limit for one request's work")
}

// config is the endpoint the flags describe (production mode: an authenticator and a policy are required).
func (f *codecEndpointFlags) config() gateway.CodecEndpointConfig {
	c := gateway.CodecEndpointConfig{
		Listen: f.listen, PolicyFile: f.policyFile, AuditLog: f.auditLog, AuditSyncWindow: f.auditSync, Origins: f.origins,
		TLSCert: f.tlsCert, TLSKey: f.tlsKey, InsecureListen: f.insecureListen, StaticTokensFile: f.staticTokens,
		MaxBodyBytes: f.maxBody, MaxPayloads: f.maxPayloads, MaxDecodedBytesPerRequest: f.maxDecoded, RateLimit: f.rateLimit, RateBurst: f.rateBurst,
		AuthFailureRate: f.authFailRate, AuthFailureBurst: f.authFailBurst, IPRateLimit: f.ipRate, IPRateBurst: f.ipBurst,
		HandlerTimeout: f.handlerTimeout,
	}
	if f.oidcIssuer != "" {
		c.OIDC = &codecserver.OIDCConfig{
			Issuer: f.oidcIssuer, Audiences: f.oidcAudiences, JWKSURL: f.oidcJWKSURL,
			SubjectClaim: f.oidcSubject, GroupsClaim: f.oidcGroups, AcceptIDTokenFromExtras: f.oidcIDToken, ClockSkew: f.oidcSkew,
		}
	}
	return c
}
