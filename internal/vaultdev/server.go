package vaultdev

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/helper/namespace"
	vaulthttp "github.com/hashicorp/vault/http"
	"github.com/hashicorp/vault/internalshared/configutil"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/hashicorp/vault/sdk/physical"
	"github.com/hashicorp/vault/sdk/physical/file"
	"github.com/hashicorp/vault/sdk/physical/inmem"
	"github.com/hashicorp/vault/vault"
)

// DefaultTransitMount is the path Transit is mounted at unless Config says otherwise.
const DefaultTransitMount = "transit"

// DefaultKVMount is the path a KV version 2 secrets engine is mounted at
// unless Config says otherwise (Vault's own dev mode uses the same path).
const DefaultKVMount = "secret"

// stateFile holds the unseal key and root token of a file-backed server, so
// that a restart over the same directory unseals itself and keeps its keys.
const stateFile = "vaultdev-state.json"

// ErrNotLoopback is returned for a listen address that is not on loopback.
var ErrNotLoopback = errors.New("vaultdev: listen address must be on loopback")

// Config configures a Server. The zero value is a usable in-memory server
// on a random loopback port with a generated root token.
type Config struct {
	// Addr is the host:port to listen on; the host must be a loopback IP or
	// "localhost". Empty means 127.0.0.1:0 (a free port).
	Addr string
	// RootToken, when set, is the ID of the root token clients use, so that
	// a restarted server accepts the same token. Empty means a generated one.
	RootToken string
	// TransitMount is where Transit is mounted; empty means DefaultTransitMount.
	TransitMount string
	// KVMount is where a KV version 2 engine is mounted (Blindfold's shared
	// key store); empty means DefaultKVMount.
	KVMount string
	// StorageDir, when set, selects Vault's file storage in that directory
	// instead of memory; the unseal key is kept there too, so a restart over
	// the same directory keeps Transit keys and tokens.
	StorageDir string
	// TLSDir, when set, makes the server speak HTTPS with a self-signed
	// loopback certificate kept in that directory (created on first use, so
	// a restart keeps it); clients trust Info.CACert.
	TLSDir string
	// Logger receives Vault's logs; nil means warnings and errors on stderr.
	Logger hclog.Logger
}

// Server is a running Vault with Transit mounted.
type Server struct {
	core   *vault.Core
	http   *http.Server
	addr   string
	token  string
	mount  string
	kv     string
	caCert string

	serveDone chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// Info is what a started server tells its clients; vaultdev prints it as JSON.
type Info struct {
	Addr         string `json:"addr"`
	Token        string `json:"token"`
	TransitMount string `json:"transit_mount"`
	KVMount      string `json:"kv_mount"`
	// CACert is the PEM file to trust for an HTTPS server; empty for HTTP.
	CACert string `json:"ca_cert,omitempty"`
}

type persisted struct {
	UnsealKey string `json:"unseal_key"`
	RootToken string `json:"root_token"`
}

// Start starts Vault, initialises and unseals it (or only unseals it when
// StorageDir already holds an initialised Vault), mounts Transit and serves
// Vault's HTTP API. It returns once the API answers requests.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	addr, err := loopbackAddr(cfg.Addr)
	if err != nil {
		return nil, err
	}
	if strings.Contains(cfg.RootToken, ".") {
		return nil, errors.New("vaultdev: root token must not contain '.' (Vault refuses custom token IDs with one)")
	}
	mount := strings.Trim(cfg.TransitMount, "/")
	if mount == "" {
		mount = DefaultTransitMount
	}
	kvMount := strings.Trim(cfg.KVMount, "/")
	if kvMount == "" {
		kvMount = DefaultKVMount
	}
	if kvMount == mount {
		return nil, fmt.Errorf("vaultdev: transit and kv mounts are both %q", mount)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = hclog.New(&hclog.LoggerOptions{Name: "vault", Level: hclog.Warn, Output: os.Stderr})
	}

	backend, err := newStorage(cfg.StorageDir, logger)
	if err != nil {
		return nil, err
	}
	reg := newBuiltins()
	core, err := vault.NewCore(&vault.CoreConfig{
		Physical:           backend,
		LogicalBackends:    reg.secrets,
		CredentialBackends: reg.credentials,
		BuiltinRegistry:    reg,
		DisableMlock:       true,
		Logger:             logger,
	})
	if err != nil {
		return nil, fmt.Errorf("create vault core: %w", err)
	}
	s := &Server{core: core, mount: mount, kv: kvMount, serveDone: make(chan struct{})}
	fail := func(err error) (*Server, error) {
		_ = core.ShutdownWait()
		return nil, err
	}

	rctx := namespace.RootContext(ctx)
	fresh := false
	if s.token, fresh, err = initOrUnseal(rctx, core, cfg.StorageDir); err != nil {
		return fail(err)
	}
	if cfg.RootToken != "" && cfg.RootToken != s.token {
		// A generated token of a fresh Vault is known to no one, so it goes;
		// a persisted one may still be in some client's hands, so it stays.
		if err := s.adoptRootToken(rctx, cfg.RootToken, fresh); err != nil {
			return fail(err)
		}
		if cfg.StorageDir != "" {
			if err := updateStateToken(cfg.StorageDir, s.token); err != nil {
				return fail(err)
			}
		}
	}
	if err := s.mountEngine(rctx, s.mount, "transit", nil, "blindfold key-encryption keys"); err != nil {
		return fail(err)
	}
	if err := s.mountEngine(rctx, s.kv, "kv", map[string]interface{}{"version": "2"}, "blindfold shared key store"); err != nil {
		return fail(err)
	}
	if err := s.waitKV(rctx); err != nil {
		return fail(err)
	}

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fail(fmt.Errorf("listen on %s: %w", addr, err))
	}
	s.addr = "http://" + ln.Addr().String()
	if cfg.TLSDir != "" {
		cert, caPath, err := loadOrCreateCert(cfg.TLSDir)
		if err != nil {
			ln.Close()
			return fail(err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		s.addr = "https://" + ln.Addr().String()
		s.caCert = caPath
	}
	s.http = &http.Server{
		Handler: vaulthttp.Handler.Handler(&vault.HandlerProperties{
			Core:           core,
			ListenerConfig: &configutil.Listener{Type: "tcp", Address: ln.Addr().String()},
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          logger.StandardLogger(nil),
	}
	go func() {
		defer close(s.serveDone)
		_ = s.http.Serve(ln)
	}()
	return s, nil
}

// Addr is the base URL of Vault's HTTP API, e.g. http://127.0.0.1:8200
// (https with Config.TLSDir).
func (s *Server) Addr() string { return s.addr }

// Token is a root token.
func (s *Server) Token() string { return s.token }

// TransitMount is the path Transit is mounted at.
func (s *Server) TransitMount() string { return s.mount }

// KVMount is the path the KV version 2 engine is mounted at.
func (s *Server) KVMount() string { return s.kv }

// CACert is the PEM file clients trust for HTTPS; empty for HTTP.
func (s *Server) CACert() string { return s.caCert }

// Info returns what clients need to reach the server.
func (s *Server) Info() Info {
	return Info{Addr: s.addr, Token: s.token, TransitMount: s.mount, KVMount: s.kv, CACert: s.caCert}
}

// Close stops serving, waiting up to ten seconds for requests in flight, and
// shuts Vault down, flushing file storage. It is safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		httpErr := s.http.Shutdown(ctx)
		<-s.serveDone
		s.closeErr = errors.Join(httpErr, s.core.ShutdownWait())
	})
	return s.closeErr
}

func loopbackAddr(addr string) (string, error) {
	if addr == "" {
		return "127.0.0.1:0", nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("parse listen address %q: %w", addr, err)
	}
	if host == "localhost" {
		return net.JoinHostPort("127.0.0.1", port), nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return "", fmt.Errorf("%w: %q", ErrNotLoopback, addr)
	}
	return addr, nil
}

func newStorage(dir string, logger hclog.Logger) (physical.Backend, error) {
	if dir == "" {
		b, err := inmem.NewInmem(nil, logger)
		if err != nil {
			return nil, fmt.Errorf("create in-memory storage: %w", err)
		}
		return b, nil
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		return nil, fmt.Errorf("create storage directory: %w", err)
	}
	b, err := file.NewFileBackend(map[string]string{"path": filepath.Join(dir, "data")}, logger)
	if err != nil {
		return nil, fmt.Errorf("create file storage in %s: %w", dir, err)
	}
	return b, nil
}

// initOrUnseal initialises Vault with one Shamir key share, or, for storage
// that is already initialised, unseals it with the key saved beside it. It
// returns the root token and whether Vault was initialised just now.
func initOrUnseal(ctx context.Context, core *vault.Core, dir string) (token string, fresh bool, err error) {
	inited, err := core.Initialized(ctx)
	if err != nil {
		return "", false, fmt.Errorf("check vault initialisation: %w", err)
	}
	if inited {
		st, err := readState(dir)
		if err != nil {
			return "", false, err
		}
		key, err := base64.StdEncoding.DecodeString(st.UnsealKey)
		if err != nil {
			return "", false, fmt.Errorf("decode unseal key in %s: %w", filepath.Join(dir, stateFile), err)
		}
		if err := unseal(core, key); err != nil {
			return "", false, err
		}
		return st.RootToken, false, nil
	}

	res, err := core.Initialize(ctx, &vault.InitParams{
		BarrierConfig: &vault.SealConfig{SecretShares: 1, SecretThreshold: 1},
	})
	if err != nil {
		return "", false, fmt.Errorf("initialise vault: %w", err)
	}
	if dir != "" {
		st := persisted{UnsealKey: base64.StdEncoding.EncodeToString(res.SecretShares[0]), RootToken: res.RootToken}
		if err := writeState(dir, st); err != nil {
			return "", false, err
		}
	}
	if err := unseal(core, res.SecretShares[0]); err != nil {
		return "", false, err
	}
	return res.RootToken, true, nil
}

func unseal(core *vault.Core, key []byte) error {
	// Unseal zeroes what it is given.
	k := append([]byte(nil), key...)
	ok, err := core.Unseal(k)
	if err != nil {
		return fmt.Errorf("unseal vault: %w", err)
	}
	if !ok || core.Sealed() {
		return errors.New("unseal vault: still sealed after the only key share")
	}
	return nil
}

// adoptRootToken creates a root token with the chosen ID, as `vault server
// -dev-root-token-id` does, and makes it the server's token, revoking the
// previous one when revokeOld is set.
func (s *Server) adoptRootToken(ctx context.Context, id string, revokeOld bool) error {
	resp, err := s.core.HandleRequest(ctx, &logical.Request{
		Operation:   logical.UpdateOperation,
		ClientToken: s.token,
		Path:        "auth/token/create",
		Data: map[string]interface{}{
			"id":                id,
			"policies":          []string{"root"},
			"no_parent":         true,
			"no_default_policy": true,
		},
	})
	err = requestErr(resp, err)
	if err != nil {
		return fmt.Errorf("create root token with the chosen id: %w", err)
	}
	if resp == nil || resp.Auth == nil {
		return errors.New("create root token with the chosen id: no auth in response")
	}
	old := s.token
	s.token = resp.Auth.ClientToken
	if !revokeOld {
		return nil
	}
	if _, err := s.core.HandleRequest(ctx, &logical.Request{
		Operation:   logical.UpdateOperation,
		ClientToken: old,
		Path:        "auth/token/revoke-self",
	}); err != nil {
		return fmt.Errorf("revoke generated root token: %w", err)
	}
	return nil
}

// mountEngine mounts a secrets engine of type typ at path unless it is
// already there (a restarted file-backed server keeps its mounts).
func (s *Server) mountEngine(ctx context.Context, path, typ string, options map[string]interface{}, desc string) error {
	resp, err := s.core.HandleRequest(ctx, &logical.Request{
		Operation:   logical.ReadOperation,
		ClientToken: s.token,
		Path:        "sys/mounts",
	})
	err = requestErr(resp, err)
	if err != nil {
		return fmt.Errorf("list vault mounts: %w", err)
	}
	if m, ok := resp.Data[path+"/"].(map[string]interface{}); ok {
		if m["type"] != typ {
			return fmt.Errorf("mount %s at %q: path holds a %v engine", typ, path, m["type"])
		}
		return nil
	}
	data := map[string]interface{}{"type": typ, "description": desc}
	if options != nil {
		data["options"] = options
	}
	resp, err = s.core.HandleRequest(ctx, &logical.Request{
		Operation:   logical.UpdateOperation,
		ClientToken: s.token,
		Path:        "sys/mounts/" + path,
		Data:        data,
	})
	err = requestErr(resp, err)
	if err != nil {
		return fmt.Errorf("mount %s at %q: %w", typ, path, err)
	}
	return nil
}

// waitKV waits until the KV version 2 engine answers: a new v2 mount runs a
// short upgrade first and refuses requests meanwhile.
func (s *Server) waitKV(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := s.core.HandleRequest(ctx, &logical.Request{
			Operation:   logical.ReadOperation,
			ClientToken: s.token,
			Path:        s.kv + "/config",
		})
		err = requestErr(resp, err)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kv engine at %q not ready: %w", s.kv, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// requestErr prefers the error a Vault response carries, which names the
// cause, over the generic error HandleRequest returns beside it.
func requestErr(resp *logical.Response, err error) error {
	if resp != nil && resp.IsError() {
		return resp.Error()
	}
	return err
}

func readState(dir string) (persisted, error) {
	var st persisted
	if dir == "" {
		return st, errors.New("in-memory vault is already initialised")
	}
	path := filepath.Join(dir, stateFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return st, fmt.Errorf("read vaultdev state (storage without it cannot be unsealed): %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("parse vaultdev state %s: %w", path, err)
	}
	if st.UnsealKey == "" || st.RootToken == "" {
		return st, fmt.Errorf("parse vaultdev state %s: unseal key or root token missing", path)
	}
	return st, nil
}

func writeState(dir string, st persisted) error {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode vaultdev state: %w", err)
	}
	return WriteFileAtomic(filepath.Join(dir, stateFile), append(b, '\n'), 0o600)
}

func updateStateToken(dir, token string) error {
	st, err := readState(dir)
	if err != nil {
		return err
	}
	st.RootToken = token
	return writeState(dir, st)
}

// WriteFileAtomic writes data to path through a temporary file and a rename,
// so a reader never sees a partial file.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
