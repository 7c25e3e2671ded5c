package codecserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"golang.org/x/time/rate"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/internal/netkey"
	"github.com/blindfold-dev/blindfold/policy"
)

// Codec encodes and decodes payloads for a namespace. *codec.Codec implements it. EncodeFor seals for t.Namespace with the
// key scope t.Scope ("" for the keyring's default scope of the namespace).
type Codec interface {
	EncodeFor(ctx context.Context, t codec.Target, payloads []*commonpb.Payload) ([]*commonpb.Payload, error)
	Decode(ctx context.Context, namespace string, payloads []*commonpb.Payload) ([]*commonpb.Payload, error)
}

// ScopeSource picks the key scope the endpoint's encode seals a namespace's payloads with. *policy.Store and *policy.Policy
// implement it (SealScope). An error must wrap why no scope can be used; the encode then fails rather than seal elsewhere.
type ScopeSource interface {
	SealScope(namespace string) (string, error)
}

// Authorizer decides whether an identity may perform an operation on a namespace. *policy.Access implements it.
type Authorizer interface {
	Authorize(ctx context.Context, id policy.Identity, namespace string, op policy.Operation) policy.Decision
}

// AuditLog records decisions. *policy.AuditLog implements it. Append returns the new head hash once the record is as
// durable as the log promises: fsynced in strict mode, written (and fsynced within the window) with a sync window.
// The handler sends no response to a decision before Append returned nil.
type AuditLog interface {
	Append(r policy.Record) (string, error)
}

// httpDoor marks every record the handler writes as coming through the HTTP door (the gRPC proxy writes to the
// same log with policy.DoorGRPC when the two share one gateway).
type httpDoor struct{ AuditLog }

func (a httpDoor) Append(r policy.Record) (string, error) {
	r.Door = policy.DoorHTTP
	return a.AuditLog.Append(r)
}

// Config configures a Handler. Codec, Authenticator, Authorizer and Audit are required.
type Config struct {
	Codec Codec
	// Scopes, if set, picks the key scope of every encode: typically the proxy's policy, so the endpoint seals a namespace's
	// payloads where the proxy would for a request that names no tenant. Nil means the keyring's default scope of the namespace.
	Scopes        ScopeSource
	Authenticator Authenticator
	Authorizer    Authorizer
	Audit         AuditLog
	// KeyID names the key that sealed an encrypted payload, read from its envelope metadata (never its contents), for the audit log.
	// It returns "" for payloads that are not encrypted; namespace is the one it is opened in. Nil means codec.KeyIDIn (Blindfold envelopes).
	KeyID func(p *commonpb.Payload, namespace string) string
	// AllowedOrigins are the browser origins (scheme://host[:port]) that may call the endpoint, typically the Web UI's.
	// Requests carrying any other Origin are refused with 403.
	AllowedOrigins []string
	// MaxBodyBytes caps the request body (default 32 MiB); larger bodies get 413.
	MaxBodyBytes int64
	// MaxPayloads caps the payloads in one request (default 20,000); more get 413.
	MaxPayloads int
	// MaxDecodedBytes caps the bytes the compressed payloads of one decode request may expand to, all together
	// (default: the codec's own cap per Decode call, codec.DefaultMaxDecodedTotal unless configured); more get 413.
	// The cap needs a Codec that implements BudgetCodec, as *codec.Codec does.
	MaxDecodedBytes int64
	// RateLimit is each identity's sustained PAYLOADS per second (default 2,000) and RateBurst its burst in payloads
	// (default 20,000); a request costs its payload count, at least one. Counting payloads rather than requests lets
	// the temporal CLI, which sends one payload per request, read a 10,000-event history at full speed, while a
	// stolen token still cannot decode more than the same budget by batching. A negative RateLimit disables it.
	RateLimit rate.Limit
	RateBurst int
	// AuthFailureRate and AuthFailureBurst limit failed authentications per remote IP, in requests (default 50/s,
	// burst 100), before they reach the audit log. A negative AuthFailureRate disables it.
	AuthFailureRate  rate.Limit
	AuthFailureBurst int
	// IPRateLimit and IPRateBurst limit every request per remote IP, in requests (default 2,000/s, burst 20,000),
	// before any credential is looked at: a flood of forged tokens costs at most this many signature checks (and
	// JWKS lookups) per IP. The default is one identity's payload budget, so a lone temporal CLI sending one payload
	// per request meets the identity's limit first. A negative IPRateLimit disables it.
	//
	// The order per request: this per-IP limit, then authentication, then (if it failed) the per-IP failed-
	// authentication limit and the audit record, else the identity's payload limit before and after reading the body.
	// Limits are per TCP peer: behind an ingress or load balancer every caller shares its address.
	IPRateLimit rate.Limit
	IPRateBurst int
	// HandlerTimeout bounds the work on one request (default 30 s); ReadTimeout bounds reading it (default 30 s, used by Server).
	HandlerTimeout time.Duration
	ReadTimeout    time.Duration
	// Logger receives one line per decision (never payload data); default slog.Default().
	Logger *slog.Logger
	// OnRefused, if set, is called with the HTTP status of every request the endpoint refuses (4xx), so refusals can
	// be counted in metrics; it must be fast and safe for concurrent use.
	OnRefused func(status int)
}

// Defaults for Config fields left zero.
const (
	DefaultMaxBodyBytes = 32 << 20
	DefaultMaxPayloads  = 20000
	DefaultRateLimit    = 2000
	DefaultRateBurst    = 20000
	// Failed authentications per remote IP: requests per second and burst.
	DefaultAuthFailureRate  = 50
	DefaultAuthFailureBurst = 100
	// Every request per remote IP, before authentication: requests per second and burst.
	DefaultIPRateLimit    = 2000
	DefaultIPRateBurst    = 20000
	DefaultHandlerTimeout = 30 * time.Second
	DefaultReadTimeout    = 30 * time.Second
)

// DecodeErrorKey is the metadata key added to a payload that could not be decoded; its value says why. It is
// codec.MetadataDecodeError, which clients (the SDK plugin, the CLI) read.
const DecodeErrorKey = codec.MetadataDecodeError

// FailedPayloadsHeader is the response header counting payloads that could not be decoded.
const FailedPayloadsHeader = "Blindfold-Failed-Payloads"

// userKey is an identity's rate-limit bucket: fields, not a joined string, so that no issuer or subject containing the
// separator can share another identity's bucket.
type userKey struct{ method, issuer, subject string }

// Handler serves the remote codec protocol. It is safe for concurrent use.
type Handler struct {
	cfg     Config
	origins map[string]bool
	users   *limiter[userKey]
	ips     *limiter[string] // failed authentications per IP (netkey.Source)
	sources *limiter[string] // every request per IP, before authentication (netkey.Source)
	log     *slog.Logger
	// dec is the decode path shared with `blindfold decode`; its audit method also records the handler's other decisions.
	dec *Decoder
}

// New validates cfg and returns a Handler.
func New(cfg Config) (*Handler, error) {
	switch {
	case cfg.Codec == nil:
		return nil, errors.New("codecserver: Codec is required")
	case cfg.Authenticator == nil:
		return nil, errors.New("codecserver: Authenticator is required")
	case cfg.Authorizer == nil:
		return nil, errors.New("codecserver: Authorizer is required")
	case cfg.Audit == nil:
		return nil, errors.New("codecserver: Audit is required")
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxPayloads <= 0 {
		cfg.MaxPayloads = DefaultMaxPayloads
	}
	if _, ok := cfg.Codec.(BudgetCodec); cfg.MaxDecodedBytes > 0 && !ok {
		return nil, fmt.Errorf("codecserver: MaxDecodedBytes needs a Codec that implements BudgetCodec; %T does not", cfg.Codec)
	}
	if cfg.RateLimit == 0 {
		cfg.RateLimit = DefaultRateLimit
	}
	if cfg.RateBurst <= 0 {
		cfg.RateBurst = DefaultRateBurst
	}
	if cfg.AuthFailureRate == 0 {
		cfg.AuthFailureRate = DefaultAuthFailureRate
	}
	if cfg.AuthFailureBurst <= 0 {
		cfg.AuthFailureBurst = DefaultAuthFailureBurst
	}
	if cfg.IPRateLimit == 0 {
		cfg.IPRateLimit = DefaultIPRateLimit
	}
	if cfg.IPRateBurst <= 0 {
		cfg.IPRateBurst = DefaultIPRateBurst
	}
	if cfg.HandlerTimeout <= 0 {
		cfg.HandlerTimeout = DefaultHandlerTimeout
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = DefaultReadTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.KeyID == nil {
		cfg.KeyID = func(p *commonpb.Payload, namespace string) string {
			id, _ := codec.KeyIDIn(p, namespace)
			return id
		}
	}
	// A policy's rule set is immutable, so its answer for an (identity, namespace, operation) can be kept: the CLI asks
	// the same question for every payload.
	if a, ok := cfg.Authorizer.(*policy.Access); ok {
		cfg.Authorizer = newDecisionCache(a)
	}
	h := &Handler{cfg: cfg, origins: map[string]bool{}, log: cfg.Logger,
		dec: &Decoder{Codec: cfg.Codec, Authorizer: cfg.Authorizer, Audit: httpDoor{cfg.Audit}, Logger: cfg.Logger, KeyID: cfg.KeyID,
			MaxDecodedBytes: cfg.MaxDecodedBytes}}
	for _, o := range cfg.AllowedOrigins {
		norm, err := normalizeOrigin(o)
		if err != nil {
			return nil, fmt.Errorf("codecserver: allowed origin %q: %w", o, err)
		}
		h.origins[norm] = true
	}
	if cfg.RateLimit > 0 {
		h.users = newLimiter[userKey](cfg.RateLimit, cfg.RateBurst)
	}
	if cfg.AuthFailureRate > 0 {
		h.ips = newLimiter[string](cfg.AuthFailureRate, cfg.AuthFailureBurst)
	}
	if cfg.IPRateLimit > 0 {
		h.sources = newLimiter[string](cfg.IPRateLimit, cfg.IPRateBurst)
	}
	return h, nil
}

// Server returns an http.Server for h with the configured read timeout and conservative header limits; the caller sets Addr or uses Serve.
func (h *Handler) Server() *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       h.cfg.ReadTimeout,
		WriteTimeout:      h.cfg.ReadTimeout + h.cfg.HandlerTimeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(h.log.Handler(), slog.LevelWarn),
	}
}

func normalizeOrigin(o string) (string, error) {
	if o == "*" {
		return "", errors.New("wildcard origins are not allowed: the endpoint uses credentials")
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return "", errors.New("want scheme://host[:port]")
	}
	return strings.ToLower(u.Scheme + "://" + u.Host), nil
}

// namespaceRE accepts Temporal namespace names (including cloud "name.account" ones) and nothing that could smuggle a path or header.
var namespaceRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$`)

// httpError is a response the handler decided on: status, message, and whether the decision is audited.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func fail(status int, format string, args ...any) *httpError {
	return &httpError{status: status, msg: fmt.Sprintf(format, args...)}
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	// Decoded plaintext must never sit in a browser or proxy cache.
	hdr["Cache-Control"] = noStore
	if origin := r.Header.Get("Origin"); origin != "" {
		norm, err := normalizeOrigin(origin)
		if err != nil || !h.origins[norm] {
			h.writeError(w, fail(http.StatusForbidden, "origin %q is not allowed", origin))
			return
		}
		hdr.Set("Access-Control-Allow-Origin", origin)
		hdr.Set("Access-Control-Allow-Credentials", "true")
		hdr.Set("Access-Control-Expose-Headers", FailedPayloadsHeader)
		hdr.Add("Vary", "Origin")
	}
	// Before anything reads a credential: forged tokens must not buy signature checks or key fetches beyond this.
	if ok, wait := h.sources.allow(netkey.Source(r.RemoteAddr), time.Now()); !ok {
		h.tooMany(w, wait)
		return
	}
	if r.Method == http.MethodOptions {
		h.preflight(w, r)
		return
	}
	op, pathNS, ok := route(r.URL.Path)
	if !ok {
		h.writeError(w, fail(http.StatusNotFound, "not found: use POST /{namespace}/decode, /{namespace}/encode, /decode or /encode"))
		return
	}
	if r.Method != http.MethodPost {
		hdr.Set("Allow", "POST, OPTIONS")
		h.writeError(w, fail(http.StatusMethodNotAllowed, "method %s not allowed: use POST", r.Method))
		return
	}
	h.serveCodec(w, r, op, pathNS)
}

func (h *Handler) preflight(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	if r.Header.Get("Origin") == "" {
		hdr.Set("Allow", "POST, OPTIONS")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if m := r.Header.Get("Access-Control-Request-Method"); m != "" && m != http.MethodPost {
		h.writeError(w, fail(http.StatusMethodNotAllowed, "method %s not allowed: use POST", m))
		return
	}
	hdr.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
	hdr.Set("Access-Control-Allow-Headers", "Authorization, Authorization-Extras, Content-Type, X-Namespace")
	hdr.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
}

// route maps a path to the operation and the namespace it names, if any.
func route(p string) (policy.Operation, string, bool) {
	parts := strings.Split(strings.Trim(p, "/"), "/")
	var op, ns string
	switch len(parts) {
	case 1:
		op = parts[0]
	case 2:
		ns, op = parts[0], parts[1]
	default:
		return "", "", false
	}
	switch policy.Operation(op) {
	case policy.OpDecode, policy.OpEncode:
		return policy.Operation(op), ns, true
	}
	return "", "", false
}

func (h *Handler) serveCodec(w http.ResponseWriter, r *http.Request, op policy.Operation, pathNS string) {
	now := time.Now()
	rec := policy.Record{Via: ViaCodecEndpoint, Operation: string(op), RemoteAddr: r.RemoteAddr, Decision: policy.AuditDeny}

	id, err := h.cfg.Authenticator.Authenticate(r)
	if err != nil {
		// Limit failures per IP before auditing them, so unauthenticated callers cannot flood the audit log.
		if ok, wait := h.ips.allow(netkey.Source(r.RemoteAddr), now); !ok {
			h.tooMany(w, wait)
			return
		}
		reason := "unauthenticated: " + err.Error()
		if errors.Is(err, ErrNoCredentials) {
			reason = "unauthenticated: no credentials"
			w.Header().Set("WWW-Authenticate", `Bearer realm="blindfold-codec"`)
		} else {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="blindfold-codec", error="invalid_token", error_description=%q`, sanitizeHeader(err.Error())))
		}
		rec.Namespace, _ = namespaceOf(r, pathNS)
		rec.Reason = reason
		_ = h.dec.audit(rec)
		h.writeError(w, fail(http.StatusUnauthorized, "%s", reason))
		return
	}
	rec.Identity = id

	// An identity with no budget left is refused before its body is read; the payloads are counted once parsed.
	uk := userKey{method: id.Method, issuer: id.Issuer, subject: id.Subject}
	if ok, wait := h.users.has(uk, now); !ok {
		h.tooMany(w, wait)
		return
	}
	ns, herr := namespaceOf(r, pathNS)
	if herr != nil {
		h.writeError(w, herr)
		return
	}
	rec.Namespace = ns

	payloads, arena, herr := h.readPayloads(w, r)
	// After every write of the response: the payloads, and so the response, may refer to the arena.
	defer arena.release()
	if herr != nil {
		h.writeError(w, herr)
		return
	}
	if n := max(1, len(payloads)); h.users != nil && n > h.cfg.RateBurst {
		h.writeError(w, fail(http.StatusRequestEntityTooLarge, "%d payloads exceed the rate limit's burst of %d per identity; split the request", n, h.cfg.RateBurst))
		return
	} else if ok, wait := h.users.allowN(uk, n, now); !ok {
		h.tooMany(w, wait)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.HandlerTimeout)
	defer cancel()
	if op == policy.OpDecode {
		h.serveDecode(ctx, w, DecodeRequest{Identity: id, Namespace: ns, Via: ViaCodecEndpoint, RemoteAddr: r.RemoteAddr}, payloads)
		return
	}

	rec.Payloads = len(payloads)
	rec.KeyIDs = h.dec.keyIDs(payloads, ns)
	d := h.cfg.Authorizer.Authorize(ctx, id, ns, op)
	rec.Reason = d.Reason
	if !d.Allow {
		_ = h.dec.audit(rec)
		h.writeError(w, fail(http.StatusForbidden, "forbidden: %s", d.Reason))
		return
	}
	out, err := h.encode(ctx, ns, payloads)
	if err == nil && len(out) != len(payloads) {
		err = fmt.Errorf("codec returned %d payloads for %d", len(out), len(payloads))
	}
	if err != nil {
		rec.Decision, rec.Failed = policy.AuditAllow, len(payloads)
		rec.Reason = d.Reason + "; encode failed: " + err.Error()
		_ = h.dec.audit(rec)
		h.writeError(w, fail(http.StatusServiceUnavailable, "encode failed: %v", err))
		return
	}
	body, err := marshalResponse(out)
	if err != nil {
		h.writeError(w, fail(http.StatusInternalServerError, "encode response: %v", err))
		return
	}
	defer body.release()
	rec.Decision = policy.AuditAllow
	// The record must be durable before the response is sent, as for decode.
	if h.dec.audit(rec) != nil {
		h.writeError(w, fail(http.StatusServiceUnavailable, "audit log unavailable; refusing to %s", op))
		return
	}
	h.writeOK(w, body, 0)
}

// serveDecode answers a decode through the shared Decoder, writing the response only once its record is durable. The
// decode's workers encode each chunk of the response as soon as they have decoded it; nothing of it is sent before
// Commit returned nil, and on any failure it is dropped.
func (h *Handler) serveDecode(ctx context.Context, w http.ResponseWriter, req DecodeRequest, payloads []*commonpb.Payload) {
	var rb respBuilder
	res, err := h.dec.decodeEach(ctx, req, payloads, func(lo, hi int, out []*commonpb.Payload) { rb.add(lo, out[lo:hi]) })
	if err != nil {
		rb.release()
		var fe *ForbiddenError
		switch {
		case errors.As(err, &fe):
			h.writeError(w, fail(http.StatusForbidden, "forbidden: %s", fe.Reason))
		case ctx.Err() != nil:
			h.writeError(w, fail(http.StatusServiceUnavailable, "decode did not finish within %s", h.cfg.HandlerTimeout))
		case errors.Is(err, codec.ErrDecodedTooLarge):
			// The whole request, not one payload: ask for fewer payloads at a time.
			h.writeError(w, fail(http.StatusRequestEntityTooLarge, "%s; decode fewer payloads per request",
				strings.TrimPrefix(err.Error(), "codecserver: ")))
		default:
			// Unreachable with payloads from parsePayloads, which rejects nulls; kept so a future error is not a 200.
			h.writeError(w, fail(http.StatusInternalServerError, "decode: %v", err))
		}
		return
	}
	body, err := rb.body(res.Payloads)
	if err != nil {
		h.writeError(w, fail(http.StatusInternalServerError, "encode response: %v", err))
		return
	}
	defer body.release()
	// The record must be durable before any plaintext is sent.
	if res.Commit() != nil {
		h.writeError(w, fail(http.StatusServiceUnavailable, "audit log unavailable; refusing to %s", policy.OpDecode))
		return
	}
	h.writeOK(w, body, res.Failed)
}

// Header values every response carries, shared rather than allocated per request (Header.Set makes a slice for each).
// Nothing writes into a header's value slice; their capacity is their length, so an Add to one copies it.
var (
	noStore         = []string{"no-store"}
	contentTypeJSON = []string{"application/json"}
)

func (h *Handler) writeOK(w http.ResponseWriter, body *respBody, failed int) {
	hdr := w.Header()
	hdr["Content-Type"] = contentTypeJSON
	// A known length lets the client size its buffer and spares chunked framing.
	hdr.Set("Content-Length", strconv.Itoa(body.size))
	if failed > 0 {
		hdr.Set(FailedPayloadsHeader, strconv.Itoa(failed))
	}
	w.WriteHeader(http.StatusOK)
	for _, p := range body.parts {
		if _, err := w.Write(p); err != nil {
			return // the client went away
		}
	}
}

// encode seals payloads for ns with the scope Config.Scopes picks, or the keyring's default scope.
func (h *Handler) encode(ctx context.Context, ns string, payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	t := codec.Target{Namespace: ns}
	if h.cfg.Scopes != nil {
		scope, err := h.cfg.Scopes.SealScope(ns)
		if err != nil {
			return nil, fmt.Errorf("key scope of namespace %q: %w", ns, err)
		}
		t.Scope = scope
	}
	return h.cfg.Codec.EncodeFor(ctx, t, payloads)
}

// DefaultNamespace is the namespace of a request that names none (no namespace in the path, an absent or empty
// X-Namespace header): Temporal's default namespace, the one an SDK client or the temporal CLI uses when it is given
// none. The temporal CLI (1.5) sends an empty X-Namespace and substitutes "" for {namespace} in --codec-endpoint
// unless --namespace is given explicitly, while its gRPC calls read "default": refusing such a request made the CLI
// retry until its deadline with nothing but "context deadline exceeded" to show for it. Choosing the namespace
// grants nothing: the policy decides for it like for any other, and a payload sealed for another namespace is
// refused by its envelope's binding.
const DefaultNamespace = "default"

// namespaceOf reads the namespace from the path or the X-Namespace header; both may be given only if they agree.
// A request that gives neither is for DefaultNamespace.
func namespaceOf(r *http.Request, pathNS string) (string, *httpError) {
	hdrNS := strings.TrimSpace(r.Header.Get("X-Namespace"))
	ns := pathNS
	switch {
	case pathNS != "" && hdrNS != "" && pathNS != hdrNS:
		return "", fail(http.StatusBadRequest, "namespace in path (%q) and X-Namespace header (%q) differ", pathNS, hdrNS)
	case ns == "":
		ns = hdrNS
	}
	if ns == "" {
		ns = DefaultNamespace
	}
	if !namespaceRE.MatchString(ns) {
		return "", fail(http.StatusBadRequest, "invalid namespace %q", ns)
	}
	return ns, nil
}

// readPayloads reads and parses the body. The payloads may share a pooled arena, which the caller releases once nothing
// refers to them any more (after the response is written); nil when there is none (releasing nil does nothing). A body with a Content-Length is scanned
// while it arrives (scanReader), and its values decoded by other cores meanwhile.
//
// The arena, not a release func: the method value arena.release was an allocation per request.
func (h *Handler) readPayloads(w http.ResponseWriter, r *http.Request) (ps []*commonpb.Payload, arena *bigBuffer, _ *httpError) {
	// What every client sends is accepted without parsing it (ParseMediaType builds a parameter map).
	if ct := r.Header.Get("Content-Type"); ct != "" && ct != "application/json" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return nil, nil, fail(http.StatusUnsupportedMediaType, "content type %q not supported: send application/json", ct)
		}
	}
	if r.ContentLength > h.cfg.MaxBodyBytes {
		return nil, nil, fail(http.StatusRequestEntityTooLarge, "request body of %d bytes exceeds the limit of %d", r.ContentLength, h.cfg.MaxBodyBytes)
	}
	body := http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes)
	if r.ContentLength <= 0 {
		bb, err := readBody(body, r.ContentLength)
		// The payloads never refer to the body: its buffer goes back to the pool once parsed.
		defer bb.release()
		if err != nil {
			return nil, nil, h.readError(err)
		}
		return parsePayloadsArena(bb.b, h.cfg.MaxPayloads)
	}
	bb := getBigBuffer(int(r.ContentLength))
	defer bb.release()
	ps, arena, n, ok, err := scanReader(body, bb.b, h.cfg.MaxPayloads)
	if err == nil && !ok {
		// protojson decides on the whole body.
		if _, err = io.ReadFull(body, bb.b[n:]); errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
	}
	if err == nil {
		err = atEOF(body)
	}
	if err != nil {
		arena.release()
		return nil, nil, h.readError(err)
	}
	if ok {
		return ps, arena, nil
	}
	ps, herr := parseSlow(bb.b, h.cfg.MaxPayloads)
	return ps, nil, herr
}

// readError is the response to a body that could not be read.
func (h *Handler) readError(err error) *httpError {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return fail(http.StatusRequestEntityTooLarge, "request body exceeds the limit of %d bytes", h.cfg.MaxBodyBytes)
	}
	return fail(http.StatusBadRequest, "read request body: %v", err)
}

// atEOF checks that body has nothing after the bytes read: net/http ends a body at its Content-Length, so this read
// sees that EOF (or the limit's error).
func atEOF(body io.Reader) error {
	var one [1]byte
	if m, err := body.Read(one[:]); m > 0 || (err != nil && err != io.EOF) {
		if err == nil {
			err = errors.New("body longer than its Content-Length")
		}
		return err
	}
	return nil
}

// readBody reads all of body. With a known length (n > 0) it reads into a buffer of exactly that size: growing a
// buffer to find the end would copy a 16 MB body once more.
func readBody(body io.Reader, n int64) (*bigBuffer, error) {
	if n <= 0 {
		var buf bytes.Buffer
		_, err := buf.ReadFrom(body)
		return &bigBuffer{b: buf.Bytes()}, err
	}
	bb := getBigBuffer(int(n))
	if _, err := io.ReadFull(body, bb.b); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return bb, err
	}
	return bb, atEOF(body)
}

// parsePayloads decodes a {"payloads":[…]} body strictly (unknown fields are errors).
func parsePayloads(body []byte, max int) ([]*commonpb.Payload, *httpError) {
	ps, arena, err := parsePayloadsArena(body, max)
	arena.keep()
	return ps, err
}

// parsePayloadsArena is parsePayloads with the arena the fast path's payloads share (nil after protojson), for the
// caller to release once nothing refers to them. It never fails with an arena to release.
func parsePayloadsArena(body []byte, max int) ([]*commonpb.Payload, *bigBuffer, *httpError) {
	if fast, arena, ok := fastUnmarshalArena(body, max); ok {
		return fast, arena, nil
	}
	ps, herr := parseSlow(body, max)
	return ps, nil, herr
}

// parseSlow is parsePayloads through protojson, for the bodies the fast path leaves to it.
func parseSlow(body []byte, max int) ([]*commonpb.Payload, *httpError) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, fail(http.StatusBadRequest, `empty body: send {"payloads":[…]}`)
	}
	var ps commonpb.Payloads
	if err := protojson.Unmarshal(body, &ps); err != nil {
		return nil, fail(http.StatusBadRequest, "malformed body: %v", err)
	}
	if len(ps.Payloads) > max {
		return nil, fail(http.StatusRequestEntityTooLarge, "%d payloads exceed the limit of %d per request", len(ps.Payloads), max)
	}
	for i, p := range ps.Payloads {
		if p == nil {
			return nil, fail(http.StatusBadRequest, "payload %d is null", i)
		}
	}
	return ps.Payloads, nil
}

func (h *Handler) tooMany(w http.ResponseWriter, wait time.Duration) {
	secs := int64(wait/time.Second) + 1
	if wait > time.Hour {
		secs = 3600
	}
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	h.writeError(w, fail(http.StatusTooManyRequests, "rate limit exceeded; retry in %d s", secs))
}

func (h *Handler) writeError(w http.ResponseWriter, e *httpError) {
	if e.status >= 400 && e.status < 500 && h.cfg.OnRefused != nil {
		h.cfg.OnRefused(e.status)
	}
	switch {
	case e.status >= 500:
		h.log.Warn("codec endpoint error", "status", e.status, "err", e.msg)
	case e.status != http.StatusUnauthorized && e.status != http.StatusForbidden:
		// 401 and 403 are audited and logged by audit; other rejections are only logged.
		h.log.Info("codec endpoint rejected request", "status", e.status, "err", e.msg)
	}
	http.Error(w, e.msg, e.status)
}

// sanitizeHeader keeps an error message safe inside a quoted header parameter.
func sanitizeHeader(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return ' '
		}
		return r
	}, s)
}
