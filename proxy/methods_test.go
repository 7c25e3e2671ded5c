package proxy

import (
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/blindfold-dev/blindfold/policy"
)

// TestEveryMethodClassified walks the WorkflowService and OperatorService descriptors of the pinned API: every method
// has an action, every action is one a policy rule can name, and the table names no method the API lacks. A method a
// newer API adds fails here until it is classified (and is denied at run time meanwhile).
func TestEveryMethodClassified(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, name := range []string{workflowServiceName, operatorServiceName} {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
		if err != nil {
			t.Fatal(err)
		}
		methods := d.(protoreflect.ServiceDescriptor).Methods()
		for i := 0; i < methods.Len(); i++ {
			full := "/" + name + "/" + string(methods.Get(i).Name())
			seen[full] = true
			ops, ok := MethodActions(full)
			if !ok {
				t.Errorf("%s is not classified: add it to methodActions in proxy/methods.go", full)
				continue
			}
			for _, op := range ops {
				if op == policy.OpDecode || op == policy.OpEncode {
					t.Errorf("%s needs %q, an action of the codec endpoint", full, op)
				}
			}
			if ops == nil && methods.Get(i).Input().Fields().ByName("namespace") != nil {
				t.Errorf("%s names a namespace but is open to any authenticated caller", full)
			}
		}
	}
	for full := range methodActions {
		if !seen[full] {
			t.Errorf("methodActions names %s, which the API does not have", full)
		}
	}
	if _, ok := MethodActions("/temporal.api.workflowservice.v1.WorkflowService/FutureMethod"); ok {
		t.Error("an unknown method is classified")
	}
}

// TestWorkerAndClientMethods pins the classes SDKs depend on: what a worker calls, what a client calls.
func TestWorkerAndClientMethods(t *testing.T) {
	t.Parallel()
	for method, want := range map[string]policy.Operation{
		"PollWorkflowTaskQueue": policy.OpWorker, "RespondActivityTaskCompleted": policy.OpWorker, "RecordActivityTaskHeartbeat": policy.OpWorker,
		"RespondQueryTaskCompleted": policy.OpWorker, "PollNexusTaskQueue": policy.OpWorker,
		"StartWorkflowExecution": policy.OpClientWrite, "SignalWorkflowExecution": policy.OpClientWrite, "TerminateWorkflowExecution": policy.OpClientWrite,
		"CreateSchedule": policy.OpClientWrite, "StartBatchOperation": policy.OpClientWrite, "UpdateWorkflowExecution": policy.OpClientWrite,
		"GetWorkflowExecutionHistory": policy.OpClientRead, "QueryWorkflow": policy.OpClientRead, "ListWorkflowExecutions": policy.OpClientRead,
		"DescribeWorkflowExecution": policy.OpClientRead, "CountWorkflowExecutions": policy.OpClientRead,
		"RegisterNamespace": policy.OpAdmin, "UpdateNamespace": policy.OpAdmin,
	} {
		ops, _ := MethodActions(wf + method)
		if len(ops) != 1 || ops[0] != want {
			t.Errorf("%s: %v, want %s", method, ops, want)
		}
	}
	if ops, _ := MethodActions(op + "CreateNexusEndpoint"); len(ops) != 1 || ops[0] != policy.OpAdmin {
		t.Errorf("OperatorService: %v", ops)
	}
}
