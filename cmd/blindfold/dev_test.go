//go:build !nodev

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	apiproxy "go.temporal.io/api/proxy"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/blindfold-dev/blindfold/examples/hello"
	"github.com/blindfold-dev/blindfold/internal/dev"
)

// startDev runs `blindfold dev` on dataDir with free ports and waits until it is ready.
func startDev(t *testing.T, dataDir string, extra ...string) (devAddrs, *runningCmd) {
	t.Helper()
	ready := make(chan devAddrs, 1)
	testHookDevReady = func(a devAddrs) { ready <- a }
	t.Cleanup(func() { testHookDevReady = nil })
	args := append([]string{"--data-dir", dataDir, "--port", "0", "--frontend-port", "0", "--ui-port", "0",
		"--codec-port", "0", "--metrics-port", "0", "--server-log-level", "none"}, extra...)
	r := execute(newDevCmd(), args)
	select {
	case a := <-ready:
		return a, r
	case err := <-r.done:
		t.Fatalf("dev exited before ready: %v\n%s", err, r.out.String())
	case <-time.After(90 * time.Second):
		t.Fatalf("dev not ready within 90s:\n%s", r.out.String())
	}
	return devAddrs{}, nil
}

// TestDevCommand runs `blindfold dev` in-process, runs the hello example through its proxy, checks what the backend
// stored, the Web UI's wiring, metrics and the codec endpoint, then runs `blindfold proxy` against the same backend,
// stops both cleanly, restarts dev on the same data and reads the earlier result back.
// startHello dials addr and runs the hello example's worker; stop stops the worker and closes the client.
func startHello(t *testing.T, addr string) (c client.Client, stop func()) {
	t.Helper()
	c, err := client.Dial(client.Options{HostPort: addr, Logger: quietSDK})
	if err != nil {
		t.Fatal(err)
	}
	w := worker.New(c, hello.TaskQueue, worker.Options{})
	w.RegisterWorkflow(hello.Workflow)
	w.RegisterActivity(hello.Greet)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	return c, func() { w.Stop(); c.Close() }
}

func TestDevCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the embedded Temporal server")
	}
	dataDir := t.TempDir()
	a, dev := startDev(t, dataDir)
	for _, want := range []string{a.Proxy, a.Frontend, a.UI, a.Codec, a.Metrics, "go run ./examples/hello/worker", "go run ./examples/hello/starter"} {
		if !strings.Contains(dev.out.String(), want) {
			t.Errorf("banner lacks %q:\n%s", want, dev.out.String())
		}
	}

	marker := fmt.Sprintf("ada-%d@example.com", time.Now().UnixNano())
	wfID := fmt.Sprintf("dev-test-%d", time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	c, stopHello := startHello(t, a.Proxy)
	g, _, err := hello.Run(ctx, c, wfID, hello.Request{Name: "Ada", Email: marker}, hello.Approval{By: "approver-" + marker})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(g.Text, marker) || g.ApprovedBy != "approver-"+marker {
		t.Fatalf("greeting %+v", g)
	}
	stopHello()

	// The raw frontend has ciphertext only.
	raw, err := client.Dial(client.Options{HostPort: a.Frontend, Logger: quietSDK})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	var sealed *commonpb.Payload
	it := raw.GetWorkflowHistory(ctx, wfID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := proto.Marshal(ev)
		if bytes.Contains(b, []byte(marker)) {
			t.Fatalf("event %d (%s) has plaintext in the backend", ev.GetEventId(), ev.GetEventType())
		}
		_ = apiproxy.VisitPayloads(ctx, ev, apiproxy.VisitPayloadsOptions{Visitor: func(_ *apiproxy.VisitPayloadsContext, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
			for _, p := range ps {
				if string(p.GetMetadata()["encoding"]) != "binary/encrypted" {
					t.Errorf("event %d: payload with encoding %q in the backend", ev.GetEventId(), p.GetMetadata()["encoding"])
				}
				if sealed == nil && ev.GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED {
					sealed = p
				}
			}
			return ps, nil
		}})
	}
	if sealed == nil {
		t.Fatal("no payload in the started event")
	}

	// The Web UI reads the raw frontend and decodes through the codec endpoint, which decodes for it.
	settings := httpGet(t, a.UI+"/api/v1/settings")
	if !strings.Contains(settings, `"Endpoint":"`+a.Codec+`"`) {
		t.Errorf("web ui codec settings: %s", settings)
	}
	pj, _ := protojson.Marshal(sealed)
	req, _ := http.NewRequest(http.MethodPost, a.Codec+"/decode", strings.NewReader(`{"payloads":[`+string(pj)+`]}`))
	req.Header.Set("X-Namespace", "default")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var decoded struct{ Payloads []json.RawMessage }
	if err := json.Unmarshal(body, &decoded); err != nil || len(decoded.Payloads) != 1 {
		t.Fatalf("codec endpoint: %s %s", resp.Status, body)
	}
	var p commonpb.Payload
	if err := protojson.Unmarshal(decoded.Payloads[0], &p); err != nil || !bytes.Contains(p.GetData(), []byte(marker)) {
		t.Fatalf("codec endpoint did not decode: %s", body)
	}

	metrics := httpGet(t, a.Metrics)
	for _, want := range []string{
		`blindfold_proxy_rpcs_total{code="OK",method="StartWorkflowExecution",service="WorkflowService"} 1`,
		`blindfold_proxy_rpcs_total{code="OK",method="SignalWorkflowExecution",service="WorkflowService"} 1`,
		`blindfold_proxy_payloads_total{namespace="default",op="encode"}`,
		`blindfold_proxy_payloads_total{namespace="default",op="decode"}`,
		`blindfold_keys_kek_calls_total`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	t.Run("proxy command", func(t *testing.T) { testProxyCommand(t, a, wfID, g) })

	if err := dev.stop(t); err != nil {
		t.Fatalf("dev stopped with %v\n%s", err, dev.out.String())
	}
	if !strings.Contains(dev.out.String(), "stopping") {
		t.Errorf("no shutdown message:\n%s", dev.out.String())
	}
	if strings.Contains(dev.out.String(), marker) {
		t.Errorf("dev output contains payload text:\n%s", dev.out.String())
	}

	// Same data dir: the workflow and its keys are still there.
	a2, dev2 := startDev(t, dataDir, "--headless")
	c2, err := client.Dial(client.Options{HostPort: a2.Proxy, Logger: quietSDK})
	if err != nil {
		t.Fatal(err)
	}
	var again hello.Greeting
	if err := c2.GetWorkflow(ctx, wfID, "").Get(ctx, &again); err != nil {
		t.Fatalf("result after restart: %v", err)
	}
	c2.Close()
	if again != g {
		t.Errorf("after restart %+v, want %+v", again, g)
	}
	if a2.UI != "" {
		t.Errorf("--headless started the web ui at %s", a2.UI)
	}
	if err := dev2.stop(t); err != nil {
		t.Fatalf("second dev stopped with %v", err)
	}
}

// testProxyCommand runs `blindfold proxy` against the dev stack's raw frontend with the dev keys, configured by a
// config file, the environment and flags, and reads the dev run's result through it.
func testProxyCommand(t *testing.T, a devAddrs, wfID string, want hello.Greeting) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "proxy.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("upstream: %s\nallow-namespace: [default]\nkey-dir: %s\nlisten: 127.0.0.1:7\nlog-format: json\n", a.Frontend, a.KeyDir)), 0o600)
	t.Setenv("BLINDFOLD_METRICS_LISTEN", "127.0.0.1:0")
	t.Setenv("BLINDFOLD_API_KEY", "")
	// The flag wins over the file's unusable port 7.
	r, proxyAddr, metricsAddr := startProxyCmd(t, []string{"--config", cfg, "--listen", "127.0.0.1:0"})
	if metricsAddr == "" || strings.HasSuffix(metricsAddr, ":9464") {
		t.Errorf("metrics listener %q: BLINDFOLD_METRICS_LISTEN ignored", metricsAddr)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := client.Dial(client.Options{HostPort: proxyAddr, Logger: quietSDK})
	if err != nil {
		t.Fatal(err)
	}
	var got hello.Greeting
	if err := c.GetWorkflow(ctx, wfID, "").Get(ctx, &got); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if got != want {
		t.Errorf("through blindfold proxy: %+v, want %+v", got, want)
	}

	conn, err := grpc.NewClient(proxyAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = workflowservice.NewWorkflowServiceClient(conn).DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: "other"})
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("namespace outside the allowlist: %v", err)
	}
	h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("grpc health: %v %v", h, err)
	}
	if got := httpGet(t, "http://"+metricsAddr+"/healthz"); got != "ok\n" {
		t.Errorf("healthz %q", got)
	}
	if m := httpGet(t, "http://"+metricsAddr+"/metrics"); !strings.Contains(m, `blindfold_proxy_errors_total{kind="namespace_denied"} 1`) {
		t.Errorf("proxy metrics lack the denied call")
	}

	if err := r.stop(t); err != nil {
		t.Fatalf("proxy stopped with %v\n%s", err, r.out.String())
	}
	out := r.out.String()
	if !strings.Contains(out, `"msg":"blindfold proxy ready"`) {
		t.Errorf("no JSON ready log:\n%s", out)
	}
}

// TestDevPortBusy checks that dev refuses at once, before starting the server, when the proxy port is taken (for
// example by another Temporal dev server on 7233).
func TestDevPortBusy(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	dataDir := t.TempDir()
	r := execute(newDevCmd(), []string{"--data-dir", dataDir, "--port", port})
	select {
	case err := <-r.done:
		if err == nil || !strings.Contains(err.Error(), "--port") {
			t.Fatalf("error %v", err)
		}
	case <-time.After(10 * time.Second):
		r.stop(t)
		t.Fatal("dev did not refuse a busy proxy port")
	}
	if _, err := os.Stat(filepath.Join(dataDir, "temporal.db")); err == nil {
		t.Error("the server started although the proxy port was busy")
	}
}

// TestDevAndProxyOpenTheSameKeys checks that `blindfold dev` and `blindfold proxy` derive the same key manager
// behaviour from the same key settings: both go through gateway.OpenKeys, so with Vault both refresh keysets in the
// background (a Vault outage within the cache TTL costs no latency), which the proxy used to lack.
func TestDevAndProxyOpenTheSameKeys(t *testing.T) {
	dir := t.TempDir()
	for _, vault := range []bool{false, true} {
		var d devFlags
		devArgs := []string{"--data-dir", dir, "--key-dir", dir}
		proxyArgs := []string{"--upstream", "127.0.0.1:1", "--key-dir", dir, "--create-keys"}
		if vault {
			devArgs = append(devArgs, "--vault")
			proxyArgs = append(proxyArgs, "--kek", "vault")
		}
		if err := newDevCmdFor(&d).ParseFlags(devArgs); err != nil {
			t.Fatal(err)
		}
		p := proxyFlags{}
		if err := newProxyCmdFor(&p).ParseFlags(proxyArgs); err != nil {
			t.Fatal(err)
		}
		pc, err := p.gatewayConfig(nil)
		if err != nil {
			t.Fatal(err)
		}
		dc := d.config(nil)
		devKeys := dev.KeysConfig(dc.KeyDir, dc.Vault)
		if devKeys.Dir != pc.Keys.Dir || devKeys.KEK != pc.Keys.KEK {
			t.Errorf("vault=%v: dev keys %s/%s, proxy keys %s/%s", vault, devKeys.Dir, devKeys.KEK, pc.Keys.Dir, pc.Keys.KEK)
		}
		if dp, pp := devKeys.Plan(), pc.Keys.Plan(); dp != pp {
			t.Errorf("vault=%v: dev key plan %+v, proxy key plan %+v", vault, dp, pp)
		}
		if vault && pc.Keys.Plan().BackgroundRefresh == 0 {
			t.Error("proxy with Vault: no background refresh")
		}
	}
}
