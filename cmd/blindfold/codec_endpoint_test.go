package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/blindfold-dev/blindfold/internal/gateway"
	"github.com/blindfold-dev/blindfold/proxy/codecserver"
)

func TestCodecEndpointFlags(t *testing.T) {
	dir := t.TempDir()
	polPath := filepath.Join(dir, "policy.yaml")
	tokPath := filepath.Join(dir, "tokens.yaml")
	os.WriteFile(polPath, []byte(decodePolicy), 0o600)
	os.WriteFile(tokPath, []byte("- {token: t-alice, subject: alice, groups: [auditors]}\n- {token: t-bob, subject: bob}\n"), 0o600)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	// The endpoint is started the one way it is started in production: by the gateway, from the flags' config. The
	// proxy's upstream is never dialled (no call goes through it).
	start := func(f *codecEndpointFlags) (*gateway.Gateway, error) {
		ec := f.config()
		return gateway.Start(context.Background(), gateway.Config{
			Keys:          gateway.KeysConfig{Dir: filepath.Join(dir, "keys"), CreateMasterKey: true},
			Proxy:         gateway.ProxyConfig{Listen: "127.0.0.1:0", Upstream: "127.0.0.1:1"},
			CodecEndpoint: &ec,
			Logger:        log,
		})
	}

	var f codecEndpointFlags
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	f.register(fs)
	if err := fs.Parse([]string{"--codec-listen", "127.0.0.1:0", "--codec-policy", polPath, "--codec-audit-log", filepath.Join(dir, "a.jsonl"),
		"--codec-static-tokens", tokPath, "--codec-ui-origin", "http://localhost:8233", "--codec-audit-sync-window", "5ms"}); err != nil {
		t.Fatal(err)
	}
	if c := f.config(); c.AuditSyncWindow != 5*time.Millisecond || c.RateLimit != codecserver.DefaultRateLimit || c.RateBurst != codecserver.DefaultRateBurst {
		t.Fatalf("config from flags: sync window %s, rate %v burst %d", c.AuditSyncWindow, c.RateLimit, c.RateBurst)
	}
	e, err := start(&f)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Stop(context.Background())
	for tok, want := range map[string]int{"t-alice": 200, "t-bob": 403, "nope": 401} {
		req, _ := http.NewRequest(http.MethodPost, e.CodecURL()+"/default/decode", strings.NewReader(`{"payloads":[]}`))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: %d, want %d", tok, resp.StatusCode, want)
		}
	}

	// Misconfigurations are refused before anything listens.
	for _, args := range [][]string{
		{"--codec-listen", "127.0.0.1:0"},
		{"--codec-listen", "127.0.0.1:0", "--codec-policy", polPath, "--codec-audit-log", filepath.Join(dir, "b.jsonl")},
		{"--codec-listen", "127.0.0.1:0", "--codec-policy", polPath, "--codec-audit-log", filepath.Join(dir, "c.jsonl"), "--codec-static-tokens", tokPath, "--codec-tls-cert", "x"},
	} {
		var g codecEndpointFlags
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		g.register(fs)
		fs.Parse(args)
		if e, err := start(&g); err == nil {
			e.Stop(context.Background())
			t.Errorf("%v accepted", args)
		}
	}
}
