package devstack_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/blindfold-dev/blindfold/internal/devstack"
)

func TestPostgresConfigs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		url                  string
		addr, user, pass, db string
		visDB                string
		attrs                map[string]string
	}{
		{url: "postgres://temporal:s3cr%40t@db.internal:6432/tstate?sslmode=verify-full&sslrootcert=/ca.pem",
			addr: "db.internal:6432", user: "temporal", pass: "s3cr@t", db: "tstate", visDB: "tstate_visibility",
			attrs: map[string]string{"sslmode": "verify-full", "sslrootcert": "/ca.pem"}},
		{url: "postgresql://127.0.0.1", addr: "127.0.0.1:5432", user: "postgres", db: "temporal", visDB: "temporal_visibility",
			attrs: map[string]string{}},
		{url: "postgres://u@[::1]:5433/x", addr: "[::1]:5433", user: "u", db: "x", visDB: "x_visibility", attrs: map[string]string{}},
	}
	for _, tt := range tests {
		main, vis, err := devstack.PostgresConfigs(tt.url)
		if err != nil {
			t.Errorf("%s: %v", tt.url, err)
			continue
		}
		if main.ConnectAddr != tt.addr || main.User != tt.user || main.Password != tt.pass || main.DatabaseName != tt.db {
			t.Errorf("%s: got addr %q user %q password %q db %q", tt.url, main.ConnectAddr, main.User, main.Password, main.DatabaseName)
		}
		if vis.DatabaseName != tt.visDB || vis.ConnectAddr != tt.addr || vis.Password != tt.pass {
			t.Errorf("%s: visibility db %q at %q", tt.url, vis.DatabaseName, vis.ConnectAddr)
		}
		if len(main.ConnectAttributes) != len(tt.attrs) {
			t.Errorf("%s: attributes %v, want %v", tt.url, main.ConnectAttributes, tt.attrs)
		}
		for k, v := range tt.attrs {
			if main.ConnectAttributes[k] != v || vis.ConnectAttributes[k] != v {
				t.Errorf("%s: attribute %s = %q / %q, want %q", tt.url, k, main.ConnectAttributes[k], vis.ConnectAttributes[k], v)
			}
		}
	}
}

func TestPostgresConfigsRejects(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{
		"mysql://u:p@h/db",
		"postgres:///nohost",
		"postgres://u:hunter2@h/a;drop",
		"postgres://u:hunter2@h/a/b",
		"postgres://u:hunter2@h/a?sslmode=disable&sslmode%20=require",
		"postgres://u:hunter2@h/a?x=1&x=2",
		"postgres://u:hunter2@h:notaport/db\x7f",
		"",
	} {
		_, _, err := devstack.PostgresConfigs(bad)
		if !errors.Is(err, devstack.ErrInvalidConfig) {
			t.Errorf("%q: error %v, want ErrInvalidConfig", bad, err)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%q: the error quotes the password: %v", bad, err)
		}
	}
}

func FuzzPostgresConfigs(f *testing.F) {
	f.Add("postgres://temporal:pw@127.0.0.1:5432/temporal?sslmode=disable")
	f.Add("postgresql://[::1]/x?a=b&c=d")
	f.Fuzz(func(t *testing.T, raw string) {
		main, vis, err := devstack.PostgresConfigs(raw)
		if err != nil {
			if !errors.Is(err, devstack.ErrInvalidConfig) {
				t.Fatalf("error %v is not ErrInvalidConfig", err)
			}
			return
		}
		for k := range main.ConnectAttributes {
			if k == "" || k != strings.TrimSpace(k) {
				t.Fatalf("%q: attribute name %q", raw, k)
			}
		}
		if main.DatabaseName == "" || vis.DatabaseName != main.DatabaseName+devstack.VisibilitySuffix || main.ConnectAddr == "" {
			t.Fatalf("%q: main %+v, visibility db %q", raw, main, vis.DatabaseName)
		}
	})
}
