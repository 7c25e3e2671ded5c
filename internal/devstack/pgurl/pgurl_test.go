package pgurl_test

import (
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/blindfold-dev/blindfold/internal/devstack/pgurl"
)

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		raw  string
		want pgurl.URL
	}{
		{"postgres://temporal:s3cr%40t@db.internal:6432/tstate?sslmode=verify-full&sslrootcert=/ca.pem",
			pgurl.URL{Addr: "db.internal:6432", User: "temporal", Password: "s3cr@t", Database: "tstate",
				Params: map[string]string{"sslmode": "verify-full", "sslrootcert": "/ca.pem"}}},
		{"postgresql://127.0.0.1", pgurl.URL{Addr: "127.0.0.1:5432", User: "postgres", Database: "temporal", Params: map[string]string{}}},
		{"postgres://u@[::1]:5433/x_1", pgurl.URL{Addr: "[::1]:5433", User: "u", Database: "x_1", Params: map[string]string{}}},
	}
	for _, tt := range tests {
		got, err := pgurl.Parse(tt.raw)
		if err != nil {
			t.Errorf("%s: %v", tt.raw, err)
			continue
		}
		if got.Addr != tt.want.Addr || got.User != tt.want.User || got.Password != tt.want.Password ||
			got.Database != tt.want.Database || !maps.Equal(got.Params, tt.want.Params) {
			t.Errorf("%s: got %+v, want %+v", tt.raw, got, tt.want)
		}
	}
}

func TestParseRejects(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{
		"mysql://u:p@h/db",
		"postgres:///nohost",
		"postgres://u:hunter2@h/a;drop",
		"postgres://u:hunter2@h/a/b",
		"postgres://u:hunter2@h/a%22b",
		"postgres://u:hunter2@h/Temporal",
		"postgres://u:hunter2@h/temporal-x",
		"postgres://u:hunter2@h/1db",
		"postgres://u:hunter2@h/a?sslmode=disable&sslmode%20=require",
		"postgres://u:hunter2@h/a?x=1&x=2",
		"postgres://u:hunter2@h:notaport/db",
		"postgres://u:hunter2@h/db\x7f",
		"",
	} {
		_, err := pgurl.Parse(bad)
		if !errors.Is(err, pgurl.ErrInvalid) {
			t.Errorf("%q: error %v, want ErrInvalid", bad, err)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%q: the error quotes the password: %v", bad, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add("postgres://temporal:pw@127.0.0.1:5432/temporal?sslmode=disable")
	f.Add("postgresql://[::1]/x?a=b&c=d")
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := pgurl.Parse(raw)
		if err != nil {
			if !errors.Is(err, pgurl.ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			if pw := passwordOf(raw); len(pw) >= 6 && strings.Contains(err.Error(), pw) {
				t.Fatalf("error %q quotes the password", err)
			}
			return
		}
		if u.Database == "" || u.Addr == "" || u.User == "" {
			t.Fatalf("%q: incomplete %+v", raw, u)
		}
		for k := range u.Params {
			if k == "" || k != strings.TrimSpace(k) {
				t.Fatalf("%q: parameter name %q", raw, k)
			}
		}
	})
}

// passwordOf is the text between the first ':' after "//" and the '@', roughly: enough to catch an echo.
func passwordOf(raw string) string {
	_, rest, ok := strings.Cut(raw, "//")
	if !ok {
		return ""
	}
	userinfo, _, ok := strings.Cut(rest, "@")
	if !ok {
		return ""
	}
	_, pw, _ := strings.Cut(userinfo, ":")
	return pw
}
