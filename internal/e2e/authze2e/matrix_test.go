package authze2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindfold-dev/blindfold/internal/testenv"
	"github.com/blindfold-dev/blindfold/policy"
	"github.com/blindfold-dev/blindfold/proxy"
)

// matrixPolicy is the policy of the matrix: each worker identity works its own namespace (matched once by subject,
// once by SAN glob), and the HR clients (an OIDC group) run, read and decode HR workflows. Nobody is an admin.
const matrixPolicy = `version: 1
access:
  rules:
    - name: payments-workers
      subjects: ["` + paymentsWorkerID + `"]
      namespaces: [payments]
      operations: [worker, client-read]
    - name: hr-workers
      sans: ["spiffe://test/ns/hr/sa/*"]
      namespaces: [hr]
      operations: [worker]
    - name: hr-clients
      groups: [hr-clients]
      namespaces: [hr]
      operations: [client-write, client-read, decode]
`

// action is one thing a caller may ask of a namespace, as a raw call that returns at once when admitted.
type action struct {
	// op is the policy operation the call needs; "any" for DescribeNamespace (any operation on the namespace) and
	// "authenticated" for the cluster-level calls every SDK makes.
	op   string
	call func(ctx context.Context, conn *grpc.ClientConn, namespace string) error
}

var actions = []action{
	{"worker", pollWorkflowTask},
	{"client-write", func(ctx context.Context, conn *grpc.ClientConn, ns string) error {
		_, err := workflowservice.NewWorkflowServiceClient(conn).SignalWorkflowExecution(ctx, &workflowservice.SignalWorkflowExecutionRequest{
			Namespace: ns, WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: uniqueName("no-such-workflow")},
			SignalName: "nudge", Identity: "authze2e-raw",
		})
		return err
	}},
	{"client-read", func(ctx context.Context, conn *grpc.ClientConn, ns string) error {
		_, err := workflowservice.NewWorkflowServiceClient(conn).DescribeWorkflowExecution(ctx, &workflowservice.DescribeWorkflowExecutionRequest{
			Namespace: ns, Execution: &commonpb.WorkflowExecution{WorkflowId: uniqueName("no-such-workflow")},
		})
		return err
	}},
	{"admin", func(ctx context.Context, conn *grpc.ClientConn, ns string) error {
		_, err := operatorservice.NewOperatorServiceClient(conn).ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: ns})
		return err
	}},
	{"any", func(ctx context.Context, conn *grpc.ClientConn, ns string) error {
		_, err := workflowservice.NewWorkflowServiceClient(conn).DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: ns})
		return err
	}},
	{"authenticated", func(ctx context.Context, conn *grpc.ClientConn, _ string) error {
		_, err := workflowservice.NewWorkflowServiceClient(conn).GetSystemInfo(ctx, &workflowservice.GetSystemInfoRequest{})
		return err
	}},
}

// identities of the matrix and what the policy grants them, by namespace.
type identity struct {
	caller
	// subject is the name a refusal must give.
	subject string
	// grants are the policy's operations by namespace; nil for a caller with no credential at all.
	grants map[string][]string
}

// allows is what the policy says of id doing op on ns.
func (id identity) allows(op, ns string) bool {
	switch op {
	case "any":
		return len(id.grants[ns]) > 0
	case "authenticated":
		return id.grants != nil
	}
	return slices.Contains(id.grants[ns], op)
}

// TestMatrix checks every (identity, namespace, action) cell against the policy with real TLS, SPIFFE client
// certificates and tokens from a real OIDC issuer: raw calls for every cell, the SDK for the flows that matter (an HR
// client starts a workflow an HR worker completes; a payments worker cannot even start a worker on HR), and the codec
// endpoint for decode.
func TestMatrix(t *testing.T) {
	t.Parallel()
	skipShort(t)
	pki, iss := testenv.NewPKI(t), newIssuer(t)
	e := newEnv(t, pki, iss, matrixPolicy)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()

	paymentsWorker := caller{name: "payments-worker", cert: pki.Client(t, "payments-worker", paymentsWorkerID)}
	hrWorker := caller{name: "hr-worker", cert: pki.Client(t, "hr-worker", hrWorkerID)}
	erin := caller{name: "erin", token: iss.token("erin", []string{"hr-clients"}, nil)}
	ids := []identity{
		{paymentsWorker, paymentsWorkerID, map[string][]string{nsPayments: {"worker", "client-read"}}},
		{hrWorker, hrWorkerID, map[string][]string{nsHR: {"worker"}}},
		{erin, "erin", map[string][]string{nsHR: {"client-write", "client-read"}}},
		// A token wins over the certificate: the HR worker's connection carrying erin's token is erin.
		{caller{name: "hr-worker-cert+erin-token", cert: hrWorker.cert, token: erin.token}, "erin",
			map[string][]string{nsHR: {"client-write", "client-read"}}},
		// TLS without a certificate and without a token is nobody.
		{caller{name: "anonymous"}, "", nil},
	}
	denied := map[string]int{}
	t.Run("raw", func(t *testing.T) {
		for _, id := range ids {
			conn := e.conn(t, id.caller)
			for _, ns := range []string{nsPayments, nsHR} {
				for _, a := range actions {
					allow := id.allows(a.op, ns)
					if !allow && id.grants != nil {
						denied[ns]++
					}
					t.Run(fmt.Sprintf("%s/%s/%s", id.name, ns, a.op), func(t *testing.T) {
						t.Parallel()
						cctx, cancel := context.WithTimeout(withAuth(ctx, id.caller), callTimeout)
						defer cancel()
						err := a.call(cctx, conn, ns)
						switch {
						case id.grants == nil:
							if status.Code(err) != codes.Unauthenticated {
								t.Errorf("%s %s on %s without any credential: got %s, want Unauthenticated", id.name, a.op, ns, describeCode(err))
							}
						case allow:
							if isAuthError(err) {
								t.Errorf("%s %s on %s: the policy allows it, the proxy refused: %s", id.name, a.op, ns, describeCode(err))
							}
						default:
							if status.Code(err) != codes.PermissionDenied {
								t.Errorf("%s %s on %s: the policy denies it, got %s, want PermissionDenied", id.name, a.op, ns, describeCode(err))
								return
							}
							names := []string{id.subject, ns}
							if a.op != "any" {
								names = append(names, a.op)
							}
							if err := messageNames(err, names...); err != nil {
								t.Errorf("%s %s on %s: %v", id.name, a.op, ns, err)
							}
						}
					})
				}
			}
		}
	})
	t.Run("denials are counted", func(t *testing.T) {
		for _, ns := range []string{nsPayments, nsHR} {
			if got := e.errs.count(ns, proxy.ErrorKind("permission_denied")); got < denied[ns] {
				t.Errorf("Observer.Error(%q, permission_denied) counted %d refusals, the matrix made %d", ns, got, denied[ns])
			}
		}
	})
	t.Run("callers without a credential are counted", func(t *testing.T) {
		for _, ns := range []string{nsPayments, nsHR} {
			// Every action but GetSystemInfo names the namespace; the anonymous caller tried each once.
			if got, want := e.errs.count(ns, proxy.ErrorKind("unauthenticated")), len(actions)-1; got < want {
				t.Errorf("Observer.Error(%q, unauthenticated) counted %d refusals, the anonymous caller made %d", ns, got, want)
			}
		}
	})
	t.Run("denials are audited", func(t *testing.T) {
		var grpcDenials int
		var found bool
		for _, r := range e.auditRecords(t) {
			if r.Door != policy.DoorGRPC || r.Decision != policy.AuditDeny {
				continue
			}
			grpcDenials++
			if r.Identity.Subject == paymentsWorkerID && r.Namespace == nsHR && r.Operation == "worker" {
				found = true
			}
		}
		if grpcDenials < denied[nsPayments]+denied[nsHR] {
			t.Errorf("the audit log holds %d refusals of door %q, the matrix made %d", grpcDenials, policy.DoorGRPC, denied[nsPayments]+denied[nsHR])
		}
		if !found {
			t.Errorf("the audit log has no refusal of door %q for %s's worker call on %s", policy.DoorGRPC, paymentsWorkerID, nsHR)
		}
		// Both doors append to the one log: its hash chain must still verify.
		f, err := os.Open(e.auditPath)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := policy.VerifyAudit(f, policy.VerifyOptions{}); err != nil {
			t.Errorf("the audit log both doors share does not verify: %v", err)
		}
	})
	t.Run("DescribeNamespace by id is no way around the name", func(t *testing.T) {
		frontend := workflowservice.NewWorkflowServiceClient(testenv.DialInsecure(t, e.stack.FrontendAddr()))
		d, err := frontend.DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: nsPayments})
		if err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		_, err = workflowservice.NewWorkflowServiceClient(e.conn(t, hrWorker)).DescribeNamespace(cctx,
			&workflowservice.DescribeNamespaceRequest{Id: d.GetNamespaceInfo().GetId()})
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("hr-worker: DescribeNamespace by the id of payments: %s, want PermissionDenied", describeCode(err))
		}
	})
	t.Run("ListNamespaces shows what the caller may use", func(t *testing.T) {
		for _, id := range ids[:4] {
			cctx, cancel := context.WithTimeout(withAuth(ctx, id.caller), callTimeout)
			resp, err := workflowservice.NewWorkflowServiceClient(e.conn(t, id.caller)).ListNamespaces(cctx, &workflowservice.ListNamespacesRequest{PageSize: 100})
			cancel()
			if err != nil {
				t.Errorf("%s: ListNamespaces: %s", id.name, describeCode(err))
				continue
			}
			var got, want []string
			for _, n := range resp.GetNamespaces() {
				got = append(got, n.GetNamespaceInfo().GetName())
			}
			for ns := range id.grants {
				want = append(want, ns)
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("%s: ListNamespaces shows %v, want %v", id.name, got, want)
			}
		}
	})

	t.Run("sdk/erin starts on hr, the hr worker completes it", func(t *testing.T) {
		queue := uniqueName("hr-greet")
		w := worker.New(e.mustSDKClient(t, hrWorker, nsHR), queue, worker.Options{})
		w.RegisterWorkflowWithOptions(greet, workflow.RegisterOptions{Name: "greet"})
		if err := w.Start(); err != nil {
			t.Fatalf("hr-worker: start an SDK worker on hr: %v", err)
		}
		defer w.Stop()
		run, err := e.mustSDKClient(t, erin, nsHR).ExecuteWorkflow(ctx, client.StartWorkflowOptions{
			ID: uniqueName("greet"), TaskQueue: queue,
		}, "greet", "erin")
		if err != nil {
			t.Fatalf("erin: start a workflow on hr: %v", err)
		}
		var got string
		if err := run.Get(ctx, &got); err != nil || got != "hello erin" {
			t.Fatalf("erin: the hr workflow returned %q, %v; want %q", got, err, "hello erin")
		}

		// What the backend stored is sealed; erin, an HR client with decode, reads it back through the codec endpoint
		// (as the Web UI would), and not by claiming another namespace.
		resp, err := workflowservice.NewWorkflowServiceClient(testenv.DialInsecure(t, e.stack.FrontendAddr())).GetWorkflowExecutionHistory(ctx,
			&workflowservice.GetWorkflowExecutionHistoryRequest{Namespace: nsHR, Execution: &commonpb.WorkflowExecution{WorkflowId: run.GetID(), RunId: run.GetRunID()}})
		if err != nil {
			t.Fatalf("the backend's history of the hr workflow: %v", err)
		}
		stored := resp.GetHistory().GetEvents()[0].GetWorkflowExecutionStartedEventAttributes().GetInput().GetPayloads()
		if len(stored) != 1 || strings.Contains(string(stored[0].GetData()), "erin") {
			t.Fatalf("the backend stored the input as %v, want one sealed payload", stored)
		}
		if code, body, plain := e.codecPost(t, erin, nsHR, "decode", stored); code != http.StatusOK || plain != "erin" {
			t.Errorf("erin decodes the stored input on /hr/decode: status %d, %q (%s); want 200, %q", code, plain, strings.TrimSpace(body), "erin")
		}
		if code, body, _ := e.codecPost(t, erin, nsPayments, "decode", stored); code != http.StatusForbidden {
			t.Errorf("erin decodes the stored hr input on /payments/decode: status %d (%s), want 403", code, strings.TrimSpace(body))
		}
	})
	t.Run("sdk/the payments worker cannot work hr", func(t *testing.T) {
		// "Can the payments workers read the HR namespace?" No: the SDK's check that the namespace exists is refused.
		w := worker.New(e.mustSDKClient(t, paymentsWorker, nsHR), uniqueName("hr-greet"), worker.Options{})
		w.RegisterWorkflowWithOptions(greet, workflow.RegisterOptions{Name: "greet"})
		err := w.Start()
		if err == nil {
			w.Stop()
			t.Fatal("payments-worker: an SDK worker on hr started")
		}
		if !isPermissionDenied(err) {
			t.Fatalf("payments-worker: an SDK worker on hr failed with %v, want PermissionDenied", err)
		}
	})
	t.Run("sdk/the payments worker works payments", func(t *testing.T) {
		w := worker.New(e.mustSDKClient(t, paymentsWorker, nsPayments), uniqueName("payments-greet"), worker.Options{})
		w.RegisterWorkflowWithOptions(greet, workflow.RegisterOptions{Name: "greet"})
		if err := w.Start(); err != nil {
			t.Fatalf("payments-worker: start an SDK worker on payments: %v", err)
		}
		w.Stop()
	})
	t.Run("sdk/erin cannot start on payments", func(t *testing.T) {
		_, err := e.mustSDKClient(t, erin, nsPayments).ExecuteWorkflow(ctx, client.StartWorkflowOptions{
			ID: uniqueName("greet"), TaskQueue: uniqueName("payments-greet"),
		}, "greet", "erin")
		if !isPermissionDenied(err) {
			t.Fatalf("erin: start a workflow on payments: got %v, want PermissionDenied", err)
		}
	})

	t.Run("codec", func(t *testing.T) {
		tests := []struct {
			name          string
			who           caller
			sealedFor, ns string
			op            string
			want          int
		}{
			{"erin decodes hr", erin, nsHR, nsHR, "decode", http.StatusOK},
			{"erin does not decode payments", erin, nsPayments, nsPayments, "decode", http.StatusForbidden},
			{"erin does not encode hr", erin, "", nsHR, "encode", http.StatusForbidden},
			{"no token decodes nothing", caller{name: "anonymous"}, nsHR, nsHR, "decode", http.StatusUnauthorized},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				code, body, got := e.codecCall(t, tc.who, tc.sealedFor, tc.ns, tc.op, "salary: 100")
				if code != tc.want {
					t.Fatalf("%s POST /%s/%s: status %d (%s), want %d", tc.who.name, tc.ns, tc.op, code, strings.TrimSpace(body), tc.want)
				}
				if code == http.StatusOK && got != "salary: 100" {
					t.Fatalf("%s POST /%s/%s: read back %q", tc.who.name, tc.ns, tc.op, got)
				}
			})
		}
	})
}

func greet(_ workflow.Context, name string) (string, error) { return "hello " + name, nil }

// isPermissionDenied reports whether err, however the SDK wrapped it, is a PermissionDenied from the proxy.
func isPermissionDenied(err error) bool {
	var pd *serviceerror.PermissionDenied
	return errors.As(err, &pd) || status.Code(err) == codes.PermissionDenied
}
