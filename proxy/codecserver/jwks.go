package codecserver

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// maxJWKSBytes bounds a key set response: real ones are a few KiB.
const maxJWKSBytes = 1 << 20

// jwksKeyFetchTimeout bounds one key fetch when the caller gave no client (go-oidc's key fetches carry no deadline).
const jwksKeyFetchTimeout = 30 * time.Second

// jwksThrottle is the transport of the OIDC key set's fetches. go-oidc fetches the issuer's JWKS again whenever a
// token's signature does not verify against the keys it holds, forged tokens included; this lets at most one request
// through per interval and answers the others from the last response, so a flood of forged tokens costs the issuer
// one fetch per interval and a key rotation is still picked up within it.
type jwksThrottle struct {
	base     http.RoundTripper
	interval time.Duration
	now      func() time.Time

	mu   sync.Mutex
	last time.Time // of the last request sent; zero before the first
	resp *jwksResponse
	err  error // of the last request, if it failed
}

// jwksResponse is what is kept of the last response to replay it.
type jwksResponse struct {
	status     int
	statusText string
	header     http.Header
	body       []byte
}

// newJWKSClient is the client the key set fetches with: base's settings (http.DefaultClient's without base, and a
// timeout), its transport behind the refetch limit unless interval is negative.
func newJWKSClient(base *http.Client, interval time.Duration, now func() time.Time) *http.Client {
	c := &http.Client{Timeout: jwksKeyFetchTimeout}
	if base != nil {
		*c = *base
	}
	if interval < 0 {
		return c
	}
	rt := c.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	c.Transport = &jwksThrottle{base: rt, interval: interval, now: now}
	return c
}

// RoundTrip implements http.RoundTripper. Concurrent fetches wait for the one in flight and share its response.
func (t *jwksThrottle) RoundTrip(req *http.Request) (*http.Response, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if now := t.now(); t.last.IsZero() || now.Sub(t.last) >= t.interval {
		t.last = now
		t.resp, t.err = fetchJWKS(t.base, req)
	}
	if t.err != nil {
		return nil, t.err
	}
	return &http.Response{
		Status: t.resp.statusText, StatusCode: t.resp.status, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: t.resp.header.Clone(), Body: io.NopCloser(bytes.NewReader(t.resp.body)),
		ContentLength: int64(len(t.resp.body)), Request: req,
	}, nil
}

func fetchJWKS(rt http.RoundTripper, req *http.Request) (*jwksResponse, error) {
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read key set from %s: %w", req.URL.Redacted(), err)
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("key set from %s exceeds %d bytes", req.URL.Redacted(), maxJWKSBytes)
	}
	return &jwksResponse{status: resp.StatusCode, statusText: resp.Status, header: resp.Header.Clone(), body: body}, nil
}
