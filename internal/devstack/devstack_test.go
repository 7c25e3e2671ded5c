package devstack_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/blindfold-dev/blindfold/internal/devstack"
	"github.com/blindfold-dev/blindfold/internal/devstack/devstacktest"
)

const codecEndpoint = "http://127.0.0.1:1/codec"

// One stack, with the UI, serves every test that does not need its own
// database: a server start costs about a CPU-second.
func TestMain(m *testing.M) {
	devstacktest.SetSharedOptions(
		devstacktest.WithUI(),
		devstacktest.WithConfig(func(c *devstack.Config) {
			c.UICodecEndpoint = codecEndpoint
			c.UICodecPassAccessToken = true
		}),
	)
	devstacktest.Main(m)
}

func quietSDKLogger() sdklog.Logger {
	return sdklog.NewStructuredLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
}

func dial(t *testing.T, addr, namespace string) client.Client {
	t.Helper()
	c, err := client.Dial(client.Options{HostPort: addr, Namespace: namespace, Logger: quietSDKLogger()})
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(c.Close)
	return c
}

func greet(_ context.Context, name string) (string, error) { return "hello " + name, nil }

func greetWorkflow(ctx workflow.Context, name string) (string, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 10 * time.Second})
	var out string
	err := workflow.ExecuteActivity(ctx, "greet", name).Get(ctx, &out)
	return out, err
}

// runGreeting runs greetWorkflow to completion on a fresh task queue and
// returns its workflow id.
func runGreeting(t *testing.T, c client.Client, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tq := "devstack-" + id
	w := worker.New(c, tq, worker.Options{})
	w.RegisterWorkflowWithOptions(greetWorkflow, workflow.RegisterOptions{Name: "greet-workflow"})
	w.RegisterActivityWithOptions(greet, activity.RegisterOptions{Name: "greet"})
	if err := w.Start(); err != nil {
		t.Fatalf("start worker: %v", err)
	}
	defer w.Stop()

	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: tq}, "greet-workflow", "blindfold")
	if err != nil {
		t.Fatalf("start workflow: %v", err)
	}
	var got string
	if err := run.Get(ctx, &got); err != nil {
		t.Fatalf("workflow result: %v", err)
	}
	if got != "hello blindfold" {
		t.Fatalf("workflow result = %q, want %q", got, "hello blindfold")
	}
}

// A workflow with an activity runs to completion against FrontendAddr and
// its history is readable.
func TestWorkflowAndHistory(t *testing.T) {
	s := devstacktest.Shared(t)
	c := dial(t, s.FrontendAddr(), devstack.DefaultNamespace)
	id := "history-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	runGreeting(t, c, id)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	iter := c.GetWorkflowHistory(ctx, id, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var types []enums.EventType
	var sawResult bool
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			t.Fatalf("history: %v", err)
		}
		types = append(types, ev.EventType)
		if a := ev.GetActivityTaskCompletedEventAttributes(); a != nil {
			for _, p := range a.GetResult().GetPayloads() {
				sawResult = sawResult || strings.Contains(string(p.Data), "hello blindfold")
			}
		}
	}
	if len(types) == 0 || types[0] != enums.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED ||
		types[len(types)-1] != enums.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED {
		t.Fatalf("history event types = %v, want started ... completed", types)
	}
	if !sawResult {
		t.Fatalf("no ActivityTaskCompleted event with the activity result in %v", types)
	}
}

func TestRestartKeepsState(t *testing.T) {
	dir := t.TempDir()
	const extra = "restart-ns"
	cfg := devstack.Config{DataDir: dir, Namespaces: []string{extra}, LogOutput: io.Discard}

	start := func() *devstack.Stack {
		ctx, cancel := context.WithTimeout(context.Background(), devstacktest.StartTimeout)
		defer cancel()
		began := time.Now()
		s, err := devstack.Start(ctx, cfg)
		if err != nil {
			t.Fatalf("start: %v", err)
		}
		t.Logf("ready in %v (Start returned after the frontend answered DescribeNamespace)", time.Since(began))
		return s
	}
	stop := func(s *devstack.Stack) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Fatalf("stop: %v", err)
		}
	}

	s := start()
	c := dial(t, s.FrontendAddr(), extra)
	runGreeting(t, c, "survivor")
	c.Close()
	firstAddr := s.FrontendAddr()
	stop(s)
	stop(s) // idempotent
	if conn, err := net.DialTimeout("tcp", firstAddr, time.Second); err == nil {
		conn.Close()
		t.Fatalf("frontend %s still accepts connections after Stop", firstAddr)
	}
	if _, err := os.Stat(s.SQLitePath()); err != nil {
		t.Fatalf("database file gone after stop: %v", err)
	}

	s = start()
	defer stop(s)
	if s.FrontendAddr() == firstAddr {
		t.Logf("restart reused frontend address %s", firstAddr)
	}
	c = dial(t, s.FrontendAddr(), extra)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, ns := range []string{devstack.DefaultNamespace, extra} {
		if _, err := c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: ns}); err != nil {
			t.Errorf("namespace %q after restart: %v", ns, err)
		}
	}
	desc, err := c.DescribeWorkflowExecution(ctx, "survivor", "")
	if err != nil {
		t.Fatalf("workflow after restart: %v", err)
	}
	if st := desc.WorkflowExecutionInfo.Status; st != enums.WORKFLOW_EXECUTION_STATUS_COMPLETED {
		t.Fatalf("workflow status after restart = %v, want completed", st)
	}
	var result string
	if err := c.GetWorkflow(ctx, "survivor", "").Get(ctx, &result); err != nil || result != "hello blindfold" {
		t.Fatalf("workflow result after restart = %q, %v", result, err)
	}
}

func TestUIServesAndCarriesCodecSettings(t *testing.T) {
	s := devstacktest.Shared(t)
	if s.UIAddr() == "" {
		t.Fatal("UIAddr empty with the UI on")
	}
	get := func(path string) (*http.Response, []byte) {
		t.Helper()
		resp, err := http.Get(s.UIAddr() + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("read %s: %v", path, err)
		}
		return resp, body
	}

	resp, body := get("/")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET / = %d", resp.StatusCode)
	}
	if !strings.Contains(strings.ToLower(string(body)), "<html") {
		t.Fatalf("GET / did not return an HTML page: %.200s", body)
	}

	resp, body = get("/api/v1/settings")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/v1/settings = %d: %s", resp.StatusCode, body)
	}
	var settings struct {
		DefaultNamespace string
		Codec            struct {
			Endpoint           string
			PassAccessToken    bool
			IncludeCredentials bool
		}
	}
	if err := json.Unmarshal(body, &settings); err != nil {
		t.Fatalf("settings JSON: %v: %s", err, body)
	}
	if settings.Codec.Endpoint != codecEndpoint || !settings.Codec.PassAccessToken || settings.Codec.IncludeCredentials {
		t.Fatalf("codec settings = %+v, want endpoint %q, passAccessToken, no credentials", settings.Codec, codecEndpoint)
	}
	if settings.DefaultNamespace != devstack.DefaultNamespace {
		t.Errorf("default namespace = %q", settings.DefaultNamespace)
	}

	// The UI reads through the raw frontend: its namespace API answers.
	resp, body = get("/api/v1/namespaces/default")
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"default"`) {
		t.Fatalf("GET /api/v1/namespaces/default = %d: %.300s", resp.StatusCode, body)
	}
}

func TestStartRejectsBadConfig(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port

	tests := []struct {
		name    string
		cfg     devstack.Config
		invalid bool // wraps ErrInvalidConfig
		want    string
	}{
		{"host not an IP", devstack.Config{Host: "localhost"}, true, "not an IP"},
		{"empty namespace", devstack.Config{Namespaces: []string{""}}, true, "empty namespace"},
		{"bad log level", devstack.Config{LogLevel: "loud"}, true, "log level"},
		{"negative retention", devstack.Config{Retention: -time.Hour}, true, "retention"},
		{"port out of range", devstack.Config{HistoryPort: 70000}, true, "out of range"},
		{"frontend port busy", devstack.Config{FrontendPort: busyPort}, false, fmt.Sprintf("port %d", busyPort)},
		{"ui port busy", devstack.Config{UI: true, UIPort: busyPort}, false, fmt.Sprintf("port %d", busyPort)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.DataDir = t.TempDir()
			s, err := devstack.Start(context.Background(), tt.cfg)
			if err == nil {
				_ = s.Stop(context.Background())
				t.Fatal("Start succeeded")
			}
			if errors.Is(err, devstack.ErrInvalidConfig) != tt.invalid {
				t.Errorf("errors.Is(err, ErrInvalidConfig) = %v, want %v (err: %v)", !tt.invalid, tt.invalid, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
			if entries, _ := os.ReadDir(tt.cfg.DataDir); len(entries) != 0 {
				t.Errorf("failed start left files in the data dir: %v", entries)
			}
		})
	}
}

func TestStartHonoursCancelledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := devstack.Start(ctx, devstack.Config{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Start with a cancelled context = %v, want context.Canceled", err)
	}
}
