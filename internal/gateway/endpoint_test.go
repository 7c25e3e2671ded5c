package gateway

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/codec/codectest"
)

// TestDevCodecEndpoint checks the dev endpoint: anonymous callers decode, bad requests are 400, and it refuses any
// address but loopback because it lets everyone decode.
func TestDevCodecEndpoint(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c, err := codec.New(codectest.NewKeyring())
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	dev, err := startCodecEndpoint(context.Background(), CodecEndpointConfig{Listen: "127.0.0.1:0", Dev: true, AuditLog: filepath.Join(dir, "dev.jsonl")}, c, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(dev.url+"/decode", "application/json", strings.NewReader(`{"payloads":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 { // no namespace
		t.Fatalf("dev endpoint: %d", resp.StatusCode)
	}
	if err := dev.stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if e, err := startCodecEndpoint(context.Background(), CodecEndpointConfig{Listen: "0.0.0.0:0", Dev: true, AuditLog: filepath.Join(dir, "dev2.jsonl")}, c, nil, log); err == nil {
		e.stop(context.Background())
		t.Fatal("dev endpoint on a public address accepted")
	}
}

func TestAuditOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  CodecEndpointConfig
		want time.Duration
	}{
		{"production default is strict", CodecEndpointConfig{}, 0},
		{"dev default has a window", CodecEndpointConfig{Dev: true}, DevAuditSyncWindow},
		{"dev can be strict", CodecEndpointConfig{Dev: true, AuditSyncWindow: -1}, 0},
		{"production opts in", CodecEndpointConfig{AuditSyncWindow: 10 * time.Millisecond}, 10 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.cfg.auditOptions().SyncWindow; got != tt.want {
				t.Fatalf("window %s, want %s", got, tt.want)
			}
		})
	}
}
