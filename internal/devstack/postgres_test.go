package devstack_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/blindfold-dev/blindfold/internal/devstack"
)

// The URL grammar is pgurl's (tested and fuzzed there); this checks the mapping onto the server's two stores.
func TestPostgresConfigs(t *testing.T) {
	t.Parallel()
	main, vis, err := devstack.PostgresConfigs("postgres://temporal:pw@db:6432/tstate?sslmode=verify-full")
	if err != nil {
		t.Fatal(err)
	}
	if main.PluginName != "postgres12_pgx" || main.ConnectAddr != "db:6432" || main.User != "temporal" ||
		main.Password != "pw" || main.DatabaseName != "tstate" || main.ConnectAttributes["sslmode"] != "verify-full" {
		t.Errorf("main store %+v", main)
	}
	if vis.DatabaseName != "tstate"+devstack.VisibilitySuffix || vis.ConnectAddr != main.ConnectAddr ||
		vis.ConnectAttributes["sslmode"] != "verify-full" {
		t.Errorf("visibility store %+v", vis)
	}
	vis.ConnectAttributes["x"] = "y"
	if _, shared := main.ConnectAttributes["x"]; shared {
		t.Error("the two stores share one attribute map")
	}
	if _, _, err := devstack.PostgresConfigs("postgres://u:hunter2@h/a;b"); !errors.Is(err, devstack.ErrInvalidConfig) ||
		strings.Contains(err.Error(), "hunter2") {
		t.Errorf("bad URL: %v", err)
	}
}
