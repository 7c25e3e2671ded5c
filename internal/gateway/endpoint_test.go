package gateway

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/codec/codectest"
	"github.com/blindfold-dev/blindfold/internal/testenv"
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
	dev, err := startCodecEndpoint(context.Background(), CodecEndpointConfig{Listen: "127.0.0.1:0", Dev: true, AuditLog: filepath.Join(dir, "dev.jsonl")}, c, nil, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(dev.url+"/decode", "application/json", strings.NewReader(`{"payloads":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 { // no token on loopback; no namespace is "default"
		t.Fatalf("dev endpoint: %d", resp.StatusCode)
	}
	if err := dev.stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if e, err := startCodecEndpoint(context.Background(), CodecEndpointConfig{Listen: "0.0.0.0:0", Dev: true, AuditLog: filepath.Join(dir, "dev2.jsonl")}, c, nil, nil, log); err == nil {
		e.stop(context.Background())
		t.Fatal("dev endpoint on a public address accepted")
	}
}

// TestDecodedLimits: the decoded-size limits reach the proxy's codec and the codec endpoint, which answers 413 for a
// request whose compressed payloads expand past its limit.
func TestDecodedLimits(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	g, err := Start(context.Background(), Config{
		Keys:                       localKeys(t),
		MaxDecodedBytesPerResponse: 4 << 20,
		CodecEndpoint: &CodecEndpointConfig{Listen: "127.0.0.1:0", Dev: true, AuditLog: filepath.Join(dir, "audit.jsonl"),
			MaxDecodedBytesPerRequest: 2 << 20},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Stop(context.Background())
	if got := g.Codec().MaxDecodedTotal(); got != 4<<20 {
		t.Errorf("codec MaxDecodedTotal = %d, want %d", got, 4<<20)
	}
	zc, err := codec.New(g.Keys().Manager, codec.WithCompression(0))
	if err != nil {
		t.Fatal(err)
	}
	bomb := &commonpb.Payload{Data: make([]byte, 1<<20)}
	sealed, err := zc.Encode(context.Background(), "default", []*commonpb.Payload{bomb, bomb, bomb})
	if err != nil {
		t.Fatal(err)
	}
	body, err := protojson.Marshal(&commonpb.Payloads{Payloads: sealed})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(g.CodecURL()+"/default/decode", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(msg), "2097152") {
		t.Errorf("3 MiB of bombs under a 2 MiB request limit: %d %s", resp.StatusCode, msg)
	}

	if _, err := Start(context.Background(), Config{Keys: localKeys(t), MaxDecodedBytesPerResponse: -1,
		CodecEndpoint: &CodecEndpointConfig{Listen: "127.0.0.1:0", Dev: true, AuditLog: filepath.Join(dir, "a2.jsonl")}}); err == nil {
		t.Error("negative MaxDecodedBytesPerResponse accepted")
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

// TestCodecEndpointAccessReload: the production endpoint reads its access rules from the policy in force, so a
// policy change that revokes an auditor refuses her next request, without a restart.
func TestCodecEndpointAccessReload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		testenv.WriteFileAtomic(t, p, content)
		return p
	}
	rule := func(subjects string) string {
		return "version: 1\naccess:\n  rules:\n    - {name: auditors, subjects: [" + subjects + "], namespaces: [default], operations: [decode]}\n"
	}
	policyAt := write("policy.yaml", rule("erin, frank"))
	tokens := write("tokens.yaml", "- {token: erin-token-0123456789abcdef, subject: erin}\n- {token: frank-token-0123456789abcdef, subject: frank}\n")
	c, err := codec.New(codectest.NewKeyring())
	if err != nil {
		t.Fatal(err)
	}
	e, err := startCodecEndpoint(context.Background(), CodecEndpointConfig{Listen: "127.0.0.1:0", PolicyFile: policyAt,
		StaticTokensFile: tokens, AuditLog: filepath.Join(dir, "audit.jsonl")}, c, nil, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer e.stop(context.Background())
	decode := func(token string) int {
		req, _ := http.NewRequest(http.MethodPost, e.url+"/default/decode", strings.NewReader(`{"payloads":[]}`))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := decode("erin-token-0123456789abcdef"); got != http.StatusOK {
		t.Fatalf("erin before the reload: %d", got)
	}
	write("policy.yaml", rule("frank"))
	testenv.WaitFor(t, 15*time.Second, "erin refused after the policy revoked her", func() bool {
		return decode("erin-token-0123456789abcdef") == http.StatusForbidden
	})
	if got := decode("frank-token-0123456789abcdef"); got != http.StatusOK {
		t.Errorf("frank after the reload: %d", got)
	}
}

// TestCodecEndpointRefusalsCounted: the codec endpoint's refusals appear in the gateway's metrics, by status.
func TestCodecEndpointRefusalsCounted(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	g, err := Start(context.Background(), Config{
		Keys: localKeys(t), MetricsListen: "127.0.0.1:0",
		Proxy:         ProxyConfig{Listen: "127.0.0.1:0", Upstream: "127.0.0.1:1"},
		CodecEndpoint: &CodecEndpointConfig{Listen: "127.0.0.1:0", Dev: true, AuditLog: filepath.Join(dir, "audit.jsonl")},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Stop(context.Background())
	resp, err := http.Post(g.CodecURL()+"/default/decode", "application/json", strings.NewReader("not json"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("malformed request: %d", resp.StatusCode)
	}
	mresp, err := http.Get(g.MetricsURL())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	if !strings.Contains(string(body), `blindfold_codec_endpoint_refusals_total{status="400"} 1`) {
		t.Errorf("metrics do not count the refusal:\n%s", body)
	}
}
