package proxy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/time/rate"

	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/internal/netkey"
	"github.com/blindfold-dev/blindfold/policy"
)

// Error kinds of refused callers (Config.Auth).
const (
	// KindUnauthenticated: authorization is configured and the call carries no valid credential.
	KindUnauthenticated ErrorKind = "unauthenticated"
	// KindPermissionDenied: the caller's identity holds none of the method's actions on the request's namespace.
	KindPermissionDenied ErrorKind = "permission_denied"
)

// ViaProxy names the gRPC proxy in audit records (policy.Record.Via).
const ViaProxy = "grpc-proxy"

// healthServicePath is the one service outside Temporal's that the proxy serves unary calls of: load balancers and
// orchestrators probe it without credentials, and it says nothing but SERVING or NOT_SERVING.
const healthServicePath = "/grpc.health.v1.Health/"

// callAuth is what authUnary established for an RPC: who calls, and the policy snapshot the RPC is served under
// (admitUnary reuses it, so access rules and namespace rules come from one snapshot).
type callAuth struct {
	id       policy.Identity
	snapshot *policy.Policy
}

type callAuthKey struct{}

func callAuthFrom(ctx context.Context) *callAuth {
	ca, _ := ctx.Value(callAuthKey{}).(*callAuth)
	return ca
}

// authUnary authenticates the caller and authorizes the method's action on the request's namespace (Config.Auth).
//
// It runs after recoverUnary, the configured interceptors (metrics, tracing: they see refused calls too) and logUnary
// (every refusal gets its rpc log record, with the proxy's message and never a token), and before admitUnary: a
// caller who may not use a namespace learns nothing from the namespace rules (whether the proxy serves it, how its
// tenant is resolved), and nothing is decoded, encrypted or forwarded for it.
func (s *Server) authUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	a := s.cfg.Auth
	if a == nil || strings.HasPrefix(info.FullMethod, healthServicePath) {
		return handler(ctx, req)
	}
	snap := s.cfg.Policy.Current()
	ns, has := namespaceOf(req)
	id, err := a.authenticate(ctx)
	if err != nil {
		return nil, s.refuse(ctx, info.FullMethod, policy.Identity{}, ns, nil, err)
	}
	actions, classified := methodActions[info.FullMethod]
	switch {
	case !classified:
		return nil, s.refuse(ctx, info.FullMethod, id, ns, nil, &authError{
			kind:   KindPermissionDenied,
			reason: "method " + info.FullMethod + " is not classified (unclassified methods are denied)",
			st:     status.Newf(codes.PermissionDenied, "blindfold: %s is not a method this proxy authorizes", info.FullMethod),
		})
	case has && ns == "" && actions != nil:
		return nil, s.refuse(ctx, info.FullMethod, id, ns, actions, &authError{
			kind:   KindPermissionDenied,
			reason: "the request names no namespace",
			st:     status.Newf(codes.PermissionDenied, "blindfold: %q may not call %s without a namespace", id.Subject, info.FullMethod),
		})
	}
	if actions != nil {
		// A request type without a namespace field (ListClusters, Nexus endpoints, GetSearchAttributes) acts on the
		// whole cluster: it is authorized against namespace "", which only the pattern "*" matches.
		if d, ok := s.decisions.decide(ctx, snap.Access, id, ns, info.FullMethod, actions); !ok {
			return nil, s.refuse(ctx, info.FullMethod, id, ns, actions, &authError{
				kind:   KindPermissionDenied,
				reason: d.Reason,
				st:     status.New(codes.PermissionDenied, denialMessage(id, ns, has, actions)),
			})
		}
	}
	for _, target := range crossNamespaceTargets(req, ns) {
		// A worker's command acting in another namespace (with the server's system.enableCrossNamespaceCommands) does
		// there what a client does: it needs client-write on that namespace too.
		write := []policy.Operation{policy.OpClientWrite}
		if d := snap.Access.Authorize(ctx, id, target, policy.OpClientWrite); !d.Allow {
			return nil, s.refuse(ctx, info.FullMethod, id, target, write, &authError{
				kind:   KindPermissionDenied,
				reason: d.Reason,
				st:     status.New(codes.PermissionDenied, denialMessage(id, target, true, write)+" (a command of a workflow task in namespace "+strconv.Quote(ns)+")"),
			})
		}
	}
	return handler(context.WithValue(ctx, callAuthKey{}, &callAuth{id: id, snapshot: snap}), req)
}

// crossNamespaceTargets returns the other namespaces the commands of a workflow task completion act in: child
// workflows, external signals and cancellations naming a namespace that is not the request's.
func crossNamespaceTargets(req any, ns string) []string {
	r, ok := req.(*workflowservice.RespondWorkflowTaskCompletedRequest)
	if !ok {
		return nil
	}
	var out []string
	for _, c := range r.GetCommands() {
		t := c.GetStartChildWorkflowExecutionCommandAttributes().GetNamespace()
		if t == "" {
			t = c.GetSignalExternalWorkflowExecutionCommandAttributes().GetNamespace()
		}
		if t == "" {
			t = c.GetRequestCancelExternalWorkflowExecutionCommandAttributes().GetNamespace()
		}
		if t != "" && t != ns && !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

// errCrossRead: a response holds values sealed in another namespace than the call's, which the caller may not read.
var errCrossRead = errors.New("sealed in another namespace, which the caller may not read")

// mayReadIn is nil when the values of namespace ns, found in a response of namespace own (a child's result in its
// parent's history, a cancel-external reason in the sender's), may be handed to the caller, and otherwise an error
// wrapping codec.ErrWrongNamespace: the namespace such a value opens in is named by the event, i.e. by the backend,
// so a caller who may not read ns would otherwise be shown ns's data by a backend that names ns. Without
// authentication (no Config.Auth) every caller may call any namespace directly, and there is nothing to check.
func mayReadIn(ctx context.Context, own, ns string) error {
	if ns == "" || ns == own {
		return nil
	}
	ca := callAuthFrom(ctx)
	if ca == nil || ca.snapshot == nil {
		return nil
	}
	if _, ok := holdsAny(ctx, ca.snapshot.Access, ca.id, ns, []policy.Operation{policy.OpClientRead, policy.OpWorker}); ok {
		return nil
	}
	return fmt.Errorf("namespace %q: %w: %w", ns, errCrossRead, codec.ErrWrongNamespace)
}

// authStream refuses streaming calls to Temporal's services under Config.Auth: none exists today, and one a newer
// API adds must not bypass authorization (authUnary sees unary calls only) until it is classified and authorized.
// Other streams (server reflection: the public API schema) pass.
func (s *Server) authStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if s.cfg.Auth != nil && (strings.HasPrefix(info.FullMethod, workflowServicePath) || strings.HasPrefix(info.FullMethod, "/"+operatorServiceName+"/")) {
		s.reportError("", KindPermissionDenied)
		return status.Errorf(codes.PermissionDenied, "blindfold: %s is a streaming method this proxy does not authorize", info.FullMethod)
	}
	return handler(srv, ss)
}

// holdsAny reports whether id holds one of actions on namespace, and otherwise the decision of the first action,
// whose reason names the deciding rule (or the default deny).
func holdsAny(ctx context.Context, access *policy.Access, id policy.Identity, namespace string, actions []policy.Operation) (policy.Decision, bool) {
	var first policy.Decision
	for i, op := range actions {
		d := access.Authorize(ctx, id, namespace, op)
		if d.Allow {
			return d, true
		}
		if i == 0 {
			first = d
		}
	}
	return first, false
}

// denialMessage is what a refused caller reads: who, which actions, which namespace. Never request content.
func denialMessage(id policy.Identity, ns string, has bool, actions []policy.Operation) string {
	who := id.Subject
	if who == "" {
		who = "groups " + strings.Join(id.Groups, ", ")
	}
	if !has {
		return fmt.Sprintf("blindfold: %q may not %s the cluster (a method that names no namespace needs a rule for namespace pattern \"*\")", who, joinActions(actions))
	}
	return fmt.Sprintf("blindfold: %q may not %s namespace %q", who, joinActions(actions), ns)
}

// joinActions lists actions as prose: "worker", "worker or admin", "worker, client-read or admin".
func joinActions(actions []policy.Operation) string {
	switch len(actions) {
	case 0:
		return "call"
	case 1:
		return string(actions[0])
	}
	parts := make([]string, len(actions)-1)
	for i, a := range actions[:len(actions)-1] {
		parts[i] = string(a)
	}
	return strings.Join(parts, ", ") + " or " + string(actions[len(actions)-1])
}

// refuse counts a refused call, writes its audit record and returns its status.
func (s *Server) refuse(ctx context.Context, method string, id policy.Identity, ns string, actions []policy.Operation, e *authError) error {
	s.reportError(ns, e.kind)
	if s.cfg.Auth.Audit != nil {
		ops := make([]string, len(actions))
		for i, a := range actions {
			ops[i] = string(a)
		}
		reason := string(e.kind) + ": " + e.reason
		if e.kind == KindPermissionDenied {
			reason += " (" + method + ")"
		}
		rec := policy.Record{
			Via: ViaProxy, Door: policy.DoorGRPC, Identity: id, Namespace: ns, Operation: strings.Join(ops, ","),
			Decision: policy.AuditDeny, Reason: reason, RemoteAddr: remoteAddr(ctx),
		}
		if e.kind == KindUnauthenticated && !s.unauthAudits.allow(netkey.Source(rec.RemoteAddr)) {
			return e.st.Err() // counted and refused, but not recorded: see unauthAuditRate
		}
		if _, err := s.cfg.Auth.Audit.Append(rec); err != nil {
			// The call is refused either way; the operator must learn that refusals are no longer recorded.
			s.log.Error("blindfold proxy: audit log append failed", "method", method, "namespace", ns, "error", err.Error())
		}
	}
	return e.st.Err()
}

// visibleNamespace reports whether the caller of ctx may see namespace in a ListNamespaces result: it holds some
// action of the gRPC door on it. Without Config.Auth every namespace is visible.
func visibleNamespace(ctx context.Context, namespace string) bool {
	ca := callAuthFrom(ctx)
	if ca == nil {
		return true
	}
	_, ok := holdsAny(ctx, ca.snapshot.Access, ca.id, namespace, anyAction)
	return ok
}

// maxCachedDecisions bounds the decision cache; past it the cache starts over (a miss costs one rule evaluation).
const maxCachedDecisions = 10000

// decisionCache remembers holdsAny's answers for one *policy.Access, per (identity, namespace, method). It is exact:
// an Access is immutable and its decisions depend on nothing else; a reload brings a new Access, and the cache
// starts over with it. It spares the steady state (a worker polling the same namespace) the rule walk and the
// formatting of a reason no one reads.
type decisionCache struct {
	mu     sync.RWMutex
	access *policy.Access
	m      map[decisionKey]cachedDecision
}

type decisionKey struct {
	method, issuer, subject, groups, sans, namespace, fullMethod string
	// nGroups and nSANs keep an empty list apart from a list of one empty string, which join to the same text.
	nGroups, nSANs int
}

type cachedDecision struct {
	d  policy.Decision
	ok bool
}

// keyOf builds the cache key of a call; ok is false when the identity's lists cannot be joined unambiguously (a
// group or SAN holding the separator), and the call is then decided without the cache.
func keyOf(id policy.Identity, namespace, fullMethod string) (decisionKey, bool) {
	const sep = "\x00"
	for _, s := range id.Groups {
		if strings.Contains(s, sep) {
			return decisionKey{}, false
		}
	}
	for _, s := range id.SANs {
		if strings.Contains(s, sep) {
			return decisionKey{}, false
		}
	}
	// Join does not allocate for zero or one element, the usual case.
	return decisionKey{method: id.Method, issuer: id.Issuer, subject: id.Subject, groups: strings.Join(id.Groups, sep),
		sans: strings.Join(id.SANs, sep), namespace: namespace, fullMethod: fullMethod,
		nGroups: len(id.Groups), nSANs: len(id.SANs)}, true
}

// decide is holdsAny through the cache.
func (c *decisionCache) decide(ctx context.Context, access *policy.Access, id policy.Identity, namespace, fullMethod string, actions []policy.Operation) (policy.Decision, bool) {
	key, cacheable := keyOf(id, namespace, fullMethod)
	if cacheable {
		c.mu.RLock()
		e, hit := c.m[key]
		hit = hit && c.access == access
		c.mu.RUnlock()
		if hit {
			return e.d, e.ok
		}
	}
	d, ok := holdsAny(ctx, access, id, namespace, actions)
	if cacheable {
		c.mu.Lock()
		if c.access != access || len(c.m) >= maxCachedDecisions {
			c.access, c.m = access, make(map[decisionKey]cachedDecision)
		}
		c.m[key] = cachedDecision{d: d, ok: ok}
		c.mu.Unlock()
	}
	return d, ok
}

// Unauthenticated refusals are audited at most unauthAuditRate per second per remote IP (after a burst of
// unauthAuditBurst): anyone who reaches the listener can send them, and in the audit log's strict mode each record
// costs an fsync. They are all refused and counted (Observer) regardless.
const (
	unauthAuditRate  = rate.Limit(1)
	unauthAuditBurst = 20
	maxLimitedIPs    = 10000
)

// ipLimiter is a token bucket per remote IP; past maxLimitedIPs it starts over.
type ipLimiter struct {
	mu sync.Mutex
	m  map[string]*rate.Limiter
}

func (l *ipLimiter) allow(ip string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil || len(l.m) >= maxLimitedIPs {
		l.m = make(map[string]*rate.Limiter)
	}
	lim := l.m[ip]
	if lim == nil {
		lim = rate.NewLimiter(unauthAuditRate, unauthAuditBurst)
		l.m[ip] = lim
	}
	return lim.Allow()
}
