package devstacktest_test

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"

	"github.com/blindfold-dev/blindfold/internal/devstack/devstacktest"
	"github.com/blindfold-dev/blindfold/internal/testenv"
)

func TestMain(m *testing.M) {
	devstacktest.SetSharedOptions(devstacktest.WithNamespaces("extra"))
	devstacktest.Main(m)
}

func TestSharedIsStartedOnce(t *testing.T) {
	a := devstacktest.Shared(t)
	b := devstacktest.Shared(t)
	if a != b {
		t.Fatal("Shared returned two different stacks")
	}
	if a.UIAddr() != "" {
		t.Errorf("UI on by default: %s", a.UIAddr())
	}
	if !slices.Contains(a.Namespaces(), "extra") {
		t.Fatalf("namespaces %v lack the one from SetSharedOptions", a.Namespaces())
	}

	conn := testenv.DialInsecure(t, a.FrontendAddr())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := workflowservice.NewWorkflowServiceClient(conn).DescribeNamespace(ctx,
		&workflowservice.DescribeNamespaceRequest{Namespace: "extra"}); err != nil {
		t.Fatalf("describe namespace extra: %v", err)
	}
	if _, err := os.Stat(a.SQLitePath()); err != nil {
		t.Fatalf("shared stack database: %v", err)
	}
}
