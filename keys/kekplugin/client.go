package kekplugin

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/blindfold-dev/blindfold/keys"
	pb "github.com/blindfold-dev/blindfold/keys/kekplugin/kekpluginpb"
)

// DefaultTimeout bounds each call to the plugin when Config.Timeout is 0.
const DefaultTimeout = 5 * time.Second

// maxMessage bounds what the client accepts from a plugin. A wrapped keyset is a few hundred bytes per data key.
const maxMessage = 4 << 20

// Config says where the plugin listens and how to reach it.
type Config struct {
	// Address is the plugin's endpoint: "unix:///run/blindfold/kek.sock" or an absolute path (a unix socket, the
	// recommended form), or host:port on loopback ("127.0.0.1:7070"). A TCP address that is not loopback needs TLS:
	// the plugin sees plaintext keysets.
	Address string
	// TLS, when any field is set, makes the connection TLS (mutual TLS with ClientCert and ClientKey).
	TLS TLS
	// Timeout bounds each call (0: DefaultTimeout). The key manager also passes its own deadlines.
	Timeout time.Duration
}

// TLS configures TLS to the plugin. All paths are PEM files.
type TLS struct {
	// CACert verifies the plugin's certificate (empty: the system roots).
	CACert string
	// ClientCert and ClientKey are presented to the plugin (mutual TLS); they go together.
	ClientCert, ClientKey string
	// ServerName is the name verified in the plugin's certificate (empty: the address's host).
	ServerName string
}

func (t TLS) enabled() bool { return t != TLS{} }

// KEK is a keys.KEK served by a plugin over gRPC. It is safe for concurrent use.
type KEK struct {
	addr    string // as configured, for error messages
	conn    *grpc.ClientConn
	client  pb.KEKPluginClient
	timeout time.Duration
	info    HealthInfo // what the plugin said in Dial's Health call
}

var _ keys.KEK = (*KEK)(nil)

// HealthInfo is what a healthy plugin says about itself.
type HealthInfo struct {
	Name, Version string
}

// New returns a KEK for the plugin cfg names. It does not connect: the first call (or Health) does, and a plugin
// that is down or restarting is retried on later calls. Use Dial to check the plugin answers first.
func New(cfg Config) (*KEK, error) {
	target, host, unix, err := parseAddress(cfg.Address)
	if err != nil {
		return nil, err
	}
	var creds credentials.TransportCredentials
	switch {
	case cfg.TLS.enabled():
		tc, err := cfg.TLS.config(host)
		if err != nil {
			return nil, fmt.Errorf("kek plugin %s: %w", cfg.Address, err)
		}
		creds = credentials.NewTLS(tc)
	case !unix && !isLoopback(host):
		return nil, fmt.Errorf("kek plugin address %q: a non-loopback address needs TLS (--kek-plugin-ca): the plugin receives plaintext keysets", cfg.Address)
	default:
		creds = insecure.NewCredentials()
	}
	timeout := cfg.Timeout
	if timeout < 0 {
		return nil, fmt.Errorf("kek plugin %s: timeout must not be negative", cfg.Address)
	}
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	conn, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessage)),
		// A local plugin that restarts should be picked up within seconds, not after gRPC's default backoff of up to 2 min.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: timeout,
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("kek plugin %s: %w", cfg.Address, err)
	}
	return &KEK{addr: cfg.Address, conn: conn, client: pb.NewKEKPluginClient(conn), timeout: timeout}, nil
}

// Dial is New followed by a Health call, so a wrong address or a plugin that is not running fails at start with an
// error naming the plugin.
func Dial(ctx context.Context, cfg Config) (*KEK, error) {
	k, err := New(cfg)
	if err != nil {
		return nil, err
	}
	info, err := k.Health(ctx)
	if err != nil {
		_ = k.Close()
		return nil, err
	}
	k.info = info
	return k, nil
}

// Info is what the plugin reported about itself when Dial checked its health (zero for a KEK from New).
func (k *KEK) Info() HealthInfo { return k.info }

// Address is the plugin address as configured.
func (k *KEK) Address() string { return k.addr }

// Close closes the connection. The KEK must not be used afterwards.
func (k *KEK) Close() error { return k.conn.Close() }

// Health asks the plugin whether it can serve. Any error means it cannot; the error names the plugin.
func (k *KEK) Health(ctx context.Context) (HealthInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	// Wait for the connection (bounded by the timeout) so a plugin that is starting right now is not reported down.
	r, err := k.client.Health(ctx, &pb.HealthRequest{}, grpc.WaitForReady(true))
	if err != nil {
		return HealthInfo{}, k.callError("health", err)
	}
	return HealthInfo{Name: bound(r.GetName()), Version: bound(r.GetVersion())}, nil
}

// EncryptWithContext wraps a keyset with the plugin. associatedData must be a keyset's (keys.KeysetAD): the scope it names
// is sent along for plugins that keep a key per scope.
func (k *KEK) EncryptWithContext(ctx context.Context, plaintext, associatedData []byte) ([]byte, error) {
	scope, err := keys.ScopeOfKeysetAD(associatedData)
	if err != nil {
		return nil, fmt.Errorf("kek plugin %s: wrap: %w", k.addr, err)
	}
	ctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	r, err := k.client.Wrap(ctx, &pb.WrapRequest{Scope: scope, Plaintext: plaintext, AssociatedData: associatedData})
	if err != nil {
		return nil, k.callError("wrap", err)
	}
	if len(r.GetCiphertext()) == 0 {
		return nil, fmt.Errorf("kek plugin %s: wrap: the plugin returned an empty ciphertext", k.addr)
	}
	return r.GetCiphertext(), nil
}

// DecryptWithContext unwraps a keyset with the plugin. A rejection by the plugin (INVALID_ARGUMENT or FAILED_PRECONDITION)
// wraps keys.ErrUnwrap, NOT_FOUND wraps keys.ErrKEKKeyMissing, and anything else (the plugin unreachable, timed out,
// failing) is an error naming the plugin that wraps neither, so the key manager keeps serving cached keys and retries.
func (k *KEK) DecryptWithContext(ctx context.Context, ciphertext, associatedData []byte) ([]byte, error) {
	scope, err := keys.ScopeOfKeysetAD(associatedData)
	if err != nil {
		return nil, fmt.Errorf("kek plugin %s: unwrap: %w", k.addr, err)
	}
	ctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	r, err := k.client.Unwrap(ctx, &pb.UnwrapRequest{Scope: scope, Ciphertext: ciphertext, AssociatedData: associatedData})
	if err != nil {
		return nil, k.callError("unwrap", err)
	}
	return r.GetPlaintext(), nil
}

// callError applies the protocol's status contract (kekplugin.proto) to a failed call.
func (k *KEK) callError(op string, err error) error {
	st, _ := status.FromError(err)
	msg := bound(st.Message())
	switch st.Code() {
	case codes.InvalidArgument, codes.FailedPrecondition:
		if op == "unwrap" {
			return fmt.Errorf("%w: kek plugin %s rejected the keyset: %s", keys.ErrUnwrap, k.addr, msg)
		}
	case codes.NotFound:
		if op != "health" {
			return fmt.Errorf("%w: kek plugin %s: %s: %s", keys.ErrKEKKeyMissing, k.addr, op, msg)
		}
	}
	return fmt.Errorf("kek plugin %s: %s: %w", k.addr, op, err)
}

// parseAddress turns a configured address into a gRPC target. host is the TCP host ("" for unix sockets).
func parseAddress(addr string) (target, host string, unix bool, err error) {
	if addr == "" {
		return "", "", false, errors.New("kek plugin address is empty (--kek-plugin-address: unix:///path/to.sock or 127.0.0.1:PORT)")
	}
	path, isUnix := strings.CutPrefix(addr, "unix://")
	if !isUnix {
		path, isUnix = strings.CutPrefix(addr, "unix:")
	}
	if !isUnix && strings.HasPrefix(addr, "/") {
		path, isUnix = addr, true
	}
	if isUnix {
		if path == "" || !filepath.IsAbs(path) {
			return "", "", false, fmt.Errorf("kek plugin address %q: a unix socket needs an absolute path (unix:///run/blindfold/kek.sock)", addr)
		}
		return "unix://" + path, "", true, nil
	}
	h, port, err := net.SplitHostPort(addr)
	if err != nil || h == "" || port == "" {
		return "", "", false, fmt.Errorf("kek plugin address %q: want unix:///path/to.sock, an absolute socket path, or host:port", addr)
	}
	// passthrough: no DNS lookups for a loopback plugin; the address is dialled as given.
	return "passthrough:///" + addr, h, false, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (t TLS) config(host string) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if c.ServerName == "" {
		c.ServerName = host
	}
	if t.CACert != "" {
		pem, err := os.ReadFile(t.CACert)
		if err != nil {
			return nil, fmt.Errorf("read plugin ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("plugin ca %s: no PEM certificates", t.CACert)
		}
		c.RootCAs = pool
	}
	if (t.ClientCert == "") != (t.ClientKey == "") {
		return nil, errors.New("plugin client certificate and key go together")
	}
	if t.ClientCert != "" {
		cert, err := tls.LoadX509KeyPair(t.ClientCert, t.ClientKey)
		if err != nil {
			return nil, fmt.Errorf("load plugin client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// bound keeps text from a plugin short and printable before it reaches errors and logs.
func bound(s string) string {
	const max = 256
	s = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return '?'
	}, s)
	for i := range s {
		if i >= max {
			return s[:i] + "…"
		}
	}
	return s
}
