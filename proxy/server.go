package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"go.temporal.io/api/operatorservice/v1"
	apiproxy "go.temporal.io/api/proxy"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/blindfold-dev/blindfold/policy"
)

const (
	workflowServiceName = "temporal.api.workflowservice.v1.WorkflowService"
	operatorServiceName = "temporal.api.operatorservice.v1.OperatorService"
	workflowServicePath = "/" + workflowServiceName + "/"
)

// Server is the encrypting WorkflowService proxy. Create it with New, run it with Serve, stop it with Shutdown.
type Server struct {
	cfg      Config
	log      *slog.Logger
	allowed  map[string]bool
	t        *transformer
	upstream *grpc.ClientConn
	grpc     GRPCServer
	health   *health.Server
	// decisions caches authorization decisions of Config.Auth per access rule set.
	decisions decisionCache
	// unauthAudits limits the audit records of unauthenticated calls per remote IP.
	unauthAudits ipLimiter

	shutdownOnce sync.Once
	shutdownErr  error
}

// New validates cfg, creates the upstream connection (without dialing: the first call connects, and calls fail fast
// with UNAVAILABLE while the upstream is down) and the inbound gRPC server.
func New(cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.MaxRecvMsgSize == 0 {
		cfg.MaxRecvMsgSize = DefaultMaxRecvMsgSize
	}
	if cfg.MaxSendMsgSize == 0 {
		cfg.MaxSendMsgSize = DefaultMaxSendMsgSize
	}
	s := &Server{
		cfg: cfg,
		log: cfg.Logger,
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.t = &transformer{codec: cfg.Codec, observer: cfg.Observer, log: s.log}
	if len(cfg.AllowedNamespaces) > 0 {
		s.allowed = make(map[string]bool, len(cfg.AllowedNamespaces))
		for _, ns := range cfg.AllowedNamespaces {
			s.allowed[ns] = true
		}
	}

	conn, err := s.dialUpstream()
	if err != nil {
		return nil, err
	}
	s.upstream = conn

	if cfg.NewGRPCServer != nil {
		s.grpc, err = cfg.NewGRPCServer(s.serverOptions()...)
		if err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("create grpc server: %w", err)
		}
	} else {
		s.grpc = grpc.NewServer(s.serverOptions()...)
	}
	wf, err := apiproxy.NewWorkflowServiceProxyServer(apiproxy.WorkflowServiceProxyOptions{
		Client: workflowservice.NewWorkflowServiceClient(conn),
		// Headers are forwarded by upstreamInterceptor, which filters them.
		DisableHeaderForwarding: true,
	})
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("create workflow service proxy: %w", err)
	}
	workflowservice.RegisterWorkflowServiceServer(s.grpc, wf)
	opDesc, err := passthroughServiceDesc(&operatorservice.OperatorService_ServiceDesc, conn)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	s.grpc.RegisterService(opDesc, struct{}{})

	s.health = health.NewServer()
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(workflowServiceName, healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(operatorServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	if cfg.Reflection {
		reflection.Register(s.grpc)
	}
	return s, nil
}

func (s *Server) serverOptions() []grpc.ServerOption {
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(s.cfg.MaxRecvMsgSize),
		grpc.MaxSendMsgSize(s.cfg.MaxSendMsgSize),
		// As the Temporal frontend's defaults: SDKs ping every 30 s even without calls; a stricter policy would make
		// the server answer them with GOAWAY too_many_pings.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle:     2 * time.Minute,
			MaxConnectionAge:      5 * time.Minute,
			MaxConnectionAgeGrace: 70 * time.Second, // longer than a long poll, so none is cut
			Time:                  time.Minute,
			Timeout:               10 * time.Second,
		}),
		// Calls run on long-lived goroutines whose stacks have already grown. The payload walk
		// (go.temporal.io/api/proxy's generated visitor, ~7.5 KiB of stack per level) needs 32–64 KiB, and a fresh
		// goroutine per call (gRPC's default) starts at 8 KiB and copies its stack three times on the way: that was
		// a quarter of the proxy's CPU per signal. Calls beyond the workers (long polls hold one each) get a fresh
		// goroutine, as before.
		grpc.NumStreamWorkers(streamWorkers()),
		// Static flow-control windows: a request up to MaxRecvMsgSize arrives without waiting for window updates, and
		// no BDP ping (sent by gRPC's dynamic window after every burst of data received: one more frame each way per
		// call) is exchanged. The connection window bounds what one caller can make the proxy buffer, as the dynamic
		// window's 16 MiB ceiling did.
		grpc.InitialWindowSize(streamWindow),
		grpc.InitialConnWindowSize(connWindow),
		// Protobuf as gRPC's default codec, with buffers that are pooled by size and not cleared (see wireCodec).
		// Large requests keep their large payloads' data where they were received (wireCodec.aliasLarge).
		grpc.ForceServerCodecV2(wireCodec{aliasLarge: true}),
	}
	if s.cfg.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(s.cfg.TLS)))
	}
	unary := append([]grpc.UnaryServerInterceptor{s.recoverUnary}, s.cfg.UnaryInterceptors...)
	// authUnary: see its doc for why it sits between logUnary and admitUnary.
	unary = append(unary, s.logUnary, s.authUnary, s.admitUnary)
	opts = append(opts, grpc.ChainUnaryInterceptor(unary...))
	if s.cfg.Auth != nil {
		opts = append(opts, grpc.ChainStreamInterceptor(append(slices.Clone(s.cfg.StreamInterceptors), s.authStream)...))
	} else if len(s.cfg.StreamInterceptors) > 0 {
		opts = append(opts, grpc.ChainStreamInterceptor(s.cfg.StreamInterceptors...))
	}
	return append(opts, s.cfg.ServerOptions...)
}

// growStack makes sure the calling goroutine has the stack the payload walk needs, while its stack is still shallow:
// growing it later, 30 frames deeper inside the visitor, copies (and adjusts) every frame in between, and a 8 KiB
// stack doubles three times on the way. Its frame is stackReserve bytes, which the function prologue's stack check
// provides; the array in it is only ever cleared on a branch never taken (stackPadUsed is never set), so on a
// goroutine whose stack is large enough already it costs a compare.
//
//go:noinline
func growStack() {
	if stackPadUsed {
		var pad [stackReserve]byte
		keepAlive(pad[:])
	}
}

// stackPadUsed is false; the compiler cannot know it, so growStack keeps its frame.
var stackPadUsed bool

// stackReserve is what growStack reserves: enough for the visitor on a poll with a history (about six levels of ~7.5
// KiB frames), so that the stack reaches 64 KiB in one step.
const stackReserve = 48 << 10

//go:noinline
func keepAlive(b []byte) {
	if len(b) == 0 {
		panic("unreachable")
	}
}

// Flow-control windows of the proxy's connections, both ways (see serverOptions).
const (
	streamWindow = 4 << 20
	connWindow   = 16 << 20
)

// streamWorkers is the number of goroutines that serve calls: enough for the long polls of a few SDK workers plus the
// calls in flight on this machine's cores. An idle worker costs its stack (shrunk by the GC when unused).
func streamWorkers() uint32 {
	return uint32(max(64, 16*runtime.GOMAXPROCS(0)))
}

func (s *Server) dialUpstream() (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if s.cfg.UpstreamTLS != nil {
		creds = credentials.NewTLS(s.cfg.UpstreamTLS)
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithUserAgent("blindfold-proxy"),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(s.cfg.MaxSendMsgSize), grpc.MaxCallSendMsgSize(s.cfg.MaxSendMsgSize),
			grpc.ForceCodecV2(wireCodec{})),
		// As the Temporal SDK does.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 15 * time.Second, PermitWithoutStream: true}),
		// Reconnect quickly after an upstream restart; calls made meanwhile fail fast (no WaitForReady).
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{
			BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 5 * time.Second,
		}, MinConnectTimeout: 5 * time.Second}),
		grpc.WithChainUnaryInterceptor(s.upstreamInterceptor),
		// As on the inbound side: static windows, no BDP pings; a 2 MiB payload crosses in one window.
		grpc.WithInitialWindowSize(streamWindow),
		grpc.WithInitialConnWindowSize(connWindow),
	}
	if s.cfg.APIKey != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(apiKeyCreds{key: s.cfg.APIKey, requireTLS: s.cfg.UpstreamTLS != nil}))
	}
	opts = append(opts, s.cfg.DialOptions...)
	conn, err := grpc.NewClient(s.cfg.Upstream, opts...)
	if err != nil {
		return nil, fmt.Errorf("create upstream connection to %s: %w", s.cfg.Upstream, err)
	}
	return conn, nil
}

// Serve accepts connections on lis until Shutdown. It returns nil after Shutdown.
func (s *Server) Serve(lis net.Listener) error {
	s.log.Info("blindfold proxy serving", "addr", lis.Addr().String(), "upstream", s.cfg.Upstream,
		"inbound_tls", s.cfg.TLS != nil, "upstream_tls", s.cfg.UpstreamTLS != nil)
	if s.cfg.TLS == nil && !isLoopbackTarget(lis.Addr().String()) {
		s.log.Warn("blindfold proxy accepts plaintext calls on a non-loopback address: anyone who can reach it reads decrypted payloads; configure inbound TLS",
			"addr", lis.Addr().String())
	}
	if err := s.grpc.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serve proxy: %w", err)
	}
	return nil
}

// Shutdown stops accepting connections and calls, reports NOT_SERVING on health, waits for in-flight calls (long polls
// included) to finish until ctx ends, then cancels whatever is left, and closes the upstream connection. It returns
// ctx's error if calls had to be cut. Calling it again returns the first result.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdownOnce.Do(func() {
		s.health.Shutdown()
		done := make(chan struct{})
		go func() {
			s.grpc.GracefulStop()
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			s.log.Warn("blindfold proxy shutdown deadline reached; cancelling in-flight calls")
			s.grpc.Stop()
			<-done
			s.shutdownErr = fmt.Errorf("shutdown cut in-flight calls: %w", ctx.Err())
		}
		if err := s.upstream.Close(); err != nil && s.shutdownErr == nil {
			s.shutdownErr = fmt.Errorf("close upstream connection: %w", err)
		}
	})
	return s.shutdownErr
}

// namespaceOf returns the namespace a request names, and whether its type has a namespace field at all.
func namespaceOf(req any) (string, bool) {
	r, ok := req.(interface{ GetNamespace() string })
	if !ok {
		return "", false
	}
	return r.GetNamespace(), true
}

// admitUnary refuses calls for namespaces outside the allowlist before anything else happens.
func (s *Server) admitUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ns, has := namespaceOf(req)
	if s.allowed != nil && has && !s.allowed[ns] {
		s.reportError(ns, KindNamespaceDenied)
		return nil, status.Errorf(codes.PermissionDenied, "blindfold: namespace %q is not served by this proxy", ns)
	}
	if s.cfg.Policy != nil {
		var snap *policy.Policy
		if ca := callAuthFrom(ctx); ca != nil {
			snap = ca.snapshot // the one the access rules were read from
		} else {
			snap = s.cfg.Policy.Current()
		}
		cp, err := admitPolicy(ctx, snap, ns, has, req)
		if err != nil {
			kind := KindTenant
			if status.Code(err) == codes.PermissionDenied {
				kind = KindNamespaceDenied
			}
			s.reportError(ns, kind)
			return nil, err
		}
		ctx = withCallPolicy(ctx, cp)
	}
	if m, ok := req.(*workflowservice.ExecuteMultiOperationRequest); ok {
		// Payloads of every operation are bound to the outer namespace; an operation naming another would get
		// ciphertext its namespace cannot open.
		for _, op := range m.GetOperations() {
			inner := op.GetStartWorkflow().GetNamespace()
			if inner == "" {
				inner = op.GetUpdateWorkflow().GetNamespace()
			}
			if inner != "" && inner != ns {
				s.reportError(ns, KindInvalidRequest)
				return nil, status.Errorf(codes.InvalidArgument, "blindfold: operation namespace %q differs from request namespace %q", inner, ns)
			}
		}
	}
	return handler(ctx, req)
}

// logUnary logs one record per call: method, namespace, code, duration. Never the request or response.
func (s *Server) logUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	code := status.Code(err)
	level := slog.LevelDebug
	if code != codes.OK {
		level = slog.LevelInfo
	}
	if s.log.Enabled(ctx, level) {
		ns, _ := namespaceOf(req)
		attrs := []slog.Attr{
			slog.String("method", info.FullMethod),
			slog.String("namespace", ns),
			slog.String("code", code.String()),
			slog.Duration("duration", time.Since(start)),
		}
		if msg := status.Convert(err).Message(); err != nil && strings.HasPrefix(msg, "blindfold: ") {
			// Only the proxy's own messages: the upstream's may quote user text the proxy just opened (a failed
			// query's message, restored from its sealed failure).
			attrs = append(attrs, slog.String("error", msg))
		}
		s.log.LogAttrs(ctx, level, "rpc", attrs...)
	}
	return resp, err
}

// recoverUnary turns a panic into an Internal status: a bug must not take every caller's connection down with it.
func (s *Server) recoverUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	growStack()
	defer func() {
		if r := recover(); r != nil {
			ns, _ := namespaceOf(req)
			s.log.Error("blindfold proxy panic", "method", info.FullMethod, "namespace", ns, "panic", fmt.Sprint(r))
			s.reportError(ns, KindPanic)
			resp, err = nil, status.Errorf(codes.Internal, "blindfold: internal error in %s", info.FullMethod)
		}
	}()
	return handler(ctx, req)
}

func (s *Server) reportError(ns string, kind ErrorKind) {
	if s.cfg.Observer != nil {
		s.cfg.Observer.Error(ns, kind)
	}
}

// upstreamInterceptor runs on every call to the upstream: it sets the outgoing headers, encrypts WorkflowService
// requests before they leave, and decrypts responses and error details before they return.
func (s *Server) upstreamInterceptor(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	ns, _ := namespaceOf(req)
	ctx = s.outgoingContext(ctx, ns)
	if !strings.HasPrefix(method, workflowServicePath) {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	reqMsg, ok := req.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "blindfold: request of %s is not a protobuf message", method)
	}
	cp := callPolicyFrom(ctx) // nil without a policy
	if s.cfg.Policy != nil && cp == nil {
		// Every call passes admitUnary first; fail closed if one did not.
		return status.Errorf(codes.Internal, "blindfold: %s reached the upstream without a policy decision", method)
	}
	if cp.passes() {
		// plaintext_from_sdk: pass, which the policy allows only with allow_plaintext: true.
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	// Fail closed on what the proxy cannot see: fields a newer SDK sends that this API version does not know may
	// hold payloads the visitor would miss.
	if err := checkUnknownFields(reqMsg); err != nil {
		return s.codecFailure(method, opEncode, ns, err)
	}
	if err := s.t.encodeRequestFor(ctx, ns, reqMsg, cp); err != nil {
		return s.codecFailure(method, opEncode, ns, err)
	}
	if err := invoker(ctx, method, req, reply, cc, opts...); err != nil {
		// In reject mode too: the walk opens nothing there (the SDK decrypts what it sealed) but still refuses
		// plaintext the backend slipped into the details.
		out, derr := s.t.decodeStatusFor(ctx, ns, reqMsg, err, cp)
		if derr != nil {
			return s.codecFailure(method, opDecode, ns, derr)
		}
		return restoreQueryFailed(out)
	}
	if replyMsg, ok := reply.(proto.Message); ok && !fieldless(replyMsg) {
		// In reject mode the SDK opens what it sealed; the walk still refuses plaintext the backend slipped in.
		if err := s.t.decodeResponseFor(ctx, ns, reqMsg, replyMsg, cp); err != nil {
			return s.codecFailure(method, opDecode, ns, err)
		}
	}
	if r, ok := reply.(*workflowservice.ListNamespacesResponse); ok && (s.allowed != nil || cp != nil) {
		r.Namespaces = slices.DeleteFunc(r.Namespaces, func(d *workflowservice.DescribeNamespaceResponse) bool {
			name := d.GetNamespaceInfo().GetName()
			return s.allowed != nil && !s.allowed[name] || cp != nil && !cp.serves(name) || !visibleNamespace(ctx, name)
		})
	}
	return nil
}

// fieldless reports whether m's type declares no field at all (SignalWorkflowExecutionResponse and a score of other
// acknowledgements): such a response holds nothing the decode walk could open, check or restore, so it is not walked.
// Unknown fields in it are not checked either way (the walk does not see them); errors are still decoded.
func fieldless(m proto.Message) bool {
	return m.ProtoReflect().Descriptor().Fields().Len() == 0
}

func (s *Server) codecFailure(method, op, ns string, err error) error {
	st, kind := codecStatus(op, ns, err)
	s.reportError(ns, kind)
	if kind != KindCanceled {
		// The error names keys and namespaces, never payload content (PayloadCodec's contract).
		s.log.Warn("blindfold proxy codec error", "method", method, "namespace", ns, "kind", string(kind), "error", err.Error())
	}
	return st
}

// outgoingContext copies the caller's headers to the upstream call, except transport headers, the namespace header
// (set from the request itself, so routing on the upstream side matches what was encrypted) and, when the proxy has its
// own API key, the caller's authorization.
func (s *Server) outgoingContext(ctx context.Context, ns string) context.Context {
	in, _ := metadata.FromIncomingContext(ctx)
	out := make(metadata.MD, len(in)+1)
	for k, v := range in {
		switch {
		case strings.HasPrefix(k, ":"), strings.HasPrefix(k, "grpc-"), k == "user-agent", k == "content-type", k == "te",
			k == "temporal-namespace", k == "authorization" && (s.cfg.APIKey != "" || s.authenticatesTokens()):
			continue
		}
		out[k] = v
	}
	if ns != "" {
		out.Set("temporal-namespace", ns)
	}
	if existing, ok := metadata.FromOutgoingContext(ctx); ok {
		for k, v := range existing {
			out[k] = v
		}
	}
	return metadata.NewOutgoingContext(ctx, out)
}

// authenticatesTokens reports whether the proxy authenticates its callers itself (Config.Auth): then their
// authorization headers stop here, whichever credential the proxy checks. The backend must never see a caller's
// token: the codec endpoint may accept the same tokens, and a hostile backend replaying one would decode as the
// caller. An upstream that needs credentials gets the proxy's own (APIKey).
func (s *Server) authenticatesTokens() bool {
	return s.cfg.Auth != nil
}

// apiKeyCreds sends the proxy's API key on every upstream call.
type apiKeyCreds struct {
	key        string
	requireTLS bool
}

func (c apiKeyCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + c.key}, nil
}

func (c apiKeyCreds) RequireTransportSecurity() bool { return c.requireTLS }

// passthroughServiceDesc builds a service that forwards every unary method of sd, unchanged, over conn. The message
// types come from the protobuf registry, so methods added to the API later are forwarded too.
func passthroughServiceDesc(sd *grpc.ServiceDesc, conn *grpc.ClientConn) (*grpc.ServiceDesc, error) {
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(sd.ServiceName))
	if err != nil {
		return nil, fmt.Errorf("find service %s: %w", sd.ServiceName, err)
	}
	svc, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil, fmt.Errorf("%s is not a service", sd.ServiceName)
	}
	out := &grpc.ServiceDesc{ServiceName: sd.ServiceName, HandlerType: (*any)(nil), Metadata: sd.Metadata}
	for _, m := range sd.Methods {
		md := svc.Methods().ByName(protoreflect.Name(m.MethodName))
		if md == nil {
			return nil, fmt.Errorf("method %s.%s not in registry", sd.ServiceName, m.MethodName)
		}
		inType, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
		if err != nil {
			return nil, fmt.Errorf("input type of %s: %w", md.FullName(), err)
		}
		outType, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
		if err != nil {
			return nil, fmt.Errorf("output type of %s: %w", md.FullName(), err)
		}
		fullMethod := "/" + sd.ServiceName + "/" + m.MethodName
		forward := func(ctx context.Context, req any) (any, error) {
			resp := outType.New().Interface()
			if err := conn.Invoke(ctx, fullMethod, req, resp); err != nil {
				return nil, err
			}
			return resp, nil
		}
		out.Methods = append(out.Methods, grpc.MethodDesc{
			MethodName: m.MethodName,
			Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
				in := inType.New().Interface()
				if err := dec(in); err != nil {
					return nil, err
				}
				if interceptor == nil {
					return forward(ctx, in)
				}
				return interceptor(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: fullMethod}, forward)
			},
		})
	}
	return out, nil
}
