package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/spf13/cobra"
	commonpb "go.temporal.io/api/common/v1"
	failurepb "go.temporal.io/api/failure/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/proxy"
	"go.temporal.io/api/temporalproto"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/proto"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/keys"
	"github.com/blindfold-dev/blindfold/policy"
	"github.com/blindfold-dev/blindfold/proxy/codecserver"
)

func init() {
	var o decodeFlags
	cmd := &cobra.Command{
		Use:   "decode FILE",
		Short: "Decode an exported workflow history offline with local keys",
		Long: `Decode reads a workflow history exported as JSON — the output of
  temporal workflow show --workflow-id ID --output json > history.json
(a History, or a GetWorkflowExecutionHistoryResponse) — opens every Blindfold
envelope in it with the local keys, restores encoded failure messages, and prints
the history as JSON. FILE "-" reads standard input.

The same policy and audit log as the codec endpoint apply: --as names the
identity (and --group its groups) that the policy's access rules must allow to
decode --namespace, and the decision is appended to --audit-log. Offline, that
identity is self-asserted: the policy check guards against mistakes and the audit
log records who claimed to read what, but whoever holds the keys can decrypt.

A payload that cannot be opened (destroyed key, tampered, sealed for another
namespace) stays encrypted and gains the metadata entry "blindfold-decode-error";
the command then exits with an error after printing the history.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDecode(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), args[0], o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.as, "as", "", "identity (subject) the decode is authorized and audited as (required)")
	f.StringSliceVar(&o.groups, "group", nil, "a group of the --as identity (repeatable)")
	f.StringVarP(&o.namespace, "namespace", "n", "default", "namespace the history belongs to (payloads are bound to it)")
	f.StringVar(&o.policyFile, "policy", "", "policy file whose access rules authorize the decode (required)")
	f.StringVar(&o.auditLog, "audit-log", "", "audit log to append the decision to (required)")
	f.StringVar(&o.keyDir, "key-dir", keys.DefaultDir(), "local key directory (as for blindfold keys; also $BLINDFOLD_KEY_DIR)")
	f.StringVarP(&o.output, "output", "o", "", "write the decoded history here instead of standard output (created 0600)")
	f.BoolVar(&o.noShorthand, "no-json-shorthand-payloads", false, "print payloads as metadata+base64 data instead of plain JSON values")
	for _, name := range []string{"as", "policy", "audit-log"} {
		_ = cmd.MarkFlagRequired(name)
	}
	rootCmd.AddCommand(cmd)
}

type decodeFlags struct {
	as, namespace, policyFile, auditLog, keyDir, output string
	groups                                              []string
	noShorthand                                         bool
}

func runDecode(ctx context.Context, stdout, stderr io.Writer, file string, o decodeFlags) error {
	var in []byte
	var err error
	if file == "-" {
		in, err = io.ReadAll(io.LimitReader(os.Stdin, maxHistoryBytes+1))
	} else {
		in, err = readLimited(file)
	}
	if err != nil {
		return fmt.Errorf("read history: %w", err)
	}
	if len(in) > maxHistoryBytes {
		return fmt.Errorf("history file is larger than %d bytes", maxHistoryBytes)
	}
	pol, err := policy.Load(o.policyFile)
	if err != nil {
		return err
	}
	audit, err := policy.OpenAudit(o.auditLog)
	if err != nil {
		return err
	}
	defer audit.Close()
	kr, err := decodeOpenKeyring(ctx, o.keyDir)
	if err != nil {
		return err
	}
	c, err := codec.New(kr)
	if err != nil {
		return err
	}
	id := policy.Identity{Subject: o.as, Groups: o.groups, Method: "local"}
	res, decErr := decodeHistory(ctx, in, decodeRequest{
		namespace: o.namespace, identity: id, codec: c, authz: pol.Access, audit: audit, shorthand: !o.noShorthand,
	})
	if res == nil {
		return decErr
	}
	out := stdout
	if o.output != "" {
		f, err := os.OpenFile(o.output, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		defer f.Close()
		out = f
	}
	if _, err := out.Write(append(res.json, '\n')); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "decoded %d of %d payloads (namespace %q, as %q); audit record %d\n", res.payloads-res.failed, res.payloads, o.namespace, o.as, res.auditSeq)
	return decErr
}

const maxHistoryBytes = 1 << 30

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxHistoryBytes+1))
}

type decodeRequest struct {
	namespace string
	identity  policy.Identity
	codec     codecserver.Codec
	authz     codecserver.Authorizer
	audit     codecserver.AuditLog
	shorthand bool
}

type decodeResult struct {
	json     []byte
	payloads int
	failed   int
	auditSeq uint64
}

// errDecodeDenied is returned when the policy refuses the identity: codecserver.ErrForbidden in the command's words.
var errDecodeDenied error = &wrappedSentinel{msg: "decode not allowed", err: codecserver.ErrForbidden}

// wrappedSentinel gives another package's sentinel a message of its own while errors.Is still finds the original.
type wrappedSentinel struct {
	msg string
	err error
}

func (e *wrappedSentinel) Error() string { return e.msg }
func (e *wrappedSentinel) Unwrap() error { return e.err }

// slotKey marks the placeholder that stands in a history for payload number N of the flat list while it is decoded.
// Visit order alone cannot say where a payload goes back: memo, header and search-attribute maps are walked in
// random order, and payloads inside Any values are new objects on every walk. A placeholder carries its number.
const slotKey = "blindfold-decode-slot"

// decodeHistory authorizes, audits and decodes an exported history through codecserver.Decoder, the codec endpoint's
// decode path. It returns a result (and possibly an error naming failed payloads) once authorized and recorded; a nil
// result means nothing was decoded.
func decodeHistory(ctx context.Context, in []byte, req decodeRequest) (*decodeResult, error) {
	msg, err := parseHistory(in)
	if err != nil {
		return nil, err
	}
	// First pass: collect the payloads into one list, leaving a numbered placeholder where each one was.
	var payloads []*commonpb.Payload
	err = proxy.VisitPayloads(ctx, msg, proxy.VisitPayloadsOptions{
		Visitor: func(_ *proxy.VisitPayloadsContext, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
			out := make([]*commonpb.Payload, len(ps))
			for i, p := range ps {
				out[i] = &commonpb.Payload{Metadata: map[string][]byte{slotKey: []byte(strconv.Itoa(len(payloads)))}}
				payloads = append(payloads, p)
			}
			return out, nil
		},
	})
	if err != nil {
		return nil, fmt.Errorf("walk history payloads: %w", err)
	}
	dec := codecserver.Decoder{Codec: req.codec, Authorizer: req.authz, Audit: req.audit}
	res, err := dec.Decode(ctx, codecserver.DecodeRequest{Identity: req.identity, Namespace: req.namespace, Via: codecserver.ViaDecodeCommand}, payloads)
	if err != nil {
		var fe *codecserver.ForbiddenError
		switch {
		case errors.As(err, &fe) && fe.AuditErr != nil:
			return nil, fmt.Errorf("%w: %s (and the audit log failed: %w)", errDecodeDenied, fe.Reason, fe.AuditErr)
		case errors.As(err, &fe):
			return nil, fmt.Errorf("%w: %s", errDecodeDenied, fe.Reason)
		}
		return nil, fmt.Errorf("decode history payloads: %w", err)
	}

	// Second pass: put each result where its placeholder stands.
	placed := make([]bool, len(res.Payloads))
	err = proxy.VisitPayloads(ctx, msg, proxy.VisitPayloadsOptions{
		Visitor: func(_ *proxy.VisitPayloadsContext, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
			out := make([]*commonpb.Payload, len(ps))
			for i, p := range ps {
				n, err := strconv.Atoi(string(p.GetMetadata()[slotKey]))
				if err != nil || len(p.GetMetadata()) != 1 || n < 0 || n >= len(placed) || placed[n] {
					return nil, errors.New("a payload was not where the first walk left it")
				}
				placed[n] = true
				out[i] = res.Payloads[n]
			}
			return out, nil
		},
	})
	if err != nil {
		return nil, fmt.Errorf("decode history payloads: %w", err)
	}
	// Failure messages and stack traces travel in encoded attributes (now decoded); put them back where readers look.
	dc := converter.GetDefaultDataConverter()
	err = proxy.VisitFailures(ctx, msg, proxy.VisitFailuresOptions{
		Visitor: func(_ *proxy.VisitFailuresContext, f *failurepb.Failure) error {
			if ea := f.GetEncodedAttributes(); ea != nil && !codec.IsEncrypted(ea) {
				converter.DecodeCommonFailureAttributes(dc, f)
				f.EncodedAttributes = nil
			}
			return nil
		},
	})
	if err != nil {
		return nil, fmt.Errorf("restore failure messages: %w", err)
	}
	mo := temporalproto.CustomJSONMarshalOptions{Indent: "  "}
	if req.shorthand {
		mo.Metadata = map[string]any{commonpb.EnablePayloadShorthandMetadataKey: true}
	}
	js, err := mo.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("encode decoded history: %w", err)
	}
	// The record must be durable before any plaintext is printed.
	if err := res.Commit(); err != nil {
		return nil, fmt.Errorf("audit log: %w; refusing to print decoded data", err)
	}
	out := &decodeResult{json: js, payloads: len(payloads), failed: res.Failed, auditSeq: 0}
	if a, ok := req.audit.(interface{ Head() (uint64, string) }); ok {
		out.auditSeq, _ = a.Head()
	}
	if res.Failed > 0 {
		return out, fmt.Errorf("%d of %d payloads could not be decoded (first: %w)", res.Failed, len(payloads), res.FirstErr)
	}
	return out, nil
}

// parseHistory accepts a History or a GetWorkflowExecutionHistoryResponse, in standard protobuf JSON or with the
// temporal CLI's shorthand payloads (plain JSON values in place of json/plain payloads).
func parseHistory(in []byte) (proto.Message, error) {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(in, &probe); err != nil {
		return nil, fmt.Errorf("history is not a JSON object: %w", err)
	}
	var msg proto.Message
	switch {
	case probe["events"] != nil:
		msg = &historypb.History{}
	case probe["history"] != nil || probe["rawHistory"] != nil:
		msg = &workflowservice.GetWorkflowExecutionHistoryResponse{}
	default:
		return nil, errors.New(`history JSON has neither "events" nor "history": export it with temporal workflow show --output json`)
	}
	err := temporalproto.CustomJSONUnmarshalOptions{}.Unmarshal(in, msg)
	if err != nil {
		shorthand := temporalproto.CustomJSONUnmarshalOptions{Metadata: map[string]any{commonpb.EnablePayloadShorthandMetadataKey: true}}
		if err2 := shorthand.Unmarshal(bytes.Clone(in), msg); err2 != nil {
			return nil, fmt.Errorf("parse history: %w", err)
		}
	}
	return msg, nil
}
