package clustere2e

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/blindfold-dev/blindfold/internal/cluster"
)

// TestDevOnPostgres follows the README: a PostgreSQL someone started, a role with a password and CREATEDB, and
// `blindfold dev --db postgres://…`. Dev creates both databases and the schema, a workflow runs through its proxy,
// and a second start on the same database (schema already there: only updates are checked) still has it.
func TestDevOnPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and blindfold dev")
	}
	if _, err := cluster.PostgresBinDir(); errors.Is(err, cluster.ErrNoPostgres) {
		if os.Getenv("BLINDFOLD_REQUIRE_POSTGRES") == "1" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin, err := cluster.BuildBlindfold(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pg, err := cluster.StartPostgres(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := pg.Stop(); err != nil {
			t.Errorf("stop postgresql: %v", err)
		}
		if pg.Running() {
			t.Error("postgresql still runs after Stop")
		}
	}()
	const password = "newcomer-pw-7f3a"
	if _, err := pg.Exec(ctx, "postgres", "CREATE ROLE newcomer LOGIN PASSWORD '"+password+"' CREATEDB"); err != nil {
		t.Fatal(err)
	}

	ports := make([]int, 2)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
	}
	proxyAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	frontend := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))
	dir := t.TempDir()
	url := fmt.Sprintf("postgres://newcomer:%s@%s/temporal?sslmode=disable", password, pg.Addr())
	logFile := filepath.Join(dir, "dev.log")
	dev := cluster.NewProc("dev", bin, logFile, "dev", "--db", url, "--headless", "--data-dir", filepath.Join(dir, "data"),
		"--port", strconv.Itoa(ports[0]), "--frontend-port", strconv.Itoa(ports[1]), "--codec-port", "0", "--metrics-port", "-1")
	start := func() {
		t.Helper()
		if err := dev.Start(); err != nil {
			t.Fatal(err)
		}
		if err := dev.WaitReady(ctx, "the frontend", func(ctx context.Context) error { return cluster.DescribeDefault(ctx, frontend) }); err != nil {
			t.Fatal(err)
		}
	}
	defer func() { _ = dev.Stop(30 * time.Second) }()
	start()

	dbs, err := pg.Exec(ctx, "postgres", "SELECT datname FROM pg_database WHERE datname LIKE 'temporal%' ORDER BY 1")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(dbs); strings.Join(got, ",") != "temporal,temporal_visibility" {
		t.Fatalf("databases %v, want temporal and temporal_visibility", got)
	}
	owner, err := pg.Exec(ctx, "temporal", "SELECT tableowner FROM pg_tables WHERE tablename = 'executions'")
	if err != nil || strings.TrimSpace(owner) != "newcomer" {
		t.Fatalf("executions table owner %q (%v), want newcomer", owner, err)
	}

	// The restart below makes the worker's polls fail for a moment: expected, kept out of the output.
	quiet := sdklog.NewStructuredLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	cl, err := client.Dial(client.Options{HostPort: proxyAddr, Namespace: "default", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	w := worker.New(cl, "dev-pg", worker.Options{})
	w.RegisterWorkflowWithOptions(func(ctx workflow.Context, s string) (string, error) { return "hello " + s, nil },
		workflow.RegisterOptions{Name: "Hello"})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	run, err := cl.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "dev-pg-hello", TaskQueue: "dev-pg"}, "Hello", "postgres")
	if err != nil {
		t.Fatal(err)
	}
	var out string
	if err := run.Get(ctx, &out); err != nil || out != "hello postgres" {
		t.Fatalf("result %q, %v", out, err)
	}

	// Restart on the same database: the schema is there, dev only checks for updates, and the workflow is kept.
	if err := dev.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	start()
	desc, err := cl.DescribeWorkflowExecution(ctx, "dev-pg-hello", "")
	if err != nil {
		t.Fatalf("the workflow after a restart: %v", err)
	}
	if st := desc.GetWorkflowExecutionInfo().GetStatus().String(); st != "Completed" {
		t.Fatalf("status after restart %s", st)
	}

	b, _ := os.ReadFile(logFile)
	if strings.Contains(string(b), password) {
		t.Error("dev printed the database password")
	}
	if !strings.Contains(string(b), "postgres://newcomer:xxxxx@") {
		t.Errorf("the banner does not name the database:\n%s", b)
	}
}
