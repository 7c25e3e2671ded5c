package uitest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/codec/codectest"
	"github.com/blindfold-dev/blindfold/internal/devstack"
	"github.com/blindfold-dev/blindfold/internal/devstack/devstacktest"
	"github.com/blindfold-dev/blindfold/policy"
	"github.com/blindfold-dev/blindfold/proxy/codecserver"
)

// The identity the dev UI's requests get: over http:// the UI sends no token, so the endpoint runs with Anonymous.
const uiPolicy = `version: 1
access:
  rules:
    - name: ui-reads-default
      subjects: [ui-user]
      namespaces: [default]
      operations: [decode]
`

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func chromiumPath(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("BLINDFOLD_REQUIRE_BROWSER") != "" {
		t.Fatal("no chromium on PATH (install Debian's chromium)")
	}
	t.Skip("no chromium on PATH; install Debian's chromium to run the browser test")
	return ""
}

// TestWebUIDecodesThroughEndpoint opens two workflows in the embedded Web UI: one in a namespace the policy lets the
// UI's identity decode (its marker must appear) and one it refuses (the marker must not appear; the payload stays encrypted).
func TestWebUIDecodesThroughEndpoint(t *testing.T) {
	chrome := chromiumPath(t)
	if testing.Short() {
		t.Skip("browser test skipped in -short mode")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// The codec endpoint, on its own port, trusting the UI's origin.
	kr := codectest.NewKeyring()
	c, err := codec.New(kr)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Parse("ui.yaml", []byte(uiPolicy))
	if err != nil {
		t.Fatal(err)
	}
	auditPath := filepath.Join(t.TempDir(), "audit.jsonl")
	audit, err := policy.OpenAudit(auditPath)
	if err != nil {
		t.Fatal(err)
	}
	defer audit.Close()
	uiPort := freePort(t)
	uiOrigin := "http://127.0.0.1:" + strconv.Itoa(uiPort)
	h, err := codecserver.New(codecserver.Config{
		Codec:          c,
		Authenticator:  codecserver.Anonymous{Identity: policy.Identity{Subject: "ui-user"}},
		Authorizer:     pol.Access,
		Audit:          audit,
		AllowedOrigins: []string{uiOrigin},
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := h.Server()
	go srv.Serve(ln)
	defer srv.Close()
	endpoint := "http://" + ln.Addr().String()

	stack := devstacktest.Start(t, devstacktest.WithUI(), devstacktest.WithNamespaces("secret"), devstacktest.WithConfig(func(cfg *devstack.Config) {
		cfg.UIPort = uiPort
		cfg.UICodecEndpoint = endpoint
	}))

	// Start one workflow per namespace with an encrypted input, straight at the raw frontend (no worker needed: the
	// started event carries the input).
	start := func(ns, marker string) (string, string) {
		dc := converter.NewCodecDataConverter(converter.GetDefaultDataConverter(), c.ForNamespace(ns))
		cl, err := client.Dial(client.Options{HostPort: stack.FrontendAddr(), Namespace: ns, DataConverter: dc, Logger: discardLogger{}})
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		run, err := cl.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "ui-" + ns, TaskQueue: "nobody-polls"}, "UIWorkflow", marker)
		if err != nil {
			t.Fatal(err)
		}
		return run.GetID(), run.GetRunID()
	}
	okID, okRun := start("default", "BROWSER-MARKER-DECODED")
	deniedID, deniedRun := start("secret", "BROWSER-MARKER-REFUSED")

	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chrome),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 1800),
	)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()

	pageText := func(url, want string, wait time.Duration) (string, bool) {
		if err := chromedp.Do(browser, chromedp.Navigate(url)); err != nil {
			t.Fatalf("navigate %s: %v", url, err)
		}
		deadline := time.Now().Add(wait)
		var text string
		for time.Now().Before(deadline) {
			text, err = chromedp.Run(browser, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
			if err == nil && strings.Contains(text, want) {
				return text, true
			}
			time.Sleep(500 * time.Millisecond)
		}
		return text, false
	}
	screenshot := func(name string) {
		img, err := chromedp.Run(browser, chromedp.FullScreenshot(100))
		if err != nil {
			t.Logf("screenshot %s: %v", name, err)
			return
		}
		dir := t.TempDir()
		if keep := os.Getenv("BLINDFOLD_SCREENSHOT_DIR"); keep != "" {
			dir = keep
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, img, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", p)
	}

	okURL := stack.UIAddr() + "/namespaces/default/workflows/" + okID + "/" + okRun + "/history"
	text, found := pageText(okURL, "BROWSER-MARKER-DECODED", 60*time.Second)
	screenshot("decoded.png")
	if !found {
		t.Fatalf("decoded marker not shown in the Web UI; page text:\n%s", clip(text))
	}

	// The refused namespace: the page loads (the workflow id shows) but the input stays encrypted.
	deniedURL := stack.UIAddr() + "/namespaces/secret/workflows/" + deniedID + "/" + deniedRun + "/history"
	text, found = pageText(deniedURL, deniedID, 60*time.Second)
	if !found {
		t.Fatalf("refused workflow page did not load; page text:\n%s", clip(text))
	}
	// Give the UI time to call the endpoint and render whatever it got back.
	time.Sleep(3 * time.Second)
	text, _ = pageText(deniedURL, "BROWSER-MARKER-REFUSED", 5*time.Second)
	screenshot("refused.png")
	if os.Getenv("BLINDFOLD_UI_DUMP") != "" {
		t.Logf("refused page text:\n%s", clip(text))
	}
	if strings.Contains(text, "BROWSER-MARKER-REFUSED") {
		t.Fatal("the Web UI shows a payload the policy refuses")
	}
	if !strings.Contains(text, "Codec Server could not connect") {
		t.Errorf("refused page shows no codec error banner")
	}
	// What it shows instead is the envelope's ciphertext, base64 as the UI prints undecodable binary data.
	if !regexp.MustCompile(`Input\s+"[A-Za-z0-9+/]{40,}={0,2}"`).MatchString(text) {
		t.Fatalf("refused page does not show the encrypted input; page text:\n%s", clip(text))
	}

	// The audit log explains both pages: allowed decodes for default, refused ones for secret.
	data, err := os.ReadFile(auditPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := policy.VerifyAudit(bytes.NewReader(data), policy.VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
	var allowDefault, denySecret bool
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var r policy.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		allowDefault = allowDefault || (r.Namespace == "default" && r.Decision == policy.AuditAllow && r.Payloads > 0)
		denySecret = denySecret || (r.Namespace == "secret" && r.Decision == policy.AuditDeny)
	}
	if !allowDefault || !denySecret {
		t.Fatalf("audit log lacks the UI's decisions (allow default %v, deny secret %v):\n%s", allowDefault, denySecret, data)
	}
}

func clip(s string) string {
	if len(s) > 3000 {
		return s[:3000] + "…"
	}
	return s
}

type discardLogger struct{}

func (discardLogger) Debug(string, ...any) {}
func (discardLogger) Info(string, ...any)  {}
func (discardLogger) Warn(string, ...any)  {}
func (discardLogger) Error(string, ...any) {}
