package sdkplugin_test

import (
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/policy"
	"github.com/blindfold-dev/blindfold/proxy/codecserver"
	"github.com/blindfold-dev/blindfold/sdkplugin"
)

const workerToken = "sdk-worker-token"

// startCodecEndpoint serves Blindfold's codec endpoint over c on loopback, allowing the "workers" group (the
// workerToken bearer) to encode and decode every namespace.
func startCodecEndpoint(t *testing.T, c *codec.Codec) string {
	t.Helper()
	pol, err := policy.Parse("policy.yaml", []byte(`version: 1
access:
  rules:
    - name: sdk-workers
      groups: [workers]
      namespaces: ["*"]
      operations: [encode, decode]
`))
	if err != nil {
		t.Fatal(err)
	}
	audit, err := policy.OpenAudit(filepath.Join(t.TempDir(), "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = audit.Close() })
	tokens, err := codecserver.NewStaticTokens(map[string]policy.Identity{
		workerToken: {Subject: "worker", Groups: []string{"workers"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	h, err := codecserver.New(codecserver.Config{
		Codec:         c,
		Authenticator: tokens,
		Authorizer:    pol.Access,
		Audit:         audit,
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

func newRemotePlugin(url string, opts ...sdkplugin.Option) (*sdkplugin.Plugin, error) {
	return sdkplugin.NewRemote(url, append([]sdkplugin.Option{sdkplugin.WithAuthHeader("Bearer " + workerToken)}, opts...)...)
}

// TestRemoteCodecAgainstEndpoint runs the remote plugin against Blindfold's own codec endpoint.
func TestRemoteCodecAgainstEndpoint(t *testing.T) {
	kr := mustKeyring(t)
	c, err := codec.New(kr)
	if err != nil {
		t.Fatal(err)
	}
	url := startCodecEndpoint(t, c)
	remote, err := newRemotePlugin(url)
	if err != nil {
		t.Fatal(err)
	}
	local := newPlugin(t, kr)

	dc := remote.DataConverter("default")
	pl, err := dc.ToPayload(order{ID: marker})
	if err != nil {
		t.Fatalf("encode through the endpoint: %v", err)
	}
	requireSealed(t, pl)
	var o order
	if err := dc.FromPayload(pl, &o); err != nil || o.ID != marker {
		t.Fatalf("decode through the endpoint = %+v, %v", o, err)
	}
	if err := local.DataConverter("default").FromPayload(pl, &o); err != nil {
		t.Fatalf("local keys cannot open what the endpoint sealed: %v", err)
	}
	localSealed, err := local.DataConverter("default").ToPayload(marker)
	if err != nil {
		t.Fatal(err)
	}
	var s string
	if err := dc.FromPayload(localSealed, &s); err != nil || s != marker {
		t.Fatalf("endpoint cannot open what local keys sealed: %q, %v", s, err)
	}

	// Failure text goes through the endpoint too.
	fc := remote.FailureConverter("default")
	f := fc.ErrorToFailure(errors.New("declined " + marker))
	requireSealed(t, f.GetEncodedAttributes())
	if msg := fc.FailureToError(f).Error(); !strings.Contains(msg, marker) {
		t.Fatalf("failure through the endpoint = %q", msg)
	}

	// A remote plugin for namespace A cannot open namespace B's payloads: the endpoint answers with the payload
	// still sealed, which the plugin turns into an error naming the cause.
	fromB, err := local.DataConverter("tenant-b").ToPayload(marker)
	if err != nil {
		t.Fatal(err)
	}
	err = remote.DataConverter("tenant-a").FromPayload(fromB, &s)
	if err == nil || !strings.Contains(err.Error(), codec.ErrWrongNamespace.Error()) && !strings.Contains(err.Error(), codec.ErrUnknownKey.Error()) {
		t.Fatalf("remote decode across namespaces = %q, %v; want the wrong-namespace error", s, err)
	}

	// Without the token, the endpoint refuses and nothing is sent in plaintext.
	anon, err := sdkplugin.NewRemote(url)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := anon.DataConverter("default").ToPayload(marker); err == nil || !strings.Contains(err.Error(), "Unauthorized") {
		t.Fatalf("encode without a token = %v, want Unauthorized", err)
	}
}
