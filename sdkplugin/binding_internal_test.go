package sdkplugin

import (
	"strings"
	"testing"

	"go.temporal.io/sdk/converter"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/keys"
)

// TestContextBindings checks what each serialization context seals for and opens, binding by binding.
func TestContextBindings(t *testing.T) {
	t.Parallel()
	root := boundCodec{f: &codecFactory{}, namespace: "default"}
	wf := func(id string) codec.Binding { return codec.Workflow(id) }
	kind := func(k codec.BindingKind, id string) codec.Binding { return codec.Binding{Kind: k, ID: id} }
	const scheduled = "nightly-2026-12-02T03:00:00Z"
	tests := []struct {
		name   string
		sc     converter.SerializationContext
		ns     string
		seal   codec.Binding
		opens  []codec.Binding
		refuse []codec.Binding
	}{
		{
			name: "no context", sc: nil, ns: "default", seal: codec.Binding{},
			opens: []codec.Binding{wf("a"), kind(codec.BindNexus, ""), kind(codec.BindActivity, "x"), {}},
		},
		{
			name: "workflow", sc: converter.WorkflowSerializationContext{Namespace: "orders", WorkflowID: "a"}, ns: "orders", seal: wf("a"),
			opens: []codec.Binding{wf("a"), {}, kind(codec.BindBatch, "job-1"), kind(codec.BindQuery, "")},
			refuse: []codec.Binding{wf("b"), wf("a-2026-12-02T03:00:00Z"), kind(codec.BindScheduledWorkflow, "a"),
				kind(codec.BindActivity, "a"), kind(codec.BindSchedule, "a"), kind(codec.BindNexus, ""), kind(codec.BindNexus, "s/o")},
		},
		{
			name: "scheduled workflow", sc: &converter.WorkflowSerializationContext{Namespace: "default", WorkflowID: scheduled}, ns: "default", seal: wf(scheduled),
			opens:  []codec.Binding{wf(scheduled), kind(codec.BindScheduledWorkflow, "nightly")},
			refuse: []codec.Binding{wf("nightly"), kind(codec.BindScheduledWorkflow, "night"), kind(codec.BindScheduledWorkflow, "nightly-2026")},
		},
		{
			name: "workflow's activity", sc: converter.ActivitySerializationContext{Namespace: "default", WorkflowID: "a", ActivityType: "Charge"}, ns: "default", seal: wf("a"),
			opens:  []codec.Binding{wf("a"), {}},
			refuse: []codec.Binding{wf("b"), kind(codec.BindActivity, "1")},
		},
		{
			name: "standalone activity", sc: converter.ActivitySerializationContext{Namespace: "default", ActivityType: "Charge"}, ns: "default", seal: codec.Binding{},
			opens:  []codec.Binding{kind(codec.BindActivity, "act-1"), {}},
			refuse: []codec.Binding{wf("a"), kind(codec.BindBatch, "j")},
		},
		{
			name: "Nexus", sc: converter.NexusSerializationContext{Endpoint: "e", Service: "svc", Operation: "op"}, ns: "default", seal: kind(codec.BindNexus, "svc/op"),
			opens:  []codec.Binding{kind(codec.BindNexus, "svc/op"), kind(codec.BindNexus, ""), wf("handler-workflow"), {}},
			refuse: []codec.Binding{kind(codec.BindNexus, "svc/other"), kind(codec.BindBatch, "j"), kind(codec.BindActivity, "a")},
		},
		{
			name: "replayer", sc: converter.WorkflowSerializationContext{Namespace: replayNamespace, WorkflowID: "ReplayId"}, ns: "default", seal: codec.Binding{},
			opens: []codec.Binding{wf("a"), kind(codec.BindNexus, "")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bc := root
			if tt.sc != nil {
				bc = root.WithSerializationContext(tt.sc).(boundCodec)
			}
			if bc.namespace != tt.ns || bc.seal != tt.seal {
				t.Fatalf("seals for %q, %v; want %q, %v", bc.namespace, bc.seal, tt.ns, tt.seal)
			}
			for _, b := range tt.opens {
				if err := bc.accept(0, b); err != nil {
					t.Errorf("refuses %v: %v", b, err)
				}
			}
			for _, b := range tt.refuse {
				err := bc.accept(0, b)
				if err == nil {
					t.Errorf("opens %v", b)
					continue
				}
				if !strings.Contains(err.Error(), b.String()) {
					t.Errorf("refusal of %v does not name it: %v", b, err)
				}
			}
		})
	}
}

func TestScheduledBy(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		workflowID, actionID string
		want                 bool
	}{
		{"nightly-2026-12-02T03:00:00Z", "nightly", true},
		{"a-b-2026-01-01T00:00:00Z", "a-b", true},
		{"a-b-2026-01-01T00:00:00Z", "a", false},
		{"nightly-2026-12-02T03:00:00+01:00", "nightly", true},
		{"nightly", "nightly", false},
		{"nightly-", "nightly", false},
		{"nightly-tomorrow", "nightly", false},
		{"other-2026-12-02T03:00:00Z", "nightly", false},
	} {
		if got := scheduledBy(tc.workflowID, tc.actionID); got != tc.want {
			t.Errorf("scheduledBy(%q, %q) = %v, want %v", tc.workflowID, tc.actionID, got, tc.want)
		}
	}
}

// TestNexusPeers: with WithNexusPeers, a Nexus context opens what a peer namespace sealed for Nexus; nothing else does.
func TestNexusPeers(t *testing.T) {
	t.Parallel()
	m, err := keys.OpenLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	caller := testPlugin(t, m)
	handler, err := New(m, WithNamespace("payments"), WithNexusPeers("orders"))
	if err != nil {
		t.Fatal(err)
	}
	loner := testPlugin(t, m)
	op := converter.NexusSerializationContext{Endpoint: "e", Service: "svc", Operation: "op"}
	in, err := converter.WithDataConverterSerializationContext(caller.DataConverter("orders"), op).ToPayload("input")
	if err != nil {
		t.Fatal(err)
	}
	var s string
	if err := converter.WithDataConverterSerializationContext(handler.DataConverter("payments"), op).FromPayload(in, &s); err != nil || s != "input" {
		t.Fatalf("the handler in a peer namespace reads %q, %v", s, err)
	}
	for name, dc := range map[string]converter.DataConverter{
		"a workflow context of the peer": converter.WithDataConverterSerializationContext(handler.DataConverter("payments"),
			converter.WorkflowSerializationContext{Namespace: "payments", WorkflowID: "w"}),
		"no context":             handler.DataConverter("payments"),
		"a plugin without peers": converter.WithDataConverterSerializationContext(loner.DataConverter("payments"), op),
	} {
		if err := dc.FromPayload(in, &s); err == nil {
			t.Errorf("%s opens the other namespace's Nexus input", name)
		}
	}
	if _, err := NewRemote("https://codec.example", WithNexusPeers("orders")); err == nil {
		t.Errorf("NewRemote accepted WithNexusPeers")
	}
	if _, err := New(m, WithNexusPeers("")); err == nil {
		t.Errorf("an empty peer namespace was accepted")
	}
}
