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

	"github.com/spf13/pflag"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/codec/codectest"
)

func TestCodecEndpointFlags(t *testing.T) {
	dir := t.TempDir()
	polPath := filepath.Join(dir, "policy.yaml")
	tokPath := filepath.Join(dir, "tokens.yaml")
	os.WriteFile(polPath, []byte(decodePolicy), 0o600)
	os.WriteFile(tokPath, []byte("- {token: t-alice, subject: alice, groups: [auditors]}\n- {token: t-bob, subject: bob}\n"), 0o600)
	c, _ := codec.New(codectest.NewKeyring())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	var f codecEndpointFlags
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	f.register(fs)
	if err := fs.Parse([]string{"--codec-listen", "127.0.0.1:0", "--codec-policy", polPath, "--codec-audit-log", filepath.Join(dir, "a.jsonl"),
		"--codec-static-tokens", tokPath, "--codec-ui-origin", "http://localhost:8233"}); err != nil {
		t.Fatal(err)
	}
	e, err := f.start(context.Background(), c, log)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Stop(context.Background())
	for tok, want := range map[string]int{"t-alice": 200, "t-bob": 403, "nope": 401} {
		req, _ := http.NewRequest(http.MethodPost, e.URL+"/default/decode", strings.NewReader(`{"payloads":[]}`))
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
		if e, err := g.start(context.Background(), c, log); err == nil {
			e.Stop(context.Background())
			t.Errorf("%v accepted", args)
		}
	}

	dev, err := startDevCodecEndpoint(c, "127.0.0.1:0", filepath.Join(dir, "dev.jsonl"), log)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(dev.URL+"/decode", "application/json", strings.NewReader(`{"payloads":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 { // no namespace
		t.Fatalf("dev endpoint: %d", resp.StatusCode)
	}
	dev.Stop(context.Background())
	if _, err := startDevCodecEndpoint(c, "0.0.0.0:0", filepath.Join(dir, "dev2.jsonl"), log); err == nil {
		t.Fatal("dev endpoint on a public address accepted")
	}
}
