package authze2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindfold-dev/blindfold/internal/testenv"
)

const (
	blueWorkerID  = "spiffe://test/ns/hr/sa/blue"
	greenWorkerID = "spiffe://test/ns/hr/sa/green"
)

// reloadPolicy grants the blue and the green worker the HR namespace by one rule each (unless revokeBlue), and the
// HR clients the right to start and read workflows there.
func reloadPolicy(revokeBlue bool) string {
	blue := `
    - name: blue-worker
      subjects: ["` + blueWorkerID + `"]
      namespaces: [hr]
      operations: [worker]`
	if revokeBlue {
		blue = ""
	}
	return `version: 1
access:
  rules:` + blue + `
    - name: green-worker
      sans: ["` + greenWorkerID + `"]
      namespaces: [hr]
      operations: [worker]
    - name: hr-clients
      groups: [hr-clients]
      namespaces: [hr]
      operations: [client-write, client-read]
`
}

// reloadWorkflows is how many workflows are started before and again after the revocation.
const reloadWorkflows = 8

// TestReloadRevokes runs two workers on one HR task queue, revokes one of them by rewriting the policy file the
// gateway watches, and checks that the revoked worker's next call is refused while every workflow, started before or
// after the revocation, completes: those after it on the other worker alone. The workflow task timeout is short so a
// task the revoked worker took with a poll admitted before the reload (and can no longer answer) goes to the other
// worker quickly.
func TestReloadRevokes(t *testing.T) {
	t.Parallel()
	skipShort(t)
	pki, iss := testenv.NewPKI(t), newIssuer(t)
	e := newEnv(t, pki, iss, reloadPolicy(false))
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()

	blue := caller{name: "blue", cert: pki.Client(t, "blue", blueWorkerID)}
	green := caller{name: "green", cert: pki.Client(t, "green", greenWorkerID)}
	erin := caller{name: "erin", token: iss.token("erin", []string{"hr-clients"}, nil)}
	queue := uniqueName("reload")
	// The same workflow type on both workers, each answering with its own name: the result says who completed it.
	for _, w := range []struct {
		who caller
		fn  func(workflow.Context, int) (string, error)
	}{{blue, answerAs("blue")}, {green, answerAs("green")}} {
		wk := worker.New(e.mustSDKClient(t, w.who, nsHR), queue, worker.Options{
			OnFatalError: func(err error) { t.Logf("%s's worker stopped: %v", w.who.name, err) },
		})
		wk.RegisterWorkflowWithOptions(w.fn, workflow.RegisterOptions{Name: "whoami"})
		if err := wk.Start(); err != nil {
			t.Fatalf("%s: start the worker: %v", w.who.name, err)
		}
		t.Cleanup(wk.Stop)
	}
	cl := e.mustSDKClient(t, erin, nsHR)
	start := func(i int) client.WorkflowRun {
		t.Helper()
		run, err := cl.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
			ID: fmt.Sprintf("%s-%d", queue, i), TaskQueue: queue, WorkflowTaskTimeout: 2 * time.Second,
		}, "whoami", i)
		if err != nil {
			t.Fatalf("erin: start workflow %d: %v", i, err)
		}
		return run
	}
	var before, after []client.WorkflowRun
	for i := range reloadWorkflows {
		before = append(before, start(i))
	}

	// Both are admitted before the revocation.
	blueConn, greenConn := e.conn(t, blue), e.conn(t, green)
	for _, c := range []struct {
		who  caller
		call func() error
	}{{blue, func() error { return pollWorkflowTask(ctx, blueConn, nsHR) }}, {green, func() error { return pollWorkflowTask(ctx, greenConn, nsHR) }}} {
		if err := c.call(); isAuthError(err) {
			t.Fatalf("%s's poll before the revocation: %s", c.who.name, describeCode(err))
		}
	}

	testenv.WriteFileAtomic(t, e.policyPath, reloadPolicy(true))
	var last error
	if !testenv.Poll(10*time.Second, func() bool {
		last = pollWorkflowTask(ctx, blueConn, nsHR)
		return status.Code(last) == codes.PermissionDenied
	}) {
		t.Fatalf("blue's poll after its rule was removed from the policy file: %s, want PermissionDenied within 10s", describeCode(last))
	}
	if err := messageNames(last, blueWorkerID, nsHR, "worker"); err != nil {
		t.Error(err)
	}
	if err := pollWorkflowTask(ctx, greenConn, nsHR); isAuthError(err) {
		t.Fatalf("green's poll after blue's revocation: %s", describeCode(err))
	}

	for i := range reloadWorkflows {
		after = append(after, start(reloadWorkflows+i))
	}
	for i, run := range append(before, after...) {
		var who string
		if err := run.Get(ctx, &who); err != nil {
			t.Errorf("workflow %d (%s): %v", i, run.GetID(), err)
			continue
		}
		if i >= reloadWorkflows && who != "green" {
			t.Errorf("workflow %d, started after blue's revocation, was completed by %q", i, who)
		}
	}
}

func answerAs(name string) func(workflow.Context, int) (string, error) {
	return func(workflow.Context, int) (string, error) { return name, nil }
}

// TestReloadRevokesBothDoors revokes erin's read and decode of HR in the one policy file both doors are given, and
// checks that once the proxy refuses erin's reads, the codec endpoint refuses erin's decodes too: an operator who
// revokes an auditor must not find the Web UI still decoding for them until the gateway restarts.
func TestReloadRevokesBothDoors(t *testing.T) {
	t.Parallel()
	skipShort(t)
	pki, iss := testenv.NewPKI(t), newIssuer(t)
	e := newEnv(t, pki, iss, matrixPolicy)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	erin := caller{name: "erin", token: iss.token("erin", []string{"hr-clients"}, nil)}
	conn := e.conn(t, erin)
	read := clientReadOfHR(ctx, erin, conn)
	if err := read(); isAuthError(err) {
		t.Fatalf("erin's read of hr before the revocation: %s", describeCode(err))
	}
	if code, body, _ := e.codecCall(t, erin, nsHR, nsHR, "decode", "salary: 100"); code != http.StatusOK {
		t.Fatalf("erin's decode of hr before the revocation: status %d (%s)", code, strings.TrimSpace(body))
	}

	testenv.WriteFileAtomic(t, e.policyPath, strings.Replace(matrixPolicy, "operations: [client-write, client-read, decode]", "operations: [client-write]", 1))
	var last error
	if !testenv.Poll(10*time.Second, func() bool { last = read(); return status.Code(last) == codes.PermissionDenied }) {
		t.Fatalf("erin's read of hr after the revocation: %s, want PermissionDenied within 10s", describeCode(last))
	}
	if code, body, _ := e.codecCall(t, erin, nsHR, nsHR, "decode", "salary: 100"); code != http.StatusForbidden {
		t.Errorf("erin's decode of hr after the revocation (the proxy already refuses erin's reads): status %d (%s), want %d: "+
			"the codec endpoint does not reload the access rules", code, strings.TrimSpace(body), http.StatusForbidden)
	}
}

// TestReloadRejectsBrokenPolicy writes an invalid policy file over a good one: the gateway reports it and keeps the
// previous policy in force on both doors, neither opening them (the HR worker stays out of payments) nor closing
// them (erin still reads HR); the next valid file applies again.
func TestReloadRejectsBrokenPolicy(t *testing.T) {
	t.Parallel()
	skipShort(t)
	pki, iss := testenv.NewPKI(t), newIssuer(t)
	e := newEnv(t, pki, iss, matrixPolicy)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	erin := caller{name: "erin", token: iss.token("erin", []string{"hr-clients"}, nil)}
	hrWorker := caller{name: "hr-worker", cert: pki.Client(t, "hr-worker", hrWorkerID)}
	erinConn, workerConn := e.conn(t, erin), e.conn(t, hrWorker)
	read := clientReadOfHR(ctx, erin, erinConn)
	check := func(when string) {
		t.Helper()
		if err := read(); isAuthError(err) {
			t.Errorf("%s: erin's read of hr: %s", when, describeCode(err))
		}
		if err := pollWorkflowTask(ctx, workerConn, nsPayments); status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s: the hr worker's poll on payments: %s, want PermissionDenied", when, describeCode(err))
		}
	}
	check("before")

	// Valid YAML, invalid policy: a rule of an operation that does not exist, granting everyone everything.
	broken := matrixPolicy + `    - name: everyone
      groups: ["*"]
      subjects: ["*"]
      namespaces: ["*"]
      operations: [everything]
`
	testenv.WriteFileAtomic(t, e.policyPath, broken)
	testenv.WaitFor(t, 10*time.Second, "the gateway's log reporting the rejected policy", func() bool {
		return strings.Contains(e.log.String(), "policy reload rejected")
	})
	check("after an invalid policy file")
	if code, body, _ := e.codecCall(t, erin, nsHR, nsHR, "decode", "salary: 100"); code != http.StatusOK {
		t.Errorf("after an invalid policy file: erin's decode of hr: status %d (%s)", code, strings.TrimSpace(body))
	}

	testenv.WriteFileAtomic(t, e.policyPath, strings.Replace(matrixPolicy, "operations: [client-write, client-read, decode]", "operations: [client-write]", 1))
	var last error
	if !testenv.Poll(10*time.Second, func() bool { last = read(); return status.Code(last) == codes.PermissionDenied }) {
		t.Fatalf("erin's read of hr after a valid revocation following the invalid file: %s, want PermissionDenied", describeCode(last))
	}
}
