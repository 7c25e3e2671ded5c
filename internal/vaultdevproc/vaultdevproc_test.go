package vaultdevproc

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strings"
	"testing"
)

// call makes a Vault API request and decodes the JSON answer.
func call(t *testing.T, p *Proc, method, path string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, p.Addr()+"/v1/"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Vault-Token", p.Token())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out := map[string]any{}
	if b, _ := io.ReadAll(resp.Body); len(b) > 0 {
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("%s %s: decode %q: %v", method, path, b, err)
		}
	}
	return resp.StatusCode, out
}

func TestStartHealthAndTransit(t *testing.T) {
	p := Start(t, Options{})
	code, health := call(t, p, http.MethodGet, "sys/health", nil)
	if code != http.StatusOK || health["sealed"] != false || health["version"] != "1.14.1" {
		t.Fatalf("health = %d %v", code, health)
	}
	if code, _ := call(t, p, http.MethodPost, p.TransitMount()+"/keys/k", nil); code != http.StatusOK && code != http.StatusNoContent {
		t.Fatalf("create transit key: HTTP %d", code)
	}
	code, enc := call(t, p, http.MethodPost, p.TransitMount()+"/encrypt/k", map[string]string{"plaintext": "aGVsbG8="})
	if code != http.StatusOK {
		t.Fatalf("encrypt: HTTP %d %v", code, enc)
	}
}

func TestRestartKeepsAddressTokenAndStoredKeys(t *testing.T) {
	tests := []struct {
		name       string
		storageDir bool
		keyKept    bool
	}{
		{"file storage", true, true},
		{"in memory", false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := Options{TransitMount: "kek"}
			if tc.storageDir {
				opts.StorageDir = t.TempDir()
			}
			p := Start(t, opts)
			addr := p.Addr()
			if code, _ := call(t, p, http.MethodPost, "kek/keys/k", nil); code/100 != 2 {
				t.Fatalf("create key: HTTP %d", code)
			}
			if err := p.Stop(); err != nil {
				t.Fatalf("Stop: %v", err)
			}
			if p.Running() {
				t.Fatal("Running after Stop")
			}
			if _, err := http.Get(addr + "/v1/sys/health"); err == nil {
				t.Fatal("Vault answers after Stop")
			}
			if err := p.Restart(); err != nil {
				t.Fatalf("Restart: %v", err)
			}
			if p.Addr() != addr {
				t.Fatalf("address changed across restart: %s → %s", addr, p.Addr())
			}
			code, _ := call(t, p, http.MethodGet, "kek/keys/k", nil)
			if got := code == http.StatusOK; got != tc.keyKept {
				t.Fatalf("read key after restart: HTTP %d, want kept=%v", code, tc.keyKept)
			}
			if code, _ := call(t, p, http.MethodGet, "auth/token/lookup-self", nil); code != http.StatusOK {
				t.Fatalf("token after restart: HTTP %d", code)
			}
		})
	}
}

func TestTLS(t *testing.T) {
	p := Start(t, Options{TLSDir: t.TempDir()})
	pem, err := os.ReadFile(p.CACert())
	if err != nil {
		t.Fatalf("read CA: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("CA file holds no certificate")
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.Get(p.Addr() + "/v1/sys/health")
	if err != nil {
		t.Fatalf("GET sys/health over TLS: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(p.Addr(), "https://") {
		t.Fatalf("health over TLS at %s: HTTP %d", p.Addr(), resp.StatusCode)
	}
}

func TestLaunchReportsEarlyExit(t *testing.T) {
	bin := Build(t)
	_, err := Launch(t.Context(), bin, Options{Addr: "0.0.0.0:0"})
	if !errors.Is(err, ErrStopped) {
		t.Fatalf("Launch on a non-loopback address = %v, want ErrStopped", err)
	}
}

// The dev stack starts Vault the same way, without a testing.T.
func ExampleLaunch() {
	ctx := context.Background()
	bin, err := BuildBinary(ctx, "")
	if err != nil {
		log.Fatal(err)
	}
	p, err := Launch(ctx, bin, Options{RootToken: "dev-root", StorageDir: "/tmp/blindfold-vault"})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Stop()
	fmt.Println("VAULT_ADDR=" + p.Addr())
	fmt.Println("VAULT_TOKEN=" + p.Token())
}
