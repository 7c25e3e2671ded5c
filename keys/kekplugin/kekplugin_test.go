package kekplugin_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/blindfold-dev/blindfold/internal/testenv"
	"github.com/blindfold-dev/blindfold/keys"
	"github.com/blindfold-dev/blindfold/keys/kekplugin"
	pb "github.com/blindfold-dev/blindfold/keys/kekplugin/kekpluginpb"
)

// serveBackend serves b on a fresh unix socket until the test ends and returns the socket path.
func serveBackend(t *testing.T, b kekplugin.Backend, opts ...kekplugin.ServeOption) string {
	t.Helper()
	sock := filepath.Join(socketDir(t), "kek.sock")
	lis, err := kekplugin.ListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, lis, b, opts...)
	return sock
}

func serve(t *testing.T, lis net.Listener, b kekplugin.Backend, opts ...kekplugin.ServeOption) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- kekplugin.Serve(ctx, lis, b, opts...) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
}

func localKEK(t *testing.T) *keys.LocalKEK {
	t.Helper()
	k, err := keys.NewLocalKEK(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func dial(t *testing.T, cfg kekplugin.Config) *kekplugin.KEK {
	t.Helper()
	k, err := kekplugin.Dial(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

var adA, adB = keys.KeysetAD("a", map[string]string{"00000001": "2026-01-01T00:00:00Z"}), keys.KeysetAD("b", nil)

func TestRoundTripAndScopeBinding(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sock := serveBackend(t, kekplugin.FromKEK(localKEK(t)), kekplugin.WithInfo("local", "test"))
	k := dial(t, kekplugin.Config{Address: sock})
	if h, err := k.Health(ctx); err != nil || h != (kekplugin.HealthInfo{Name: "local", Version: "test"}) {
		t.Fatalf("Health = %+v, %v", h, err)
	}
	ct, err := k.EncryptWithContext(ctx, []byte("keyset"), adA)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := k.DecryptWithContext(ctx, ct, adA)
	if err != nil || string(pt) != "keyset" {
		t.Fatalf("unwrap = %q, %v", pt, err)
	}
	// Another scope's associated data: rejected, not "could not decide".
	if _, err := k.DecryptWithContext(ctx, ct, adB); !errors.Is(err, keys.ErrUnwrap) || !strings.Contains(err.Error(), sock) {
		t.Fatalf("unwrap under another scope = %v, want ErrUnwrap naming %s", err, sock)
	}
	// Associated data that is not a keyset's never reaches the plugin.
	if _, err := k.EncryptWithContext(ctx, []byte("x"), []byte("not a keyset")); err == nil {
		t.Fatal("wrap with foreign associated data succeeded")
	}
}

// TestServeChecksScope: a request whose scope field disagrees with its associated data (a buggy or hostile client) is
// refused before the backend sees it, so a backend may pick its key by the scope field.
func TestServeChecksScope(t *testing.T) {
	t.Parallel()
	sock := serveBackend(t, kekplugin.FromKEK(localKEK(t)))
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := pb.NewKEKPluginClient(conn)
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		scope string
		ad    []byte
	}{
		{"other scope", "b", adA},
		{"empty scope", "", adA},
		{"foreign ad", "a", []byte("anything")},
		{"invalid scope", "../etc", keys.KeysetAD("../etc", nil)},
	} {
		_, werr := c.Wrap(ctx, &pb.WrapRequest{Scope: tc.scope, Plaintext: []byte("k"), AssociatedData: tc.ad})
		_, uerr := c.Unwrap(ctx, &pb.UnwrapRequest{Scope: tc.scope, Ciphertext: []byte("k"), AssociatedData: tc.ad})
		if status.Code(werr) != codes.InvalidArgument || status.Code(uerr) != codes.InvalidArgument {
			t.Errorf("%s: wrap %v, unwrap %v; want InvalidArgument", tc.name, werr, uerr)
		}
	}
}

// statusBackend fails every call with err: a plugin whose key service answers in a given way.
type statusBackend struct{ err error }

func (b statusBackend) Wrap(context.Context, string, []byte, []byte) ([]byte, error) {
	return nil, b.err
}
func (b statusBackend) Unwrap(context.Context, string, []byte, []byte) ([]byte, error) {
	return nil, b.err
}

// TestStatusContract checks both halves of the contract: the status Serve gives a backend's error, and what the client
// makes of it.
func TestStatusContract(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		err      error
		code     codes.Code
		rejected bool // client: wraps keys.ErrUnwrap
		missing  bool // client: wraps keys.ErrKEKKeyMissing
	}{
		{"rejected", kekplugin.ErrRejected, codes.InvalidArgument, true, false},
		{"key destroyed", kekplugin.ErrKeyNotFound, codes.NotFound, false, true},
		{"plain error", errors.New("kms: connection reset"), codes.Unavailable, false, false},
		{"deadline", context.DeadlineExceeded, codes.DeadlineExceeded, false, false},
		{"own status failed precondition", status.Error(codes.FailedPrecondition, "key disabled... for this ciphertext"), codes.FailedPrecondition, true, false},
		{"own status permission denied", status.Error(codes.PermissionDenied, "iam"), codes.PermissionDenied, false, false},
		{"own status internal", status.Error(codes.Internal, "bug"), codes.Internal, false, false},
		{"own status resource exhausted", status.Error(codes.ResourceExhausted, "quota"), codes.ResourceExhausted, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sock := serveBackend(t, statusBackend{tc.err})
			k, err := kekplugin.New(kekplugin.Config{Address: sock})
			if err != nil {
				t.Fatal(err)
			}
			defer k.Close()
			_, err = k.DecryptWithContext(ctx, []byte("ct"), adA)
			var se interface{ GRPCStatus() *status.Status }
			if !errors.As(err, &se) && !tc.rejected && !tc.missing {
				t.Fatalf("unwrap error %v carries no status", err)
			}
			if !tc.rejected && !tc.missing && status.Code(err) != tc.code {
				t.Errorf("unwrap status %v, want %v", status.Code(err), tc.code)
			}
			if errors.Is(err, keys.ErrUnwrap) != tc.rejected || errors.Is(err, keys.ErrKEKKeyMissing) != tc.missing {
				t.Errorf("unwrap = %v: rejected %v missing %v, want %v %v", err, errors.Is(err, keys.ErrUnwrap), errors.Is(err, keys.ErrKEKKeyMissing), tc.rejected, tc.missing)
			}
			if !strings.Contains(err.Error(), sock) {
				t.Errorf("unwrap error %q does not name the plugin", err)
			}
			// A wrap is never "rejected": the keyset is not stored, and the manager reports the scope unavailable.
			_, err = k.EncryptWithContext(ctx, []byte("pt"), adA)
			if err == nil || errors.Is(err, keys.ErrUnwrap) {
				t.Errorf("wrap = %v, want an error that is not ErrUnwrap", err)
			}
		})
	}
}

func TestNewAddresses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		addr string
		tls  kekplugin.TLS
		ok   bool
	}{
		{"unix:///run/blindfold/kek.sock", kekplugin.TLS{}, true},
		{"unix:/run/kek.sock", kekplugin.TLS{}, true},
		{"/run/kek.sock", kekplugin.TLS{}, true},
		{"127.0.0.1:7070", kekplugin.TLS{}, true},
		{"[::1]:7070", kekplugin.TLS{}, true},
		{"localhost:7070", kekplugin.TLS{}, true},
		{"", kekplugin.TLS{}, false},
		{"unix:relative.sock", kekplugin.TLS{}, false},
		{"unix://", kekplugin.TLS{}, false},
		{"kek.internal:7070", kekplugin.TLS{}, false}, // plaintext keysets over the network
		{"10.0.0.7:7070", kekplugin.TLS{}, false},
		{"kek.internal:7070", kekplugin.TLS{ServerName: "kek.internal"}, true},
		{"nohostport", kekplugin.TLS{}, false},
		{"127.0.0.1:7070", kekplugin.TLS{ClientCert: "c.pem"}, false}, // cert without key
	} {
		k, err := kekplugin.New(kekplugin.Config{Address: tc.addr, TLS: tc.tls})
		if (err == nil) != tc.ok {
			t.Errorf("New(%q, %+v) = %v, want ok %v", tc.addr, tc.tls, err, tc.ok)
		}
		if err == nil {
			k.Close()
		}
	}
}

// TestDialNotRunning: a plugin that is not there fails Dial within the timeout, with an error naming it.
func TestDialNotRunning(t *testing.T) {
	t.Parallel()
	sock := filepath.Join(socketDir(t), "absent.sock")
	start := time.Now()
	_, err := kekplugin.Dial(context.Background(), kekplugin.Config{Address: sock, Timeout: 300 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), sock) {
		t.Fatalf("Dial of an absent plugin = %v, want an error naming %s", err, sock)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Dial took %v; the timeout is 300ms", d)
	}
	if status.Code(err) != codes.DeadlineExceeded && status.Code(err) != codes.Unavailable {
		t.Errorf("Dial error status %v, want DeadlineExceeded or Unavailable", status.Code(err))
	}
}

// TestTLS serves the protocol on loopback TCP with mutual TLS.
func TestTLS(t *testing.T) {
	t.Parallel()
	pki := testenv.NewPKI(t)
	dir := t.TempDir()
	ca := pki.WriteCA(t, dir, "ca.pem")
	cert, key := pki.Client(t, "blindfold", "").Write(t, dir, "client.pem", "client-key.pem")
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serve(t, lis, kekplugin.FromKEK(localKEK(t)),
		kekplugin.WithServerOptions(grpc.Creds(credentials.NewTLS(pki.ServerTLS(pki.Server(t, "kek"), true)))))
	addr := lis.Addr().String()

	k := dial(t, kekplugin.Config{Address: addr, TLS: kekplugin.TLS{CACert: ca, ClientCert: cert, ClientKey: key}})
	ct, err := k.EncryptWithContext(context.Background(), []byte("keyset"), adA)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := k.DecryptWithContext(context.Background(), ct, adA); err != nil || string(pt) != "keyset" {
		t.Fatalf("unwrap over TLS = %q, %v", pt, err)
	}
	// Without a client certificate the plugin refuses the connection.
	if _, err := kekplugin.Dial(context.Background(), kekplugin.Config{Address: addr, TLS: kekplugin.TLS{CACert: ca}, Timeout: time.Second}); err == nil {
		t.Fatal("Dial without a client certificate succeeded")
	}
	// A plaintext client does not get an answer from a TLS plugin.
	if _, err := kekplugin.Dial(context.Background(), kekplugin.Config{Address: addr, Timeout: 300 * time.Millisecond}); err == nil {
		t.Fatal("plaintext Dial of a TLS plugin succeeded")
	}
}

func TestListenUnix(t *testing.T) {
	t.Parallel()
	dir := socketDir(t)
	sock := filepath.Join(dir, "kek.sock")
	lis, err := kekplugin.ListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v, %v; want mode 0600", fi, err)
	}
	// A socket that is being served is not taken over.
	if l2, err := kekplugin.ListenUnix(sock); err == nil {
		l2.Close()
		t.Fatal("ListenUnix took over a live socket")
	}
	// A stale socket (its server gone without removing it) is replaced.
	lis.(*net.UnixListener).SetUnlinkOnClose(false)
	lis.Close()
	lis, err = kekplugin.ListenUnix(sock)
	if err != nil {
		t.Fatalf("ListenUnix over a stale socket: %v", err)
	}
	lis.Close()
	// Something that is not a socket is never removed.
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := kekplugin.ListenUnix(file); err == nil {
		t.Fatal("ListenUnix replaced a regular file")
	}
}

// healthBackend reports its key service down.
type healthBackend struct{ kekplugin.Backend }

func (healthBackend) Health(context.Context) error { return errors.New("kms unreachable") }

func TestHealthChecker(t *testing.T) {
	t.Parallel()
	sock := serveBackend(t, healthBackend{kekplugin.FromKEK(localKEK(t))})
	_, err := kekplugin.Dial(context.Background(), kekplugin.Config{Address: sock})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "kms unreachable") || !strings.Contains(err.Error(), sock) {
		t.Fatalf("Dial of an unhealthy plugin = %v, want Unavailable naming the plugin and the cause", err)
	}
}

// FuzzNew: any configured address is either refused with an error or accepted without connecting; never a panic.
func FuzzNew(f *testing.F) {
	for _, s := range []string{"unix:///run/kek.sock", "/run/kek.sock", "127.0.0.1:7070", "[::1]:1", "unix:", "host:port:x", "%", "unix://\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		k, err := kekplugin.New(kekplugin.Config{Address: addr})
		if err == nil {
			k.Close()
		}
	})
}

// TestServeListenerFails: Serve returns the listener's failure (not nil) when it was not asked to stop.
func TestServeListenerFails(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lis.Close()
	if err := kekplugin.Serve(context.Background(), lis, kekplugin.FromKEK(localKEK(t))); err == nil {
		t.Fatal("Serve on a closed listener returned nil")
	}
	if err := kekplugin.Serve(context.Background(), lis, nil); err == nil {
		t.Fatal("Serve with a nil backend returned nil")
	}
}
