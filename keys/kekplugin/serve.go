package kekplugin

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindfold-dev/blindfold/keys"
	pb "github.com/blindfold-dev/blindfold/keys/kekplugin/kekpluginpb"
)

// Errors a Backend returns so that Serve answers with the status the protocol gives them. They are the keys package's
// sentinels, so any keys.KEK (through FromKEK) already returns them.
var (
	// ErrRejected: the ciphertext does not authenticate (wrong key, tampering, other associated data). Serve answers
	// INVALID_ARGUMENT; Blindfold reports a bad keyset.
	ErrRejected = keys.ErrUnwrap
	// ErrKeyNotFound: the backend has no key for the scope and never will again (it was destroyed). Serve answers
	// NOT_FOUND; Blindfold treats the scope as shredded. Never return it for a transient failure.
	ErrKeyNotFound = keys.ErrKEKKeyMissing
)

// Backend is what a plugin author implements: wrap and unwrap with the key service behind the plugin. ciphertext must be
// bound to associatedData (AEAD associated data, a KMS encryption context), which names the scope; scope is passed
// separately for backends that keep a key per scope. Unwrap returns an error wrapping ErrRejected when the ciphertext
// does not authenticate, ErrKeyNotFound when the scope's key was destroyed, and any other error when it could not decide
// (the key service unreachable): then Blindfold keeps its cached keys and retries.
type Backend interface {
	Wrap(ctx context.Context, scope string, plaintext, associatedData []byte) ([]byte, error)
	Unwrap(ctx context.Context, scope string, ciphertext, associatedData []byte) ([]byte, error)
}

// HealthChecker is implemented by backends that can tell whether their key service is reachable; Serve's Health calls
// it. Without it, Health answers OK whenever the plugin runs.
type HealthChecker interface {
	Health(ctx context.Context) error
}

// FromKEK serves a keys.KEK (any Tink AEAD with context) as a Backend, with the scope only in the associated data.
func FromKEK(k keys.KEK) Backend { return kekBackend{k} }

type kekBackend struct{ k keys.KEK }

func (b kekBackend) Wrap(ctx context.Context, _ string, pt, ad []byte) ([]byte, error) {
	return b.k.EncryptWithContext(ctx, pt, ad)
}

func (b kekBackend) Unwrap(ctx context.Context, _ string, ct, ad []byte) ([]byte, error) {
	return b.k.DecryptWithContext(ctx, ct, ad)
}

// ServeOption configures Serve.
type ServeOption func(*serveConfig)

type serveConfig struct {
	info    HealthInfo
	options []grpc.ServerOption
}

// WithInfo sets the name and version Health reports (they appear in Blindfold's logs).
func WithInfo(name, version string) ServeOption {
	return func(c *serveConfig) { c.info = HealthInfo{Name: name, Version: version} }
}

// WithServerOptions passes options to the gRPC server, e.g. grpc.Creds for TLS.
func WithServerOptions(opts ...grpc.ServerOption) ServeOption {
	return func(c *serveConfig) { c.options = append(c.options, opts...) }
}

// Serve answers the KEK plugin protocol on lis with b until ctx is done, then stops gracefully and returns nil. It
// checks every request before b sees it: the scope must be a valid scope name and the one the associated data names.
func Serve(ctx context.Context, lis net.Listener, b Backend, opts ...ServeOption) error {
	if b == nil {
		return errors.New("kekplugin: serve: nil backend")
	}
	var c serveConfig
	for _, o := range opts {
		o(&c)
	}
	srv := grpc.NewServer(append([]grpc.ServerOption{grpc.MaxRecvMsgSize(maxMessage)}, c.options...)...)
	pb.RegisterKEKPluginServer(srv, &server{b: b, info: c.info})
	serveDone, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-ctx.Done():
			srv.GracefulStop()
		case <-serveDone:
		}
	}()
	err := srv.Serve(lis)
	close(serveDone)
	<-stopped
	if ctx.Err() != nil {
		return nil
	}
	srv.Stop()
	return fmt.Errorf("kekplugin: serve: %w", err)
}

type server struct {
	pb.UnimplementedKEKPluginServer
	b    Backend
	info HealthInfo
}

func (s *server) Wrap(ctx context.Context, r *pb.WrapRequest) (*pb.WrapResponse, error) {
	if err := checkScope(r.GetScope(), r.GetAssociatedData()); err != nil {
		return nil, err
	}
	ct, err := s.b.Wrap(ctx, r.GetScope(), r.GetPlaintext(), r.GetAssociatedData())
	if err != nil {
		return nil, statusOf(ctx, "wrap", err)
	}
	return &pb.WrapResponse{Ciphertext: ct}, nil
}

func (s *server) Unwrap(ctx context.Context, r *pb.UnwrapRequest) (*pb.UnwrapResponse, error) {
	if err := checkScope(r.GetScope(), r.GetAssociatedData()); err != nil {
		return nil, err
	}
	pt, err := s.b.Unwrap(ctx, r.GetScope(), r.GetCiphertext(), r.GetAssociatedData())
	if err != nil {
		return nil, statusOf(ctx, "unwrap", err)
	}
	return &pb.UnwrapResponse{Plaintext: pt}, nil
}

func (s *server) Health(ctx context.Context, _ *pb.HealthRequest) (*pb.HealthResponse, error) {
	if h, ok := s.b.(HealthChecker); ok {
		if err := h.Health(ctx); err != nil {
			return nil, status.Errorf(codes.Unavailable, "backend unhealthy: %v", err)
		}
	}
	return &pb.HealthResponse{Name: s.info.Name, Version: s.info.Version}, nil
}

// checkScope enforces the scope-binding rule: the scope a backend may pick a key by is the one the associated data names.
func checkScope(scope string, ad []byte) error {
	named, err := keys.ScopeOfKeysetAD(ad)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "associated data: %v", err)
	}
	if named != scope {
		return status.Errorf(codes.InvalidArgument, "scope %q does not match the scope %q named in the associated data", bound(scope), named)
	}
	return nil
}

// statusOf maps a backend error to the protocol's status codes.
func statusOf(ctx context.Context, op string, err error) error {
	switch {
	case errors.Is(err, ErrRejected):
		return status.Errorf(codes.InvalidArgument, "%s: %v", op, err)
	case errors.Is(err, ErrKeyNotFound):
		return status.Errorf(codes.NotFound, "%s: %v", op, err)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded):
		return status.Errorf(codes.DeadlineExceeded, "%s: %v", op, err)
	case errors.Is(err, context.Canceled):
		return status.Errorf(codes.Canceled, "%s: %v", op, err)
	}
	if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
		return err // the backend chose a status itself
	}
	return status.Errorf(codes.Unavailable, "%s: %v", op, err)
}

// ListenUnix listens on a unix socket at path with mode 0600, so only the plugin's own user (the one Blindfold runs as)
// can connect: whoever can call the plugin can unwrap keysets. A stale socket left by a killed plugin is replaced; a
// socket another process still serves is not. Put the socket in a directory only that user can enter (0700) to close the
// moment between creating the socket and restricting its mode.
func ListenUnix(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("listen %s: exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("listen %s: another process serves this socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		lis.Close()
		return nil, fmt.Errorf("restrict socket %s: %w", path, err)
	}
	return lis, nil
}
