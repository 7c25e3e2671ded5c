package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

func TestPolicyCheck(t *testing.T) {
	run := func(args ...string) (string, string, error) {
		cmd := newPolicyCmd()
		var out, errb bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&errb)
		cmd.SetArgs(args)
		cmd.SilenceUsage, cmd.SilenceErrors = true, true
		err := cmd.ExecuteContext(context.Background())
		return out.String(), errb.String(), err
	}
	out, _, err := run("check", "../../deploy/policy.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "OK ../../deploy/policy.example.yaml\n") || !strings.Contains(out, `"saas" (line`) || !strings.Contains(out, "access: 3 rules") {
		t.Errorf("summary:\n%s", out)
	}

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("version: 1\nnamespaces:\n  a: {encrypt: {memo: false}, scopes: x}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, stderr, err := run("check", bad)
	if err == nil || out != "" || !strings.Contains(err.Error(), "INVALID (2 problems)") {
		t.Fatalf("invalid file: out=%q err=%v", out, err)
	}
	for _, want := range []string{bad + ":3:31: namespaces.a.scopes: unknown field", bad + ":3:23: namespaces.a.encrypt.memo: stores memo fields in plaintext"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if _, _, err := run("check", filepath.Join(t.TempDir(), "missing.yaml")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing file: %v", err)
	}
}

// TestProxyCommandPolicy: `blindfold proxy --policy` refuses to start on an invalid file, naming the line, and with a
// valid one refuses namespaces the policy does not list (before dialling the upstream).
func TestProxyCommandPolicy(t *testing.T) {
	keyDir := newKeyDir(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(bad, []byte("version: 1\nnamespaces:\n  default: {plaintext_from_sdk: pass}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(good, []byte("version: 1\nnamespaces:\n  default: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"--upstream", "127.0.0.1:1", "--key-dir", keyDir, "--listen", "127.0.0.1:0", "--metrics-listen", ""}

	r := execute(newProxyCmd(), append(base, "--policy", bad))
	select {
	case err := <-r.done:
		if err == nil || !strings.Contains(err.Error(), bad+":3:33: namespaces.default.plaintext_from_sdk") {
			t.Fatalf("invalid policy: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("proxy started with an invalid policy")
	}

	r, addr, _ := startProxyCmd(t, append(base, "--policy", good))
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = workflowservice.NewWorkflowServiceClient(conn).DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: "other"})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "no entry") {
		t.Errorf("unlisted namespace: %v", err)
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(r.out.String(), "policy loaded") {
		t.Errorf("no log line for the policy:\n%s", r.out.String())
	}
}
