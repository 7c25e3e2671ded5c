package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	failurepb "go.temporal.io/api/failure/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/temporalproto"
	"go.temporal.io/sdk/converter"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/codec/codectest"
	"github.com/blindfold-dev/blindfold/internal/testenv"
	"github.com/blindfold-dev/blindfold/policy"
	"github.com/blindfold-dev/blindfold/proxy/codecserver"
)

const decodePolicy = `version: 1
access:
  rules:
    - name: auditors
      groups: [auditors]
      namespaces: [default]
      operations: [decode]
`

// sealedHistory builds a history whose input, result and failure text are sealed the way the proxy seals them.
func sealedHistory(t *testing.T, c *codec.Codec) *historypb.History {
	t.Helper()
	ctx := context.Background()
	dc := converter.GetDefaultDataConverter()
	in, _ := dc.ToPayload("INPUT-MARKER")
	out, _ := dc.ToPayload(map[string]string{"result": "RESULT-MARKER"})
	fail := &failurepb.Failure{Message: "FAILURE-MARKER", StackTrace: "STACK-MARKER"}
	if err := converter.EncodeCommonFailureAttributes(dc, fail); err != nil {
		t.Fatal(err)
	}
	sealed, err := c.Encode(ctx, "default", []*commonpb.Payload{in, out, fail.EncodedAttributes})
	if err != nil {
		t.Fatal(err)
	}
	fail.EncodedAttributes = sealed[2]
	return &historypb.History{Events: []*historypb.HistoryEvent{
		{EventId: 1, EventType: enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED, Attributes: &historypb.HistoryEvent_WorkflowExecutionStartedEventAttributes{
			WorkflowExecutionStartedEventAttributes: &historypb.WorkflowExecutionStartedEventAttributes{Input: &commonpb.Payloads{Payloads: []*commonpb.Payload{sealed[0]}}},
		}},
		{EventId: 2, EventType: enumspb.EVENT_TYPE_ACTIVITY_TASK_FAILED, Attributes: &historypb.HistoryEvent_ActivityTaskFailedEventAttributes{
			ActivityTaskFailedEventAttributes: &historypb.ActivityTaskFailedEventAttributes{Failure: fail},
		}},
		{EventId: 3, EventType: enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED, Attributes: &historypb.HistoryEvent_WorkflowExecutionCompletedEventAttributes{
			WorkflowExecutionCompletedEventAttributes: &historypb.WorkflowExecutionCompletedEventAttributes{Result: &commonpb.Payloads{Payloads: []*commonpb.Payload{sealed[1]}}},
		}},
	}}
}

func decodeFixture(t *testing.T) (*codectest.Keyring, *codec.Codec, *policy.Policy, *policy.AuditLog, string) {
	t.Helper()
	kr := codectest.NewKeyring()
	c, err := codec.New(kr)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Parse("p.yaml", []byte(decodePolicy))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	al, err := policy.OpenAudit(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { al.Close() })
	return kr, c, pol, al, path
}

func TestDecodeHistory(t *testing.T) {
	_, c, pol, al, auditPath := decodeFixture(t)
	h := sealedHistory(t, c)
	plainJSON, err := temporalproto.CustomJSONMarshalOptions{}.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"INPUT-MARKER", "RESULT-MARKER", "FAILURE-MARKER", "STACK-MARKER"} {
		if bytes.Contains(plainJSON, []byte(m)) {
			t.Fatalf("fixture leaks %s", m)
		}
	}
	wrapped := []byte(`{"history":` + string(plainJSON) + `}`)
	for name, in := range map[string][]byte{"history": plainJSON, "response": wrapped} {
		t.Run(name, func(t *testing.T) {
			res, err := decodeHistory(context.Background(), in, decodeRequest{
				namespace: "default", identity: policy.Identity{Subject: "bob", Groups: []string{"auditors"}, Method: "local"},
				codec: c, authz: pol.Access, audit: al, shorthand: true,
			})
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range []string{`"INPUT-MARKER"`, `"RESULT-MARKER"`, `"FAILURE-MARKER"`, `"STACK-MARKER"`} {
				if !bytes.Contains(res.json, []byte(m)) {
					t.Errorf("decoded history lacks %s:\n%s", m, res.json)
				}
			}
			if res.payloads != 3 || res.failed != 0 {
				t.Fatalf("%+v", res)
			}
		})
	}
	data, _ := os.ReadFile(auditPath)
	if _, err := policy.VerifyAudit(bytes.NewReader(data), policy.VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"via":"blindfold-decode"`) || !strings.Contains(string(data), `"subject":"bob"`) || strings.Contains(string(data), "MARKER") {
		t.Fatalf("audit log: %s", data)
	}
}

func TestDecodeHistoryDenied(t *testing.T) {
	_, c, pol, al, auditPath := decodeFixture(t)
	in, _ := temporalproto.CustomJSONMarshalOptions{}.Marshal(sealedHistory(t, c))
	res, err := decodeHistory(context.Background(), in, decodeRequest{
		namespace: "default", identity: policy.Identity{Subject: "mallory", Method: "local"},
		codec: c, authz: pol.Access, audit: al,
	})
	if res != nil || !errors.Is(err, errDecodeDenied) {
		t.Fatalf("%v %v", res, err)
	}
	data, _ := os.ReadFile(auditPath)
	if !strings.Contains(string(data), `"decision":"deny"`) || !strings.Contains(string(data), `"payloads":3`) {
		t.Fatalf("audit: %s", data)
	}
}

func TestDecodeHistoryShreddedAndShorthand(t *testing.T) {
	kr, c, pol, al, _ := decodeFixture(t)
	h := sealedHistory(t, c)
	// A plain json/plain payload as the CLI prints it in shorthand, next to sealed ones.
	plain, _ := converter.GetDefaultDataConverter().ToPayload("PLAIN-VALUE")
	h.Events[0].GetWorkflowExecutionStartedEventAttributes().Memo = &commonpb.Memo{Fields: map[string]*commonpb.Payload{"note": plain}}
	in, err := temporalproto.CustomJSONMarshalOptions{Metadata: map[string]any{commonpb.EnablePayloadShorthandMetadataKey: true}}.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(in, []byte(`"note": "PLAIN-VALUE"`)) && !bytes.Contains(in, []byte(`"note":"PLAIN-VALUE"`)) {
		t.Fatalf("fixture is not shorthand: %s", in)
	}
	kr.Destroy("default")
	res, err := decodeHistory(context.Background(), in, decodeRequest{
		namespace: "default", identity: policy.Identity{Subject: "bob", Groups: []string{"auditors"}},
		codec: c, authz: pol.Access, audit: al, shorthand: false,
	})
	if res == nil || err == nil || !strings.Contains(err.Error(), "3 of 4 payloads could not be decoded") {
		t.Fatalf("%v %v", res, err)
	}
	if !bytes.Contains(res.json, []byte(codecserver.DecodeErrorKey)) || bytes.Contains(res.json, []byte("INPUT-MARKER")) {
		t.Fatalf("%s", res.json)
	}
}

// TestDecodeHistoryMapsAndAudit checks that payloads in maps (walked in random order) come back to their own keys,
// and that a lost audit record prints nothing.
func TestDecodeHistoryMapsAndAudit(t *testing.T) {
	_, c, pol, al, _ := decodeFixture(t)
	h := sealedHistory(t, c)
	dc := converter.GetDefaultDataConverter()
	memo := map[string]*commonpb.Payload{}
	for _, k := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		p, _ := dc.ToPayload("MEMO-" + k)
		sealed, err := c.Encode(context.Background(), "default", []*commonpb.Payload{p})
		if err != nil {
			t.Fatal(err)
		}
		memo[k] = sealed[0]
	}
	h.Events[0].GetWorkflowExecutionStartedEventAttributes().Memo = &commonpb.Memo{Fields: memo}
	in, err := temporalproto.CustomJSONMarshalOptions{}.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	bob := policy.Identity{Subject: "bob", Groups: []string{"auditors"}, Method: "local"}
	res, err := decodeHistory(context.Background(), in, decodeRequest{namespace: "default", identity: bob, codec: c, authz: pol.Access, audit: al})
	if err != nil {
		t.Fatal(err)
	}
	var got historypb.History
	if err := (temporalproto.CustomJSONUnmarshalOptions{}).Unmarshal(res.json, &got); err != nil {
		t.Fatal(err)
	}
	fields := got.Events[0].GetWorkflowExecutionStartedEventAttributes().GetMemo().GetFields()
	if len(fields) != len(memo) {
		t.Fatalf("memo has %d fields, want %d", len(fields), len(memo))
	}
	for k, p := range fields {
		var v string
		if err := dc.FromPayload(p, &v); err != nil || v != "MEMO-"+k {
			t.Errorf("memo %s = %q (%v)", k, v, err)
		}
	}
	if res.payloads != 11 || res.failed != 0 {
		t.Fatalf("%+v", res)
	}

	disk := errors.New("disk full")
	res, err = decodeHistory(context.Background(), in, decodeRequest{namespace: "default", identity: bob, codec: c, authz: pol.Access, audit: failingAudit{disk}})
	if res != nil || !errors.Is(err, disk) || !strings.Contains(err.Error(), "refusing to print decoded data") {
		t.Fatalf("%v %v", res, err)
	}
	mallory := policy.Identity{Subject: "mallory", Method: "local"}
	res, err = decodeHistory(context.Background(), in, decodeRequest{namespace: "default", identity: mallory, codec: c, authz: pol.Access, audit: failingAudit{disk}})
	if res != nil || !errors.Is(err, errDecodeDenied) || !errors.Is(err, codecserver.ErrForbidden) || !errors.Is(err, disk) ||
		!strings.HasPrefix(err.Error(), "decode not allowed: ") || !strings.Contains(err.Error(), "(and the audit log failed: disk full)") {
		t.Fatalf("%v %v", res, err)
	}
}

type failingAudit struct{ err error }

func (a failingAudit) Append(policy.Record) (string, error) { return "", a.err }

func TestParseHistoryErrors(t *testing.T) {
	for _, in := range []string{``, `[]`, `{}`, `{"events":[{"eventId":"x"}]}`, `{"history":7}`} {
		if _, err := parseHistory([]byte(in)); err == nil {
			t.Errorf("%q parsed", in)
		}
	}
}

// TestDecodeCommand runs `blindfold decode` and `blindfold audit verify` end to end on files, with the local key directory.
func TestDecodeCommand(t *testing.T) {
	dir := t.TempDir()
	keyDir := filepath.Join(dir, "keys")
	_, c := testenv.LocalCodec(t, keyDir)
	js, err := temporalproto.CustomJSONMarshalOptions{Indent: "  "}.Marshal(sealedHistory(t, c))
	if err != nil {
		t.Fatal(err)
	}
	histPath := filepath.Join(dir, "history.json")
	polPath := filepath.Join(dir, "policy.yaml")
	auditPath := filepath.Join(dir, "audit.jsonl")
	outPath := filepath.Join(dir, "decoded.json")
	os.WriteFile(histPath, js, 0o600)
	os.WriteFile(polPath, []byte(decodePolicy), 0o600)

	run := func(args ...string) (string, error) {
		// Flag values persist in cobra's commands between Execute calls; start each run from the defaults.
		for _, c := range rootCmd.Commands() {
			for _, sub := range append([]*cobra.Command{c}, c.Commands()...) {
				sub.Flags().VisitAll(func(f *pflag.Flag) {
					if sv, ok := f.Value.(pflag.SliceValue); ok {
						_ = sv.Replace(nil)
					} else {
						_ = f.Value.Set(f.DefValue)
					}
					f.Changed = false
				})
			}
		}
		var out bytes.Buffer
		rootCmd.SetOut(&out)
		rootCmd.SetErr(&out)
		rootCmd.SetArgs(args)
		err := rootCmd.ExecuteContext(context.Background())
		return out.String(), err
	}
	out, err := run("decode", histPath, "--as", "carol", "--group", "auditors", "--policy", polPath, "--audit-log", auditPath, "--key-dir", keyDir, "-o", outPath)
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	decoded, _ := os.ReadFile(outPath)
	if !bytes.Contains(decoded, []byte("INPUT-MARKER")) || !bytes.Contains(decoded, []byte("FAILURE-MARKER")) {
		t.Fatalf("decoded output: %s", decoded)
	}
	if _, err := run("decode", histPath, "--as", "mallory", "--policy", polPath, "--audit-log", auditPath, "--key-dir", keyDir); !errors.Is(err, errDecodeDenied) {
		t.Fatalf("mallory: %v", err)
	}
	if _, err := run("decode", histPath, "--as", "carol", "--group", "auditors", "--policy", polPath, "--audit-log", auditPath, "--key-dir", filepath.Join(dir, "nokeys")); err == nil {
		t.Fatal("decode with a missing key directory succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir, "nokeys", "master.key")); err == nil {
		t.Fatal("decode created a master key")
	}
	out, err = run("audit", "verify", auditPath)
	if err != nil || !strings.HasPrefix(out, "OK ") || !strings.Contains(out, ": 2 records, head ") {
		t.Fatalf("verify: %v %s", err, out)
	}
	head := strings.TrimSpace(out[strings.LastIndex(out, " ")+1:])
	if out, err := run("audit", "verify", "--anchor", head, auditPath); err != nil || !strings.Contains(out, "anchor found at record 2") {
		t.Fatalf("verify anchor: %v %s", err, out)
	}
	data, _ := os.ReadFile(auditPath)
	os.WriteFile(auditPath, bytes.Replace(data, []byte(`"carol"`), []byte(`"eve"`), 1), 0o600)
	if _, err := run("audit", "verify", auditPath); err == nil || !strings.Contains(err.Error(), "FAILED at line 2") {
		t.Fatalf("tampered log: %v", err)
	}
}
