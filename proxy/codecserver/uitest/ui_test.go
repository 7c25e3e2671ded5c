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
	// Room for the stack's start and every page wait below on a loaded machine.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
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

	// readText returns what the loaded page renders now, without navigating.
	readText := func() (string, error) {
		return chromedp.Run(browser, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	}
	// waitText polls the page already loaded until done accepts its text or wait passes, and returns the last text read.
	waitText := func(wait time.Duration, done func(string) bool) (string, bool) {
		deadline := time.Now().Add(wait)
		var text string
		for {
			if s, err := readText(); err == nil {
				text = s
				if done(text) {
					return text, true
				}
			}
			if time.Now().After(deadline) {
				return text, false
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	pageText := func(url, want string, wait time.Duration) (string, bool) {
		if err := chromedp.Do(browser, chromedp.Navigate(url)); err != nil {
			t.Fatalf("navigate %s: %v", url, err)
		}
		return waitText(wait, func(text string) bool { return strings.Contains(text, want) })
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
	// The UI asks the endpoint to decode after the page shows. The deny record is written before the endpoint answers,
	// so once it is there the refusal has happened; the page is then read on this load (navigating again would restart
	// the exchange and read a half-rendered page) until it renders what the refusal leads to: the codec error banner
	// and the input as ciphertext. Only then does the marker's absence mean the payload stayed encrypted.
	waitAuditRecord(t, auditPath, 90*time.Second, func(r policy.Record) bool {
		return r.Namespace == "secret" && r.Decision == policy.AuditDeny
	})
	text, _ = waitText(90*time.Second, func(text string) bool {
		return strings.Contains(text, codecErrorBanner) && encryptedInput.MatchString(text)
	})
	screenshot("refused.png")
	if os.Getenv("BLINDFOLD_UI_DUMP") != "" {
		t.Logf("refused page text:\n%s", clip(text))
	}
	if strings.Contains(text, "BROWSER-MARKER-REFUSED") {
		t.Fatal("the Web UI shows a payload the policy refuses")
	}
	if !strings.Contains(text, codecErrorBanner) {
		t.Errorf("refused page shows no codec error banner")
	}
	// What it shows instead is the envelope's ciphertext, base64 as the UI prints undecodable binary data.
	if !encryptedInput.MatchString(text) {
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

// What the UI renders for a payload the endpoint refused: its codec error banner, and the envelope's ciphertext as the
// base64 it prints for undecodable binary data.
const codecErrorBanner = "Codec Server could not connect"

var encryptedInput = regexp.MustCompile(`Input\s+"[A-Za-z0-9+/]{40,}={0,2}"`)

// waitAuditRecord polls the audit log at path until it holds a complete record match accepts, or wait passes (the
// caller's own checks then report what is missing).
func waitAuditRecord(t *testing.T, path string, wait time.Duration, match func(policy.Record) bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		// A line still being written has no newline yet; only complete ones are records.
		if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
			for _, line := range bytes.Split(data[:i], []byte("\n")) {
				var r policy.Record
				if json.Unmarshal(line, &r) == nil && match(r) {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			return
		}
		time.Sleep(100 * time.Millisecond)
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
