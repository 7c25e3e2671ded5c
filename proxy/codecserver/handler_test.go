package codecserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/codec/codectest"
	"github.com/blindfold-dev/blindfold/policy"
)

const testPolicy = `version: 1
access:
  rules:
    - name: auditors
      groups: [auditors]
      namespaces: ["prod-*", default]
      operations: [decode]
    - name: writers
      subjects: [writer]
      namespaces: ["*"]
      operations: [decode, encode]
`

const uiOrigin = "http://localhost:8233"

type fixture struct {
	t        *testing.T
	h        *Handler
	srv      *httptest.Server
	codec    *codec.Codec
	keys     *codectest.Keyring
	audit    *policy.AuditLog
	auditLog string
}

type fixtureOpt func(*Config)

func newFixture(t *testing.T, opts ...fixtureOpt) *fixture {
	t.Helper()
	pol, err := policy.Parse("test.yaml", []byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	auditPath := filepath.Join(t.TempDir(), "audit.jsonl")
	al, err := policy.OpenAudit(auditPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { al.Close() })
	static, err := NewStaticTokens(map[string]policy.Identity{
		"auditor-token": {Subject: "alice", Groups: []string{"auditors"}},
		"writer-token":  {Subject: "writer"},
		"nobody-token":  {Subject: "mallory"},
	})
	if err != nil {
		t.Fatal(err)
	}
	keys := codectest.NewKeyring()
	c, err := codec.New(keys)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Codec:          c,
		Authenticator:  static,
		Authorizer:     pol.Access,
		Audit:          al,
		AllowedOrigins: []string{uiOrigin},
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, o := range opts {
		o(&cfg)
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &fixture{t: t, h: h, srv: srv, codec: c, keys: keys, audit: al, auditLog: auditPath}
}

// seal encodes plaintext JSON payloads carrying the given marker strings for namespace ns.
func (f *fixture) seal(ns string, markers ...string) []*commonpb.Payload {
	f.t.Helper()
	var ps []*commonpb.Payload
	for _, m := range markers {
		ps = append(ps, &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte(`"` + m + `"`)})
	}
	out, err := f.codec.Encode(context.Background(), ns, ps)
	if err != nil {
		f.t.Fatal(err)
	}
	return out
}

func body(t *testing.T, ps ...*commonpb.Payload) string {
	t.Helper()
	b, err := protojson.Marshal(&commonpb.Payloads{Payloads: ps})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

type req struct {
	method, path, body string
	headers            map[string]string
}

func (f *fixture) do(r req) (*http.Response, string) {
	f.t.Helper()
	if r.method == "" {
		r.method = http.MethodPost
	}
	hr, err := http.NewRequest(r.method, f.srv.URL+r.path, strings.NewReader(r.body))
	if err != nil {
		f.t.Fatal(err)
	}
	for k, v := range r.headers {
		hr.Header.Set(k, v)
	}
	resp, err := f.srv.Client().Do(hr)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func auth(tok string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + tok, "Content-Type": "application/json"}
}

func with(m map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

func decodeResponse(t *testing.T, s string) []*commonpb.Payload {
	t.Helper()
	var ps commonpb.Payloads
	if err := protojson.Unmarshal([]byte(s), &ps); err != nil {
		t.Fatalf("response is not payloads JSON: %v: %s", err, s)
	}
	return ps.Payloads
}

func readAudit(t *testing.T, path string) []policy.Record {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := policy.VerifyAudit(bytes.NewReader(data), policy.VerifyOptions{}); err != nil {
		t.Fatalf("audit log does not verify: %v", err)
	}
	var recs []policy.Record
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if line == "" {
			continue
		}
		var r policy.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	return recs
}

func TestStatuses(t *testing.T) {
	f := newFixture(t)
	good := body(t, f.seal("default", "MARKER-1")...)
	tests := []struct {
		name   string
		req    req
		status int
		inBody string
	}{
		{"decode path form", req{path: "/default/decode", body: good, headers: auth("auditor-token")}, 200, "Ik1BUktFUi0xIg=="},
		{"decode header form", req{path: "/decode", body: good, headers: with(auth("auditor-token"), "X-Namespace", "default")}, 200, ""},
		{"ui query params ignored", req{path: "/decode?preserveStorageRefs=true", body: good, headers: with(auth("auditor-token"), "X-Namespace", "default")}, 200, ""},
		{"path and header agree", req{path: "/default/decode", body: good, headers: with(auth("auditor-token"), "X-Namespace", "default")}, 200, ""},
		{"content type with charset", req{path: "/default/decode", body: good, headers: with(auth("auditor-token"), "Content-Type", "application/json; charset=utf-8")}, 200, ""},
		{"no content type", req{path: "/default/decode", body: good, headers: map[string]string{"Authorization": "Bearer auditor-token"}}, 200, ""},
		{"empty payload list", req{path: "/default/decode", body: `{"payloads":[]}`, headers: auth("auditor-token")}, 200, ""},
		{"encode allowed", req{path: "/prod-1/encode", body: `{"payloads":[{"metadata":{"encoding":"anNvbi9wbGFpbg=="},"data":"IngiCg=="}]}`, headers: auth("writer-token")}, 200, "YmluYXJ5L2VuY3J5cHRlZA=="},

		{"bad json", req{path: "/default/decode", body: `{"payloads":[`, headers: auth("auditor-token")}, 400, "malformed body"},
		{"bad base64", req{path: "/default/decode", body: `{"payloads":[{"data":"!!!"}]}`, headers: auth("auditor-token")}, 400, "malformed body"},
		{"unknown field", req{path: "/default/decode", body: `{"payloads":[],"extra":1}`, headers: auth("auditor-token")}, 400, "malformed body"},
		{"null payload", req{path: "/default/decode", body: `{"payloads":[null]}`, headers: auth("auditor-token")}, 400, ""},
		{"empty body", req{path: "/default/decode", body: ``, headers: auth("auditor-token")}, 400, "empty body"},
		// The temporal CLI without an explicit --namespace: no namespace in the path, an empty header.
		{"no namespace is default", req{path: "/decode", body: good, headers: auth("auditor-token")}, 200, "Ik1BUktFUi0xIg=="},
		{"empty header is default", req{path: "/decode", body: good, headers: with(auth("auditor-token"), "X-Namespace", " ")}, 200, "Ik1BUktFUi0xIg=="},
		{"empty path namespace is default", req{path: "//decode", body: good, headers: auth("auditor-token")}, 200, "Ik1BUktFUi0xIg=="},
		{"default namespace still decided", req{path: "/decode", body: good, headers: auth("nobody-token")}, 403, "no rule allows"},
		{"invalid namespace", req{path: "/decode", body: good, headers: with(auth("auditor-token"), "X-Namespace", "a/../b")}, 400, "invalid namespace"},
		{"namespace mismatch", req{path: "/default/decode", body: good, headers: with(auth("auditor-token"), "X-Namespace", "prod-1")}, 400, "differ"},

		{"no credentials", req{path: "/default/decode", body: good}, 401, "no credentials"},
		{"unknown token", req{path: "/default/decode", body: good, headers: auth("wrong")}, 401, "invalid token"},
		{"not bearer", req{path: "/default/decode", body: good, headers: map[string]string{"Authorization": "Basic YTpi"}}, 401, "not a bearer"},

		{"policy denies subject", req{path: "/default/decode", body: good, headers: auth("nobody-token")}, 403, "no rule allows"},
		{"policy denies namespace", req{path: "/payroll/decode", body: good, headers: auth("auditor-token")}, 403, "forbidden"},
		{"policy denies encode", req{path: "/default/encode", body: good, headers: auth("auditor-token")}, 403, "no rule allows encode"},
		{"foreign origin", req{path: "/default/decode", body: good, headers: with(auth("auditor-token"), "Origin", "https://evil.example")}, 403, "origin"},

		{"unknown route", req{path: "/default/download", body: good, headers: auth("auditor-token")}, 404, ""},
		{"too deep", req{path: "/a/b/decode", body: good, headers: auth("auditor-token")}, 404, ""},
		{"get", req{method: http.MethodGet, path: "/default/decode", headers: auth("auditor-token")}, 405, "use POST"},
		{"put", req{method: http.MethodPut, path: "/decode", body: good, headers: auth("auditor-token")}, 405, ""},

		{"wrong content type", req{path: "/default/decode", body: good, headers: with(auth("auditor-token"), "Content-Type", "text/plain")}, 415, "application/json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := f.do(tc.req)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, b)
			}
			if !strings.Contains(b, tc.inBody) {
				t.Fatalf("body %q does not contain %q", b, tc.inBody)
			}
			if resp.Header.Get("Cache-Control") != "no-store" {
				t.Fatal("missing Cache-Control: no-store")
			}
			if tc.status == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer ") {
				t.Fatalf("401 without WWW-Authenticate: %v", resp.Header)
			}
			if tc.status == 405 && resp.Header.Get("Allow") == "" {
				t.Fatal("405 without Allow")
			}
			if tc.status == 200 {
				if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
					t.Fatalf("content type %q", ct)
				}
				decodeResponse(t, b)
			}
		})
	}
}

func TestDecodeMarkers(t *testing.T) {
	f := newFixture(t)
	ps := f.seal("default", "MARKER-A", "MARKER-B")
	plain := &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte(`"not encrypted"`)}
	resp, b := f.do(req{path: "/default/decode", body: body(t, ps[0], plain, ps[1]), headers: auth("auditor-token")})
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	out := decodeResponse(t, b)
	if len(out) != 3 || string(out[0].Data) != `"MARKER-A"` || string(out[1].Data) != `"not encrypted"` || string(out[2].Data) != `"MARKER-B"` {
		t.Fatalf("decoded %v", out)
	}
	if string(out[0].Metadata["encoding"]) != "json/plain" {
		t.Fatalf("original metadata not restored: %v", out[0].Metadata)
	}
	if resp.Header.Get(FailedPayloadsHeader) != "" {
		t.Fatal("failed header on full success")
	}
}

// TestDecodePerPayloadFailures checks the per-payload semantics: failures keep their ciphertext and say why; the rest decode.
func TestDecodePerPayloadFailures(t *testing.T) {
	f := newFixture(t)
	old := f.seal("default", "OLD")[0]
	if _, err := f.keys.Rotate("default"); err != nil {
		t.Fatal(err)
	}
	ok := f.seal("default", "FINE")[0]
	tampered := f.seal("default", "TAMPERED")[0]
	tampered.Data[len(tampered.Data)-1] ^= 1
	other := f.seal("prod-1", "OTHER-NS")[0]
	foreignCodec, _ := codec.New(codectest.NewKeyring())
	foreign, _ := foreignCodec.Encode(context.Background(), "default", []*commonpb.Payload{{Data: []byte("FOREIGN")}})
	plain := &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte(`"plain"`)}

	resp, b := f.do(req{path: "/default/decode", body: body(t, old, ok, tampered, other, foreign[0], plain), headers: auth("auditor-token")})
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	if got := resp.Header.Get(FailedPayloadsHeader); got != "3" {
		t.Fatalf("%s = %q, want 3", FailedPayloadsHeader, got)
	}
	out := decodeResponse(t, b)
	if string(out[0].Data) != `"OLD"` || string(out[1].Data) != `"FINE"` || string(out[5].Data) != `"plain"` {
		t.Fatalf("good payloads not decoded: %v", out)
	}
	checkFailed := func(out []*commonpb.Payload, want map[int]string) {
		t.Helper()
		for i, w := range want {
			p := out[i]
			if got := string(p.Metadata[DecodeErrorKey]); !strings.Contains(got, w) {
				t.Errorf("payload %d error %q, want %q", i, got, w)
			}
			if string(p.Metadata["encoding"]) != "binary/encrypted" {
				t.Errorf("payload %d no longer looks encrypted: %v", i, p.Metadata)
			}
		}
	}
	checkFailed(out, map[int]string{2: "payload authentication failed", 3: "sealed for another namespace?", 4: "unknown key"})
	if !bytes.Equal(out[2].Data, tampered.Data) {
		t.Error("failed payload's ciphertext changed")
	}
	recs := readAudit(t, f.auditLog)
	last := recs[len(recs)-1]
	if last.Decision != policy.AuditAllow || last.Failed != 3 || last.Payloads != 6 || len(last.KeyIDs) != 4 {
		t.Fatalf("audit record %+v", last)
	}

	// After crypto-shredding the namespace, its payloads report a destroyed key; foreign-namespace ones are unaffected.
	f.keys.Destroy("default")
	resp, b = f.do(req{path: "/default/decode", body: body(t, old, ok), headers: auth("auditor-token")})
	if resp.StatusCode != 200 || resp.Header.Get(FailedPayloadsHeader) != "2" {
		t.Fatalf("%d %v %s", resp.StatusCode, resp.Header, b)
	}
	checkFailed(decodeResponse(t, b), map[int]string{0: "key destroyed", 1: "key destroyed"})
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	f := newFixture(t)
	in := &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte(`{"secret":"ROUNDTRIP"}`)}
	resp, b := f.do(req{path: "/prod-7/encode", body: body(t, in), headers: auth("writer-token")})
	if resp.StatusCode != 200 || strings.Contains(b, "ROUNDTRIP") {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	resp, b = f.do(req{path: "/prod-7/decode", body: b, headers: auth("auditor-token")})
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	if out := decodeResponse(t, b); string(out[0].Data) != `{"secret":"ROUNDTRIP"}` {
		t.Fatalf("round trip gave %v", out)
	}
}

func TestLimits(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxBodyBytes = 4096; c.MaxPayloads = 3 })
	t.Run("413 body", func(t *testing.T) {
		big := body(t, f.seal("default", strings.Repeat("x", 5000))...)
		resp, b := f.do(req{path: "/default/decode", body: big, headers: auth("auditor-token")})
		if resp.StatusCode != 413 || !strings.Contains(b, "limit") {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
	})
	t.Run("413 body chunked", func(t *testing.T) {
		big := body(t, f.seal("default", strings.Repeat("x", 5000))...)
		hr, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/default/decode", io.MultiReader(strings.NewReader(big)))
		hr.Header.Set("Authorization", "Bearer auditor-token")
		hr.ContentLength = -1
		resp, err := f.srv.Client().Do(hr)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 413 {
			t.Fatalf("%d", resp.StatusCode)
		}
	})
	t.Run("413 count", func(t *testing.T) {
		resp, b := f.do(req{path: "/default/decode", body: body(t, f.seal("default", "a", "b", "c", "d")...), headers: auth("auditor-token")})
		if resp.StatusCode != 413 || !strings.Contains(b, "4 payloads exceed the limit of 3") {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
	})
}

func TestRateLimit(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.RateLimit = 0.001
		c.RateBurst = 2
		c.AuthFailureRate = 0.001
		c.AuthFailureBurst = 2
	})
	good := body(t, f.seal("default", "x")...)
	for i := 0; i < 2; i++ {
		if resp, b := f.do(req{path: "/default/decode", body: good, headers: auth("auditor-token")}); resp.StatusCode != 200 {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, b)
		}
	}
	resp, b := f.do(req{path: "/default/decode", body: good, headers: auth("auditor-token")})
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("%d %s %v", resp.StatusCode, b, resp.Header)
	}
	// Another identity has its own bucket.
	if resp, b := f.do(req{path: "/default/decode", body: good, headers: auth("writer-token")}); resp.StatusCode != 200 {
		t.Fatalf("other identity: %d %s", resp.StatusCode, b)
	}
	// Failed authentication is limited per IP, before it can reach the audit log.
	before := len(readAudit(t, f.auditLog))
	codes := map[int]int{}
	for i := 0; i < 4; i++ {
		resp, _ := f.do(req{path: "/default/decode", body: good, headers: auth("bad")})
		codes[resp.StatusCode]++
	}
	if codes[401] != 2 || codes[429] != 2 {
		t.Fatalf("failed-auth statuses %v", codes)
	}
	if after := len(readAudit(t, f.auditLog)); after != before+2 {
		t.Fatalf("audit grew by %d, want 2", after-before)
	}
}

func TestCORS(t *testing.T) {
	f := newFixture(t)
	preflight := func(origin, method string) *http.Response {
		resp, _ := f.do(req{method: http.MethodOptions, path: "/decode", headers: map[string]string{
			"Origin": origin, "Access-Control-Request-Method": method,
			"Access-Control-Request-Headers": "authorization,authorization-extras,content-type,x-namespace",
		}})
		return resp
	}
	resp := preflight(uiOrigin, "POST")
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("preflight %d", resp.StatusCode)
	}
	h := resp.Header
	if h.Get("Access-Control-Allow-Origin") != uiOrigin || h.Get("Access-Control-Allow-Credentials") != "true" {
		t.Fatalf("preflight headers %v", h)
	}
	for _, want := range []string{"Authorization", "Authorization-Extras", "Content-Type", "X-Namespace"} {
		if !strings.Contains(h.Get("Access-Control-Allow-Headers"), want) {
			t.Errorf("allow-headers %q lacks %s", h.Get("Access-Control-Allow-Headers"), want)
		}
	}
	if !strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") {
		t.Errorf("allow-methods %q", h.Get("Access-Control-Allow-Methods"))
	}
	if r := preflight("https://evil.example", "POST"); r.StatusCode != 403 || r.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("foreign preflight %d %v", r.StatusCode, r.Header)
	}
	if r := preflight(uiOrigin, "DELETE"); r.StatusCode != 405 {
		t.Fatalf("preflight for DELETE: %d", r.StatusCode)
	}
	// The actual request from the UI carries CORS headers, also on errors, so the UI can read the status.
	good := body(t, f.seal("default", "x")...)
	for _, tc := range []struct {
		hdr    map[string]string
		status int
	}{
		{with(auth("auditor-token"), "Origin", uiOrigin, "X-Namespace", "default"), 200},
		{map[string]string{"Origin": uiOrigin, "X-Namespace": "default", "Content-Type": "application/json"}, 401},
		{with(auth("nobody-token"), "Origin", uiOrigin, "X-Namespace", "default"), 403},
	} {
		resp, b := f.do(req{path: "/decode", body: good, headers: tc.hdr})
		if resp.StatusCode != tc.status || resp.Header.Get("Access-Control-Allow-Origin") != uiOrigin || resp.Header.Get("Access-Control-Allow-Credentials") != "true" {
			t.Fatalf("status %d (want %d), headers %v: %s", resp.StatusCode, tc.status, resp.Header, b)
		}
	}
	if _, err := New(Config{Codec: f.codec, Authenticator: Chain{}, Authorizer: policy.DevAccess(), Audit: f.audit, AllowedOrigins: []string{"*"}}); err == nil {
		t.Fatal("wildcard origin accepted")
	}
}

func TestAuditRecords(t *testing.T) {
	f := newFixture(t)
	good := body(t, f.seal("default", "SECRET-MARKER")...)
	f.do(req{path: "/default/decode", body: good, headers: auth("auditor-token")})
	f.do(req{path: "/default/decode", body: good, headers: auth("nobody-token")})
	f.do(req{path: "/default/decode", body: good})
	f.do(req{path: "/default/decode", body: `{`, headers: auth("auditor-token")}) // malformed: not a decision, not audited
	recs := readAudit(t, f.auditLog)
	if len(recs) != 3 {
		t.Fatalf("%d records: %+v", len(recs), recs)
	}
	want := []struct {
		subject, decision, reason string
	}{
		{"alice", "allow", `allowed by rule "auditors"`},
		{"mallory", "deny", "no rule allows"},
		{"", "deny", "unauthenticated"},
	}
	for i, w := range want {
		r := recs[i]
		if r.Identity.Subject != w.subject || r.Decision != w.decision || !strings.Contains(r.Reason, w.reason) ||
			r.Namespace != "default" || r.Operation != "decode" || r.RemoteAddr == "" || r.Via != "codec-endpoint" {
			t.Errorf("record %d: %+v", i, r)
		}
	}
	if recs[0].Payloads != 1 || len(recs[0].KeyIDs) != 1 || recs[0].Identity.Method != "static" {
		t.Errorf("record 0: %+v", recs[0])
	}
	data, _ := os.ReadFile(f.auditLog)
	if bytes.Contains(data, []byte("SECRET-MARKER")) || bytes.Contains(data, []byte("U0VDUkVU")) {
		t.Fatal("payload content in the audit log")
	}
}

type brokenAudit struct{}

func (brokenAudit) Append(policy.Record) (string, error) { return "", errors.New("disk full") }

func TestAuditFailureFailsClosed(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Audit = brokenAudit{} })
	resp, b := f.do(req{path: "/default/decode", body: body(t, f.seal("default", "PLAINTEXT-MUST-NOT-LEAK")...), headers: auth("auditor-token")})
	if resp.StatusCode != 503 || strings.Contains(b, "PLAINTEXT") || strings.Contains(b, "UExBSU5URVhU") {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
}

// TestSDKRemoteCodec drives the endpoint with the Go SDK's remote codec client, which is what the temporal CLI uses for --codec-endpoint.
func TestSDKRemoteCodec(t *testing.T) {
	f := newFixture(t)
	ns := "prod-eu"
	remote := converter.NewRemotePayloadCodec(converter.RemotePayloadCodecOptions{
		Endpoint: strings.ReplaceAll(f.srv.URL+"/{namespace}", "{namespace}", ns),
		ModifyRequest: func(r *http.Request) error {
			r.Header.Set("Authorization", "Bearer writer-token")
			return nil
		},
	})
	in := []*commonpb.Payload{{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte(`"SDK"`)}}
	enc, err := remote.Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	if string(enc[0].Metadata["encoding"]) != "binary/encrypted" {
		t.Fatalf("not encrypted: %v", enc[0].Metadata)
	}
	dec, err := remote.Decode(enc)
	if err != nil || string(dec[0].Data) != `"SDK"` {
		t.Fatalf("%v %v", dec, err)
	}
	// What temporal CLI 1.5 builds for --codec-endpoint 'URL/{namespace}' without an explicit --namespace: its
	// namespace is "" (its gRPC calls then use "default"), substituted into the URL and sent as X-Namespace.
	cliNS := ""
	cli := converter.NewRemotePayloadCodec(converter.RemotePayloadCodecOptions{
		Endpoint: strings.ReplaceAll(f.srv.URL+"/{namespace}", "{namespace}", cliNS),
		ModifyRequest: func(r *http.Request) error {
			r.Header.Set("X-Namespace", cliNS)
			r.Header.Set("Authorization", "Bearer auditor-token")
			return nil
		},
	})
	sealed := f.seal("default", "MARKER-CLI")
	if dec, err := cli.Decode(sealed); err != nil || string(dec[0].Data) != `"MARKER-CLI"` {
		t.Fatalf("the CLI's request without a namespace: %v %v", dec, err)
	}
	dc := converter.NewRemoteDataConverter(converter.GetDefaultDataConverter(), converter.RemoteDataConverterOptions{
		Endpoint: f.srv.URL + "/" + ns,
		ModifyRequest: func(r *http.Request) error {
			r.Header.Set("Authorization", "Bearer nobody-token")
			return nil
		},
	})
	if _, err := dc.ToPayload("x"); err == nil || !strings.Contains(err.Error(), "Forbidden") {
		t.Fatalf("refused identity: %v", err)
	}
}

func TestNewValidates(t *testing.T) {
	c, _ := codec.New(codectest.NewKeyring())
	al := brokenAudit{}
	for i, cfg := range []Config{
		{Authenticator: Chain{}, Authorizer: policy.DevAccess(), Audit: al},
		{Codec: c, Authorizer: policy.DevAccess(), Audit: al},
		{Codec: c, Authenticator: Chain{}, Audit: al},
		{Codec: c, Authenticator: Chain{}, Authorizer: policy.DevAccess()},
		{Codec: c, Authenticator: Chain{}, Authorizer: policy.DevAccess(), Audit: al, AllowedOrigins: []string{"localhost:8233"}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("config %d accepted", i)
		}
	}
}

func TestServerTimeouts(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.ReadTimeout = 7e9 })
	s := f.h.Server()
	if s.ReadTimeout != 7e9 || s.ReadHeaderTimeout == 0 || s.WriteTimeout <= s.ReadTimeout || s.MaxHeaderBytes == 0 {
		t.Fatalf("%+v", s)
	}
}

func TestDevConfig(t *testing.T) {
	f := newFixture(t)
	cfg, err := DevConfig(f.codec, f.audit, "dev-token", uiOrigin)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	good := body(t, f.seal("anything", "DEV")...)
	for _, tc := range []struct {
		auth   string
		status int
	}{{"", 200}, {"Bearer dev-token", 200}, {"Bearer wrong", 401}} {
		r := httptest.NewRequest(http.MethodPost, "/anything/decode", strings.NewReader(good))
		if tc.auth != "" {
			r.Header.Set("Authorization", tc.auth)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tc.status {
			t.Errorf("%q: %d %s", tc.auth, w.Code, w.Body)
		}
	}
}

// slowKeyring delays every key lookup past the handler's deadline.
type slowKeyring struct{ *codectest.Keyring }

func (s *slowKeyring) OpeningKey(ctx context.Context, ns, id string) (codec.Key, error) {
	<-ctx.Done()
	return codec.Key{}, ctx.Err()
}

func TestHandlerTimeout(t *testing.T) {
	f := newFixture(t)
	good := body(t, f.seal("default", "SLOW")...)
	slow, _ := codec.New(&slowKeyring{Keyring: codectest.NewKeyring()})
	f2 := newFixture(t, func(c *Config) { c.Codec = slow; c.HandlerTimeout = 50 * time.Millisecond })
	resp, b := f2.do(req{path: "/default/decode", body: good, headers: auth("auditor-token")})
	if resp.StatusCode != 503 || !strings.Contains(b, "did not finish") {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	recs := readAudit(t, f2.auditLog)
	if r := recs[len(recs)-1]; r.Decision != policy.AuditAllow || r.Failed != 1 || !strings.Contains(r.Reason, "timed out") {
		t.Fatalf("%+v", r)
	}
}

// targetRecorder is the fixture's codec, remembering the Target of the last encode.
type targetRecorder struct {
	Codec
	last codec.Target
}

func (r *targetRecorder) EncodeFor(ctx context.Context, t codec.Target, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
	r.last = t
	return r.Codec.EncodeFor(ctx, t, ps)
}

type scopeFunc func(string) (string, error)

func (f scopeFunc) SealScope(ns string) (string, error) { return f(ns) }

// TestEncodeScopes: Config.Scopes picks the scope of every encode, and a namespace it has no scope for fails the encode
// (503) instead of being sealed under the default scope.
func TestEncodeScopes(t *testing.T) {
	in := &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte(`"x"`)}
	var rec *targetRecorder
	scopes := scopeFunc(func(ns string) (string, error) {
		if ns == "prod-7" {
			return "prod-7", nil
		}
		return "", fmt.Errorf("no scope: %w", codec.ErrInvalidScope)
	})
	f := newFixture(t, func(c *Config) { rec = &targetRecorder{Codec: c.Codec}; c.Codec = rec; c.Scopes = scopes })
	resp, b := f.do(req{path: "/prod-7/encode", body: body(t, in), headers: auth("writer-token")})
	if resp.StatusCode != 200 || rec.last != (codec.Target{Namespace: "prod-7", Scope: "prod-7"}) {
		t.Fatalf("%d %s, target %+v", resp.StatusCode, b, rec.last)
	}
	resp, b = f.do(req{path: "/prod-8/encode", body: body(t, in), headers: auth("writer-token")})
	if resp.StatusCode != 503 || !strings.Contains(b, "key scope") {
		t.Fatalf("encode without a scope: %d %s", resp.StatusCode, b)
	}

	plain := newFixture(t, func(c *Config) { rec = &targetRecorder{Codec: c.Codec}; c.Codec = rec })
	if resp, b := plain.do(req{path: "/prod-7/encode", body: body(t, in), headers: auth("writer-token")}); resp.StatusCode != 200 || rec.last != (codec.Target{Namespace: "prod-7"}) {
		t.Fatalf("without Scopes: %d %s, target %+v", resp.StatusCode, b, rec.last)
	}
}

// TestDecodeBombRequest: the compressed payloads of one request share one decoded-size budget across its parallel
// chunks, so a request of many small zstd bombs gets 413 (naming the cap, audited with every payload failed) instead
// of expanding to many times the codec's cap; a request within the cap decodes.
func TestDecodeBombRequest(t *testing.T) {
	const limit = 3 << 20
	f := newFixture(t, func(c *Config) { c.MaxDecodedBytes = limit })
	zc, err := codec.New(f.keys, codec.WithCompression(0))
	if err != nil {
		t.Fatal(err)
	}
	bomb, err := zc.Encode(context.Background(), "default", []*commonpb.Payload{
		{Metadata: map[string][]byte{"encoding": []byte("binary/plain")}, Data: make([]byte, 1<<20)}})
	if err != nil {
		t.Fatal(err)
	}
	sealed := make([]*commonpb.Payload, 3*maxDecodeChunk) // three chunks, decoded in parallel
	for i := range sealed {
		sealed[i] = bomb[0]
	}
	bombs := sealed

	resp, b := f.do(req{path: "/default/decode", body: body(t, sealed...), headers: auth("auditor-token")})
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(b, fmt.Sprint(limit)) || strings.Contains(b, "\x00") {
		t.Fatalf("bomb request: %d %q, want 413 naming the limit of %d bytes", resp.StatusCode, b, limit)
	}
	t.Logf("413: %s", b)
	recs := readAudit(t, f.auditLog)
	last := recs[len(recs)-1]
	if last.Decision != policy.AuditAllow || last.Failed != len(bombs) || !strings.Contains(last.Reason, "over the limit") {
		t.Errorf("audit record %+v, want allow with %d failed and the limit as reason", last, len(bombs))
	}

	resp, b = f.do(req{path: "/default/decode", body: body(t, sealed[:2]...), headers: auth("auditor-token")})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("two bombs within the limit: %d %s", resp.StatusCode, b)
	}
	for i, p := range decodeResponse(t, b) {
		if len(p.Data) != 1<<20 || p.Metadata[DecodeErrorKey] != nil {
			t.Errorf("payload %d not decoded: %d bytes, error %q", i, len(p.Data), p.Metadata[DecodeErrorKey])
		}
	}

	// The cap needs a codec that can charge a shared budget.
	if _, err := New(Config{Codec: funcCodec(nil), Authenticator: Anonymous{Identity: policy.Identity{Subject: "x"}}, Authorizer: policy.DevAccess(),
		Audit: &memAudit{}, MaxDecodedBytes: limit}); err == nil {
		t.Error("MaxDecodedBytes accepted with a codec that is no BudgetCodec")
	}
}

// TestBodyInPieces sends bodies with a Content-Length that arrive a few bytes at a time, as the fast path scans them
// while they arrive: one of several parser chunks that decodes, one the fast path leaves to protojson (an escape in
// its last payload, so most of it was scanned first), and one that ends before its Content-Length (a read error,
// nothing audited).
func TestBodyInPieces(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	markers := make([]string, 3*fastChunk+5)
	for i := range markers {
		markers[i] = fmt.Sprintf("piece-%d", i)
	}
	whole := body(t, f.seal("default", markers...)...)
	escaped := strings.Replace(whole, `"data":`, `"d\u0061ta":`, strings.Count(whole, `"data":`))
	escaped = strings.Replace(escaped, `"d\u0061ta":`, `"data":`, strings.Count(escaped, `"d\u0061ta":`)-1)
	post := func(b string, contentLength int) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/default/decode", iotest.HalfReader(strings.NewReader(b)))
		r.ContentLength = int64(contentLength)
		r.Header.Set("Authorization", "Bearer auditor-token")
		w := httptest.NewRecorder()
		f.h.ServeHTTP(w, r)
		return w
	}
	for _, b := range []string{whole, escaped} {
		w := post(b, len(b))
		if w.Code != http.StatusOK {
			t.Fatalf("%d %.300s", w.Code, w.Body)
		}
		out := decodeResponse(t, w.Body.String())
		for i, p := range out {
			if want := `"` + markers[i] + `"`; string(p.Data) != want {
				t.Fatalf("payload %d = %q, want %q", i, p.Data, want)
			}
		}
	}
	before := len(readAudit(t, f.auditLog))
	if w := post(whole, len(whole)+1); w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "unexpected EOF") {
		t.Fatalf("short body: %d %.300s", w.Code, w.Body)
	}
	if after := len(readAudit(t, f.auditLog)); after != before {
		t.Fatalf("short body audited: %d records, had %d", after, before)
	}
}
