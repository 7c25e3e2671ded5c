// Package pgurl parses the postgres:// URLs `blindfold dev --db` takes. It has no dependencies, so its fuzz test
// builds without the Temporal server.
package pgurl

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// ErrInvalid is wrapped by every error Parse returns.
var ErrInvalid = errors.New("invalid postgresql url")

// Defaults for what a URL leaves out.
const (
	DefaultPort     = "5432"
	DefaultUser     = "postgres"
	DefaultDatabase = "temporal"
)

// URL is a parsed postgres:// URL.
type URL struct {
	// Addr is host:port.
	Addr     string
	User     string
	Password string
	Database string
	// Params are the query parameters (sslmode, sslrootcert, …), names trimmed, each given once.
	Params map[string]string
}

// Parse parses postgres://[user[:password]@]host[:port][/database][?params] (or postgresql://). The password never
// appears in an error.
func Parse(raw string) (URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse quotes the whole input, password included: say only what is wrong.
		return URL{}, fmt.Errorf("%w: not a valid URL", ErrInvalid)
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return URL{}, fmt.Errorf("%w: scheme %q: want postgres://", ErrInvalid, u.Scheme)
	}
	host := u.Hostname()
	if host == "" {
		return URL{}, fmt.Errorf("%w: no host", ErrInvalid)
	}
	port := u.Port()
	if port == "" {
		port = DefaultPort
	}
	db := strings.TrimPrefix(u.Path, "/")
	if db == "" {
		db = DefaultDatabase
	}
	// The server's tooling splices the name unquoted into CREATE DATABASE, where PostgreSQL folds it to lower case,
	// while the driver connects by the exact name: only a plain lower-case identifier means the same to both.
	for i, r := range db {
		if !(r == '_' || r >= 'a' && r <= 'z' || i > 0 && r >= '0' && r <= '9') {
			return URL{}, fmt.Errorf("%w: database name %q: use lower-case letters, digits and _ (not first)", ErrInvalid, db)
		}
	}
	out := URL{Addr: net.JoinHostPort(host, port), User: u.User.Username(), Database: db, Params: map[string]string{}}
	if out.User == "" {
		out.User = DefaultUser
	}
	out.Password, _ = u.User.Password()
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return URL{}, fmt.Errorf("%w: parameters: %w", ErrInvalid, err)
	}
	for k, v := range q {
		// The server's driver trims names and panics on a duplicate: refuse those here, with an error.
		key := strings.TrimSpace(k)
		if _, dup := out.Params[key]; key == "" || dup || len(v) != 1 {
			return URL{}, fmt.Errorf("%w: parameter %q is empty or repeated", ErrInvalid, key)
		}
		out.Params[key] = strings.TrimSpace(v[0])
	}
	return out, nil
}
