package proxy

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/codec/codectest"
)

// fakeUpstream is a gRPC server standing in for the Temporal frontend in fault tests (errors, shredded keys, shutdown
// timing), where the real server cannot be made to misbehave on cue. It records every request it receives, as it
// received it, and answers from per-method hooks (Unimplemented without one).
type fakeUpstream struct {
	addr string
	srv  *grpc.Server

	mu    sync.Mutex
	reqs  []recorded
	hooks map[string]func(ctx context.Context, req proto.Message) (proto.Message, error)
}

type recorded struct {
	method string
	req    proto.Message
	md     metadata.MD
}

func startFakeUpstream(t testing.TB) *fakeUpstream {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeUpstream{addr: lis.Addr().String(), hooks: map[string]func(context.Context, proto.Message) (proto.Message, error){}}
	f.srv = grpc.NewServer(grpc.UnaryInterceptor(recordingInterceptor(f)))
	workflowservice.RegisterWorkflowServiceServer(f.srv, workflowservice.UnimplementedWorkflowServiceServer{})
	operatorservice.RegisterOperatorServiceServer(f.srv, operatorservice.UnimplementedOperatorServiceServer{})
	go func() { _ = f.srv.Serve(lis) }()
	t.Cleanup(f.srv.Stop)
	return f
}

// recordingInterceptor records each request and answers it from f's hooks.
func recordingInterceptor(f *fakeUpstream) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		f.mu.Lock()
		f.reqs = append(f.reqs, recorded{method: info.FullMethod, req: proto.Clone(req.(proto.Message)), md: md})
		hook := f.hooks[info.FullMethod]
		f.mu.Unlock()
		if hook == nil {
			return handler(ctx, req)
		}
		return hook(ctx, req.(proto.Message))
	}
}

// on sets the answer to method (its short name, e.g. "QueryWorkflow" or "operator/ListSearchAttributes").
func (f *fakeUpstream) on(method string, hook func(ctx context.Context, req proto.Message) (proto.Message, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hooks[fullMethod(method)] = hook
}

func fullMethod(method string) string {
	if len(method) > 9 && method[:9] == "operator/" {
		return "/" + operatorServiceName + "/" + method[9:]
	}
	return workflowServicePath + method
}

func (f *fakeUpstream) received() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.reqs...)
}

// last returns the last request received for method, failing the test if there is none.
func (f *fakeUpstream) last(t *testing.T, method string) recorded {
	t.Helper()
	rs := f.received()
	for i := len(rs) - 1; i >= 0; i-- {
		if rs[i].method == fullMethod(method) {
			return rs[i]
		}
	}
	t.Fatalf("upstream received no %s", method)
	return recorded{}
}

// testProxy is a running proxy with a client connection to it.
type testProxy struct {
	srv    *Server
	conn   *grpc.ClientConn
	wf     workflowservice.WorkflowServiceClient
	op     operatorservice.OperatorServiceClient
	keys   *codectest.Keyring
	codec  *codec.Codec
	served chan error
}

// newTestCodec returns the real codec over an in-memory keyring.
func newTestCodec(t testing.TB) (*codec.Codec, *codectest.Keyring) {
	t.Helper()
	kr := codectest.NewKeyring()
	c, err := codec.New(kr)
	if err != nil {
		t.Fatal(err)
	}
	return c, kr
}

// startProxy starts a proxy in front of upstream with cfg (Upstream and, if nil, Codec filled in) on a loopback port.
func startProxy(t *testing.T, upstream string, cfg Config) *testProxy {
	t.Helper()
	tp := &testProxy{served: make(chan error, 1)}
	if cfg.Codec == nil {
		tp.codec, tp.keys = newTestCodec(t)
		cfg.Codec = tp.codec
	}
	cfg.Upstream = upstream
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tp.srv = srv
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { tp.served <- srv.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	tp.conn = conn
	tp.wf = workflowservice.NewWorkflowServiceClient(conn)
	tp.op = operatorservice.NewOperatorServiceClient(conn)
	t.Cleanup(func() {
		_ = conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return tp
}

func wantCode(t *testing.T, err error, want codes.Code) *status.Status {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != want {
		t.Fatalf("got %v (%q), want %v", st.Code(), st.Message(), want)
	}
	return st
}
