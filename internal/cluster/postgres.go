package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"
)

// ErrNoPostgres is returned when no PostgreSQL server binaries are installed.
var ErrNoPostgres = errors.New("postgresql binaries (initdb, pg_ctl) not found: install the Debian package postgresql")

// Postgres is a throw-away PostgreSQL cluster on a loopback port, from the Debian package's binaries: initdb into a
// temporary directory, pg_ctl to start and stop it. initdb refuses to run as root, so as root every server-side
// command runs as the package's "postgres" system user, who owns the directory. TCP connections authenticate with
// a password (SCRAM), as on a packaged server; the superuser's is random and in URL.
type Postgres struct {
	bin      string // directory of initdb, pg_ctl, pg_dump
	root     string // temporary directory: data/, the socket and the log
	port     int
	cred     *syscall.Credential
	password string
}

// PostgresBinDir finds the directory of the PostgreSQL server binaries: that of initdb on PATH (Debian puts only
// client wrappers on PATH, so usually none), else the newest /usr/lib/postgresql/<version>/bin.
func PostgresBinDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		return filepath.Dir(p), nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) == 0 {
		return "", ErrNoPostgres
	}
	// Newest major version first: compare the version directory numerically.
	version := func(p string) int {
		v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(p))))
		return v
	}
	sort.Slice(matches, func(i, j int) bool { return version(matches[i]) > version(matches[j]) })
	return filepath.Dir(matches[0]), nil
}

// StartPostgres initialises a cluster in a new temporary directory and starts it on a free loopback port. Stop
// removes everything again.
func StartPostgres(ctx context.Context) (_ *Postgres, err error) {
	bin, err := PostgresBinDir()
	if err != nil {
		return nil, err
	}
	base := os.TempDir()
	if os.Geteuid() == 0 && !traversableByAll(base) {
		// The postgres user must reach its directory: a private $TMPDIR of root's would lock it out.
		base = "/tmp"
	}
	root, err := os.MkdirTemp(base, "blindfold-pg-")
	if err != nil {
		return nil, fmt.Errorf("create postgresql directory: %w", err)
	}
	pw := make([]byte, 12)
	_, _ = rand.Read(pw)
	p := &Postgres{bin: bin, root: root, password: hex.EncodeToString(pw)}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(root)
		}
	}()
	if os.Geteuid() == 0 {
		if p.cred, err = postgresUser(); err != nil {
			return nil, err
		}
		if err := os.Chown(root, int(p.cred.Uid), int(p.cred.Gid)); err != nil {
			return nil, fmt.Errorf("hand %s to the postgres user: %w", root, err)
		}
	}
	// --no-sync and fsync=off: the cluster lives for one run and PostgreSQL itself is never crashed, so durability
	// against power loss buys nothing here and costs seconds on a shared disk.
	pwFile := filepath.Join(root, "pwfile")
	if err := os.WriteFile(pwFile, []byte(p.password+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("write superuser password file: %w", err)
	}
	if p.cred != nil {
		if err := os.Chown(pwFile, int(p.cred.Uid), int(p.cred.Gid)); err != nil {
			return nil, fmt.Errorf("hand the password file to the postgres user: %w", err)
		}
	}
	out, err := p.run(ctx, "initdb", "-D", p.dataDir(), "-U", "postgres", "--pwfile", pwFile,
		"--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--no-locale", "--no-sync")
	_ = os.Remove(pwFile)
	if err != nil {
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	if p.port, err = freePort(); err != nil {
		return nil, err
	}
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s -c fsync=off -c max_connections=300", p.port, p.root)
	if out, err := p.run(ctx, "pg_ctl", "-D", p.dataDir(), "-l", p.LogFile(), "-o", opts, "-w", "-t", "60", "start"); err != nil {
		return nil, fmt.Errorf("pg_ctl start: %w\n%s\n%s", err, out, tailFile(p.LogFile(), 4<<10))
	}
	return p, nil
}

// traversableByAll reports whether every directory from / down to dir lets other users through (o+x).
func traversableByAll(dir string) bool {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	for {
		fi, err := os.Stat(dir)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return false
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return true
		}
		dir = parent
	}
}

// postgresUser is the credential of the "postgres" system user that the Debian package creates.
func postgresUser() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, and initdb refuses root: no postgres user to run it as (install the postgresql package): %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("postgres user id %q: %w", u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("postgres group id %q: %w", u.Gid, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func (p *Postgres) dataDir() string { return filepath.Join(p.root, "data") }

// LogFile is the server's log.
func (p *Postgres) LogFile() string { return filepath.Join(p.root, "postgres.log") }

// Addr is the server's host:port.
func (p *Postgres) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)) }

// Port is the server's TCP port.
func (p *Postgres) Port() int { return p.port }

// URL is a postgres:// URL of database db as the superuser (password authentication, no TLS).
func (p *Postgres) URL(db string) string {
	return "postgres://postgres:" + p.password + "@" + p.Addr() + "/" + db + "?sslmode=disable"
}

// clientEnv is the environment of pg_dump and psql: the superuser's password.
func (p *Postgres) clientEnv() []string { return append(os.Environ(), "PGPASSWORD="+p.password) }

// Dump returns pg_dump's plain-SQL dump of database db: every table, every row.
func (p *Postgres) Dump(ctx context.Context, db string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(p.bin, "pg_dump"), "-h", "127.0.0.1", "-p", strconv.Itoa(p.port),
		"-U", "postgres", "-d", db, "--no-owner")
	cmd.Env = p.clientEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("pg_dump %s: %w: %s", db, err, stderr.String())
	}
	return out, nil
}

// Exec runs SQL in database db with psql as the superuser and returns psql's unaligned, tuples-only output.
func (p *Postgres) Exec(ctx context.Context, db, sql string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(p.bin, "psql"), "-h", "127.0.0.1", "-p", strconv.Itoa(p.port),
		"-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql)
	cmd.Env = p.clientEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("psql: %w: %s", err, out)
	}
	return string(out), nil
}

// Running reports whether the server's process still runs (its pid file names a live process).
func (p *Postgres) Running() bool {
	b, err := os.ReadFile(filepath.Join(p.dataDir(), "postmaster.pid"))
	if err != nil {
		return false
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	pid, err := strconv.Atoi(string(bytes.TrimSpace(line)))
	if err != nil || pid <= 0 {
		return false
	}
	return syscall.Kill(pid, 0) == nil
}

// Stop shuts the server down (fast mode: open sessions are cut) and removes its directory.
func (p *Postgres) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var errs []error
	if p.Running() {
		if out, err := p.run(ctx, "pg_ctl", "-D", p.dataDir(), "-m", "fast", "-w", "-t", "50", "stop"); err != nil {
			errs = append(errs, fmt.Errorf("pg_ctl stop: %w\n%s", err, out))
		}
	}
	if err := os.RemoveAll(p.root); err != nil {
		errs = append(errs, fmt.Errorf("remove postgresql directory: %w", err))
	}
	return errors.Join(errs...)
}

// run runs a server-side PostgreSQL command, as the postgres user when this process is root.
func (p *Postgres) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(p.bin, name), args...)
	cmd.Dir = p.root
	if p.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
		cmd.Env = append(os.Environ(), "HOME="+p.root)
	}
	// pg_ctl start leaves the server running with our stdout as its own unless told otherwise (-l): CombinedOutput
	// would then wait for the server to exit. -l is always given above.
	return cmd.CombinedOutput()
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tailFile returns the last max bytes of a file, for error messages.
func tailFile(path string, max int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}
