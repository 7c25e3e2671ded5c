package codecserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/codec/codectest"
	"github.com/blindfold-dev/blindfold/policy"
)

// TestCLIPattern replays what `temporal workflow show --codec-endpoint` does (temporalio/cli#1193): one payload per
// POST, serially, over one keep-alive connection, for a 2,000-payload history of 1 KiB payloads. Against the default
// limits, static token authentication, a policy file and a real audit log file, every payload must come back decoded
// with no 429, and the log must hold one intact record per request.
func TestCLIPattern(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		window time.Duration
	}{
		{"strict audit", 0},
		{"audit sync window", 5 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			const n = 2000
			c, err := codec.New(codectest.NewKeyring())
			if err != nil {
				t.Fatal(err)
			}
			plain := make([]*commonpb.Payload, n)
			for i := range plain {
				data := make([]byte, 1024)
				rand.Read(data)
				plain[i] = &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("binary/plain")}, Data: data}
			}
			sealed, err := c.Encode(context.Background(), "default", plain)
			if err != nil {
				t.Fatal(err)
			}
			pol, err := policy.Parse("test.yaml", []byte(testPolicy))
			if err != nil {
				t.Fatal(err)
			}
			auditPath := filepath.Join(t.TempDir(), "audit.jsonl")
			al, err := policy.OpenAuditWith(auditPath, policy.AuditOptions{SyncWindow: tt.window})
			if err != nil {
				t.Fatal(err)
			}
			static, err := NewStaticTokens(map[string]policy.Identity{"auditor-token": {Subject: "alice", Groups: []string{"auditors"}}})
			if err != nil {
				t.Fatal(err)
			}
			h, err := New(Config{Codec: c, Authenticator: static, Authorizer: pol.Access, Audit: al,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(h)
			defer srv.Close()
			client := srv.Client()
			start := time.Now()
			for i, p := range sealed {
				b, err := protojson.Marshal(&commonpb.Payloads{Payloads: []*commonpb.Payload{p}})
				if err != nil {
					t.Fatal(err)
				}
				out, err := postDecode(client, srv.URL+"/default/decode", "auditor-token", b)
				if err != nil {
					t.Fatalf("payload %d: %v", i, err)
				}
				if len(out) != 1 || !bytes.Equal(out[0].GetData(), plain[i].Data) || out[0].GetMetadata()[DecodeErrorKey] != nil {
					t.Fatalf("payload %d not decoded", i)
				}
			}
			t.Logf("%d one-payload requests in %s (%s each)", n, time.Since(start).Round(time.Millisecond), (time.Since(start) / n).Round(time.Microsecond))
			if err := al.Close(); err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(auditPath)
			if err != nil {
				t.Fatal(err)
			}
			sum, err := policy.VerifyAudit(bytes.NewReader(data), policy.VerifyOptions{})
			if err != nil || sum.Records != n {
				t.Fatalf("audit log: %+v %v, want %d records", sum, err, n)
			}
		})
	}
}

// postDecode is the CLI's remote codec call: the response body is drained so the connection is reused.
func postDecode(client *http.Client, url, token string, body []byte) ([]*commonpb.Payload, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d: %.200s", resp.StatusCode, rb)
	}
	var out commonpb.Payloads
	if err := protojson.Unmarshal(rb, &out); err != nil {
		return nil, fmt.Errorf("decode response: %w", err)
	}
	return out.Payloads, nil
}
