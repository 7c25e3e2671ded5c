package kmsdev

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/nsmithuk/local-kms/src"
	"github.com/nsmithuk/local-kms/src/config"
	"github.com/nsmithuk/local-kms/src/data"
)

// Defaults of Config.
const (
	DefaultRegion    = "eu-west-2"
	DefaultAccountID = "111122223333"
)

// Config configures a server.
type Config struct {
	// Addr is the loopback host:port to listen on; port 0 picks a free one.
	Addr string
	// DataDir is where local-kms keeps its leveldb database (the keys). Required: a restart on the same directory keeps them.
	DataDir string
	// Region and AccountID shape the key ARNs (defaults DefaultRegion and DefaultAccountID).
	Region, AccountID string
}

// Info is what a started server reports, as the ready line of the kmsdev command.
type Info struct {
	// Endpoint is the base URL to give an AWS SDK client, e.g. http://127.0.0.1:41234.
	Endpoint string `json:"endpoint"`
	// Region and AccountID are those of the key ARNs.
	Region    string `json:"region"`
	AccountID string `json:"account_id"`
}

// Server is a running local-kms.
type Server struct {
	info Info
	srv  *http.Server
	db   *data.Database
	done chan error
	once sync.Once
}

// started guards the process-wide configuration of local-kms (package variables): one server per process.
var started bool

var mu sync.Mutex

// Start listens on cfg.Addr (loopback only) and serves local-kms until Close.
func Start(cfg Config) (*Server, error) {
	mu.Lock()
	defer mu.Unlock()
	if started {
		return nil, errors.New("kmsdev: one server per process (local-kms keeps its configuration in package variables)")
	}
	if cfg.DataDir == "" {
		return nil, errors.New("kmsdev: data directory is required")
	}
	host, _, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("kmsdev: address %q: %w", cfg.Addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("kmsdev: address %q is not loopback; this is a test fixture", cfg.Addr)
	}
	if cfg.Region == "" {
		cfg.Region = DefaultRegion
	}
	if cfg.AccountID == "" {
		cfg.AccountID = DefaultAccountID
	}
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("kmsdev: data directory: %w", err)
	}
	config.AWSRegion, config.AWSAccountId, config.DatabasePath = cfg.Region, cfg.AccountID, dir
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("kmsdev: listen: %w", err)
	}
	db, err := openDB(dir)
	if err != nil {
		ln.Close()
		return nil, err
	}
	s := &Server{
		info: Info{Endpoint: "http://" + ln.Addr().String(), Region: cfg.Region, AccountID: cfg.AccountID},
		db:   db,
		done: make(chan error, 1),
	}
	s.srv = &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { src.HandleRequest(w, r, db) }),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { s.done <- s.srv.Serve(ln) }()
	started = true
	return s, nil
}

// openDB opens the leveldb database; local-kms panics on failure, which becomes an error here.
func openDB(dir string) (db *data.Database, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("kmsdev: open database in %s: %v", dir, r)
		}
	}()
	return data.NewDatabase(dir), nil
}

// Info describes the running server.
func (s *Server) Info() Info { return s.info }

// Close stops serving and closes the database, so another process can open the same directory.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err = s.srv.Shutdown(ctx)
		if serr := <-s.done; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, serr)
		}
		s.db.Close()
	})
	return err
}
