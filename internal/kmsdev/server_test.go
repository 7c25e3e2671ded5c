package kmsdev

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

func call(t *testing.T, endpoint, op string, body any) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, endpoint+"/", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", "TrentService."+op)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out
}

// TestServer starts local-kms on loopback, creates a key, and checks that a second server on the same directory (after
// Close) finds it. Non-loopback addresses and a second server in one process are refused.
func TestServer(t *testing.T) {
	if _, err := Start(Config{Addr: "0.0.0.0:0", DataDir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "not loopback") {
		t.Fatalf("Start on 0.0.0.0: %v; want a refusal", err)
	}
	dir := t.TempDir()
	s, err := Start(Config{Addr: "127.0.0.1:0", DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Start(Config{Addr: "127.0.0.1:0", DataDir: t.TempDir()}); err == nil {
		t.Error("a second server in one process started")
	}
	code, out := call(t, s.Info().Endpoint, "CreateKey", map[string]any{})
	md, _ := out["KeyMetadata"].(map[string]any)
	arn, _ := md["Arn"].(string)
	if code != 200 || !strings.HasPrefix(arn, "arn:aws:kms:"+DefaultRegion+":"+DefaultAccountID+":key/") {
		t.Fatalf("CreateKey: %d %v", code, out)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The database is closed: a new process (here: a reopened database) finds the key.
	db, err := openDB(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if k, err := db.LoadKey(arn); err != nil || k == nil {
		t.Fatalf("key after reopening the database: %v, %v", k, err)
	}
}
