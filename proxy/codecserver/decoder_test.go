package codecserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"google.golang.org/protobuf/proto"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/codec/codectest"
	"github.com/blindfold-dev/blindfold/policy"
)

// memAudit records appended records in memory; err makes every Append fail.
type memAudit struct {
	mu   sync.Mutex
	recs []policy.Record
	err  error
}

func (a *memAudit) Append(r policy.Record) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err != nil {
		return "", a.err
	}
	a.recs = append(a.recs, r)
	return fmt.Sprintf("head-%d", len(a.recs)), nil
}

func (a *memAudit) records() []policy.Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]policy.Record(nil), a.recs...)
}

// funcCodec decodes with a function, to produce the codec misbehaviour a real codec does not.
type funcCodec func(ps []*commonpb.Payload) ([]*commonpb.Payload, error)

func (funcCodec) EncodeFor(_ context.Context, _ codec.Target, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
	return ps, nil
}

func (f funcCodec) Decode(_ context.Context, _ string, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
	return f(ps)
}

var (
	auditor  = policy.Identity{Subject: "alice", Groups: []string{"auditors"}, Method: "static"}
	stranger = policy.Identity{Subject: "mallory", Method: "static"}
)

func decoderFixture(t *testing.T) (*Decoder, *codectest.Keyring, *codec.Codec, *memAudit) {
	t.Helper()
	pol, err := policy.Parse("test.yaml", []byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	kr := codectest.NewKeyring()
	c, err := codec.New(kr)
	if err != nil {
		t.Fatal(err)
	}
	al := &memAudit{}
	return &Decoder{Codec: c, Authorizer: pol.Access, Audit: al}, kr, c, al
}

func sealPlain(t *testing.T, c *codec.Codec, ns string, data ...string) []*commonpb.Payload {
	t.Helper()
	var ps []*commonpb.Payload
	for _, d := range data {
		ps = append(ps, &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte(d)})
	}
	out, err := c.Encode(context.Background(), ns, ps)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDecoderAllowCommit(t *testing.T) {
	d, kr, c, al := decoderFixture(t)
	old := sealPlain(t, c, "default", `"OLD"`)[0]
	if _, err := kr.Rotate("default"); err != nil {
		t.Fatal(err)
	}
	fresh := sealPlain(t, c, "default", `"FRESH"`)[0]
	other := sealPlain(t, c, "prod-1", `"OTHER"`)[0]
	plain := &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte(`"plain"`)}
	req := DecodeRequest{Identity: auditor, Namespace: "default", Via: ViaCodecEndpoint, RemoteAddr: "192.0.2.1:5000"}

	res, err := d.Decode(context.Background(), req, []*commonpb.Payload{fresh, other, plain, old})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Payloads) != 4 || string(res.Payloads[0].Data) != `"FRESH"` || string(res.Payloads[2].Data) != `"plain"` || string(res.Payloads[3].Data) != `"OLD"` {
		t.Fatalf("decoded %v", res.Payloads)
	}
	if res.Failed != 1 || res.FirstErr == nil || !bytes.Equal(res.Payloads[1].Data, other.Data) {
		t.Fatalf("failed %d, first %v, payload %v", res.Failed, res.FirstErr, res.Payloads[1])
	}
	if msg := string(res.Payloads[1].Metadata[DecodeErrorKey]); !strings.Contains(msg, "sealed for another namespace") || strings.HasPrefix(msg, "decode payload 0") {
		t.Fatalf("marker %q", msg)
	}
	if _, ok := other.Metadata[DecodeErrorKey]; ok {
		t.Fatal("the caller's payload was modified")
	}
	if n := len(al.records()); n != 0 {
		t.Fatalf("%d records before Commit; the allow record belongs to Commit", n)
	}
	if err := res.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := res.Commit(); err != nil {
		t.Fatal(err)
	}
	recs := al.records()
	if len(recs) != 1 {
		t.Fatalf("%d records after two Commits, want 1", len(recs))
	}
	r := recs[0]
	oldID, _ := codec.KeyIDIn(old, "default")
	freshID, _ := codec.KeyIDIn(fresh, "default")
	otherID, _ := codec.KeyIDIn(other, "default")
	wantIDs := []string{oldID, freshID, otherID}
	slices.Sort(wantIDs)
	if r.Decision != policy.AuditAllow || r.Failed != 1 || r.Payloads != 4 || r.Via != ViaCodecEndpoint || r.RemoteAddr != req.RemoteAddr ||
		r.Identity.Subject != "alice" || r.Namespace != "default" || r.Operation != "decode" || fmt.Sprint(r.KeyIDs) != fmt.Sprint(wantIDs) {
		t.Fatalf("record %+v, want key ids %v", r, wantIDs)
	}
}

func TestDecoderDenied(t *testing.T) {
	d, _, c, al := decoderFixture(t)
	ps := sealPlain(t, c, "default", `"SECRET"`)
	res, err := d.Decode(context.Background(), DecodeRequest{Identity: stranger, Namespace: "default", Via: ViaDecodeCommand}, ps)
	var fe *ForbiddenError
	if res != nil || !errors.Is(err, ErrForbidden) || !errors.As(err, &fe) || fe.Reason == "" || fe.AuditErr != nil {
		t.Fatalf("%v %v", res, err)
	}
	if !strings.HasPrefix(err.Error(), "forbidden: ") {
		t.Fatalf("message %q", err)
	}
	recs := al.records()
	if len(recs) != 1 || recs[0].Decision != policy.AuditDeny || recs[0].Payloads != 1 || len(recs[0].KeyIDs) != 1 || recs[0].Via != ViaDecodeCommand || recs[0].Reason != fe.Reason {
		t.Fatalf("records %+v", recs)
	}

	// A refusal whose record is lost is still a refusal, and says the record is lost.
	disk := errors.New("disk full")
	al.err = disk
	_, err = d.Decode(context.Background(), DecodeRequest{Identity: stranger, Namespace: "default"}, ps)
	if !errors.Is(err, ErrForbidden) || !errors.Is(err, disk) || !strings.Contains(err.Error(), "audit log failed") {
		t.Fatalf("%v", err)
	}
}

func TestDecoderAuditFailureReleasesNothing(t *testing.T) {
	d, _, c, al := decoderFixture(t)
	disk := errors.New("disk full")
	al.err = disk
	res, err := d.Decode(context.Background(), DecodeRequest{Identity: auditor, Namespace: "default"}, sealPlain(t, c, "default", `"SECRET"`))
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Commit(); !errors.Is(err, disk) {
		t.Fatalf("Commit: %v", err)
	}
	// The failure is sticky: a second Commit must not report a record that was never written.
	al.err = nil
	if err := res.Commit(); !errors.Is(err, disk) {
		t.Fatalf("second Commit: %v", err)
	}
	if n := len(al.records()); n != 0 {
		t.Fatalf("%d records", n)
	}
}

func TestDecoderBadInput(t *testing.T) {
	d, _, c, al := decoderFixture(t)
	req := DecodeRequest{Identity: auditor, Namespace: "default"}
	for name, ps := range map[string][]*commonpb.Payload{
		"nil first": {nil, sealPlain(t, c, "default", `"A"`)[0]},
		"nil later": {sealPlain(t, c, "default", `"A"`)[0], nil},
	} {
		if res, err := d.Decode(context.Background(), req, ps); res != nil || err == nil || !strings.Contains(err.Error(), "is nil") {
			t.Errorf("%s: %v %v", name, res, err)
		}
	}
	if n := len(al.records()); n != 0 {
		t.Fatalf("bad input was audited: %d records", n)
	}
	for i, bad := range []*Decoder{
		{Authorizer: d.Authorizer, Audit: d.Audit},
		{Codec: d.Codec, Audit: d.Audit},
		{Codec: d.Codec, Authorizer: d.Authorizer},
	} {
		if _, err := bad.Decode(context.Background(), req, nil); err == nil {
			t.Errorf("decoder %d without a required field decoded", i)
		}
	}
	// No payloads is not an error: the decision is still made and recorded.
	res, err := d.Decode(context.Background(), req, nil)
	if err != nil || len(res.Payloads) != 0 || res.Commit() != nil {
		t.Fatalf("%v %v", res, err)
	}
	if recs := al.records(); len(recs) != 1 || recs[0].Payloads != 0 {
		t.Fatalf("%+v", recs)
	}
}

func TestDecoderCodecErrors(t *testing.T) {
	_, _, _, al := decoderFixture(t)
	long := strings.Repeat("x", 400)
	c := funcCodec(func(ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
		if len(ps) > 1 {
			return nil, errors.New("batch refused")
		}
		switch string(ps[0].Data) {
		case "nil":
			return []*commonpb.Payload{nil}, nil
		case "none":
			return nil, nil
		case "long":
			return nil, errors.New("decode payload 0 " + long)
		case "bad":
			return nil, fmt.Errorf("decode payload 0 (key k1): %w", codec.ErrKeyDestroyed)
		}
		return []*commonpb.Payload{{Data: bytes.ToUpper(ps[0].Data)}}, nil
	})
	d := &Decoder{Codec: c, Authorizer: policy.DevAccess(), Audit: al, KeyID: func(p *commonpb.Payload, _ string) string { return string(p.Metadata["kid"]) }}
	in := []*commonpb.Payload{
		{Data: []byte("ok")}, {Data: []byte("nil")}, {Data: []byte("none")}, {Data: []byte("long")},
		{Data: []byte("bad"), Metadata: map[string][]byte{"kid": []byte("k1")}},
	}
	res, err := d.Decode(context.Background(), DecodeRequest{Identity: auditor, Namespace: "default"}, in)
	if err != nil {
		t.Fatal(err)
	}
	if res.Failed != 4 || string(res.Payloads[0].Data) != "OK" || res.FirstErr == nil || res.FirstErr.Error() != "codec returned no payload" {
		t.Fatalf("failed %d first %v %v", res.Failed, res.FirstErr, res.Payloads)
	}
	for i, want := range map[int]string{1: "codec returned no payload", 2: "codec returned no payload", 3: long[:300] + "…", 4: "(key k1): key destroyed"} {
		p := res.Payloads[i]
		if got := string(p.Metadata[DecodeErrorKey]); !strings.HasPrefix(got, want) || !bytes.Equal(p.Data, in[i].Data) {
			t.Errorf("payload %d: marker %q, want %q; data %q", i, got, want, p.Data)
		}
	}
	if string(res.Payloads[4].Metadata["kid"]) != "k1" {
		t.Error("a failed payload lost its metadata")
	}
	if err := res.Commit(); err != nil {
		t.Fatal(err)
	}
	if r := al.records()[0]; r.Failed != 4 || fmt.Sprint(r.KeyIDs) != "[k1]" {
		t.Fatalf("%+v", r)
	}
}

// TestDecoderManyChunks decodes across several parallel chunks and checks order, counts and the first failure by index.
func TestDecoderManyChunks(t *testing.T) {
	_, _, _, al := decoderFixture(t)
	c := funcCodec(func(ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
		out := make([]*commonpb.Payload, len(ps))
		for i, p := range ps {
			if strings.HasPrefix(string(p.Data), "fail") {
				return nil, fmt.Errorf("decode payload %d: %s", i, p.Data)
			}
			out[i] = &commonpb.Payload{Data: append([]byte("dec-"), p.Data...)}
		}
		return out, nil
	})
	d := &Decoder{Codec: c, Authorizer: policy.DevAccess(), Audit: al}
	n := 3*maxDecodeChunk + 7
	in := make([]*commonpb.Payload, n)
	for i := range in {
		in[i] = &commonpb.Payload{Data: fmt.Appendf(nil, "p%d", i)}
	}
	fails := []int{maxDecodeChunk + 3, 2*maxDecodeChunk + 1, n - 1}
	for _, i := range fails {
		in[i].Data = fmt.Appendf(nil, "fail%d", i)
	}
	res, err := d.Decode(context.Background(), DecodeRequest{Identity: auditor, Namespace: "default"}, in)
	if err != nil {
		t.Fatal(err)
	}
	if res.Failed != len(fails) || res.FirstErr == nil || !strings.Contains(res.FirstErr.Error(), fmt.Sprintf("fail%d", fails[0])) {
		t.Fatalf("failed %d, first %v", res.Failed, res.FirstErr)
	}
	for i, p := range res.Payloads {
		if slices.Contains(fails, i) {
			if p.Metadata[DecodeErrorKey] == nil {
				t.Fatalf("payload %d not marked", i)
			}
		} else if string(p.Data) != fmt.Sprintf("dec-p%d", i) {
			t.Fatalf("payload %d = %q", i, p.Data)
		}
	}
}

func TestDecoderDeadline(t *testing.T) {
	_, _, _, al := decoderFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	c := funcCodec(func(ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
		cancel() // the deadline passes while the codec works
		return nil, context.Canceled
	})
	d := &Decoder{Codec: c, Authorizer: policy.DevAccess(), Audit: al}
	res, err := d.Decode(ctx, DecodeRequest{Identity: auditor, Namespace: "default"}, []*commonpb.Payload{{Data: []byte("a")}, {Data: []byte("b")}})
	if res != nil || !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "did not finish") {
		t.Fatalf("%v %v", res, err)
	}
	recs := al.records()
	if len(recs) != 1 || recs[0].Decision != policy.AuditAllow || recs[0].Failed != 2 || !strings.HasSuffix(recs[0].Reason, "; decode timed out") {
		t.Fatalf("%+v", recs)
	}
}

// TestDecoderBudgetRetry: a chunk that fails on one bad payload is retried payload by payload without charging the
// good ones twice, so a request that fits its decoded-size cap decodes even then; a payload over the codec's
// per-payload cap fails alone.
func TestDecoderBudgetRetry(t *testing.T) {
	_, kr, _, al := decoderFixture(t)
	zc, err := codec.New(kr, codec.WithCompression(0), codec.WithMaxDecodedSize(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	bomb := &commonpb.Payload{Data: make([]byte, 64<<10)}
	in := make([]*commonpb.Payload, 10)
	for i := range in {
		in[i] = bomb
	}
	in, err = zc.Encode(context.Background(), "default", in)
	if err != nil {
		t.Fatal(err)
	}
	in[9] = proto.Clone(in[9]).(*commonpb.Payload)
	in[9].Data[len(in[9].Data)-1] ^= 1 // tampered: fails the chunk after nine bodies were charged
	big, err := codec.New(kr, codec.WithCompression(0), codec.WithMaxDecodedSize(4<<20))
	if err != nil {
		t.Fatal(err)
	}
	over, err := big.Encode(context.Background(), "default", []*commonpb.Payload{{Data: make([]byte, 2<<20)}})
	if err != nil {
		t.Fatal(err)
	}
	in = append(in, over[0]) // over zc's per-payload cap, but not the request's

	body := int64(proto.Size(bomb))
	d := &Decoder{Codec: zc, Authorizer: policy.DevAccess(), Audit: al, MaxDecodedBytes: 9*body + body/2}
	res, err := d.Decode(context.Background(), DecodeRequest{Identity: auditor, Namespace: "default"}, in)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if res.Failed != 2 || res.Payloads[9].Metadata[DecodeErrorKey] == nil || !bytes.Contains(res.Payloads[10].Metadata[DecodeErrorKey], []byte("decoded payloads too large")) {
		t.Errorf("failed %d (%q, %q), want the tampered and the oversized payload", res.Failed, res.Payloads[9].Metadata[DecodeErrorKey], res.Payloads[10].Metadata[DecodeErrorKey])
	}
	for i, p := range res.Payloads[:9] {
		if len(p.Data) != 64<<10 {
			t.Errorf("payload %d not decoded", i)
		}
	}
}

// TestDecodeClaimsAcrossChunks checks that the record's key ids and bindings, which the decode's workers read chunk
// by chunk, are the lists keyIDs and bindings give for the whole request: more distinct bindings than
// MaxAuditBindings, spread over several chunks, repeated, some payloads bound to the namespace only, two keys.
func TestDecodeClaimsAcrossChunks(t *testing.T) {
	t.Parallel()
	kr := codectest.NewKeyring()
	c, err := codec.New(kr)
	if err != nil {
		t.Fatal(err)
	}
	var ps []*commonpb.Payload
	for i := range 3 * maxDecodeChunk {
		if i == 2*maxDecodeChunk-10 {
			// The last third is sealed with a newer key.
			if _, err := kr.Rotate("default"); err != nil {
				t.Fatal(err)
			}
		}
		tgt := codec.Target{Namespace: "default"}
		switch {
		case i%5 == 0: // the namespace only
		default:
			tgt.Binding = codec.Workflow(fmt.Sprintf("wf-%d", (i*31)%90))
		}
		enc, err := c.EncodeFor(t.Context(), tgt, []*commonpb.Payload{{Data: []byte(fmt.Sprint(i))}})
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, enc[0])
	}
	d, rec := decodeAudited(t, c, ps)
	if want := d.keyIDs(ps, "default"); !slices.Equal(rec.KeyIDs, want) || len(want) < 2 {
		t.Errorf("key ids %q, want %q", rec.KeyIDs, want)
	}
	if want := bindings(ps); !slices.Equal(rec.Bindings, want) || len(want) != policy.MaxAuditBindings+1 {
		t.Errorf("bindings %q, want %q", rec.Bindings, want)
	}
}

// TestAuditKeyIDsCapped: a request of payloads sealed with more keys than a record lists names the first
// policy.MaxAuditKeyIDs and counts the rest, so envelopes claiming one key each cannot bloat the record.
func TestAuditKeyIDsCapped(t *testing.T) {
	t.Parallel()
	kr := codectest.NewKeyring()
	c, err := codec.New(kr)
	if err != nil {
		t.Fatal(err)
	}
	const keys = policy.MaxAuditKeyIDs + 10
	var ps []*commonpb.Payload
	for i := range keys {
		if i > 0 {
			if _, err := kr.Rotate("default"); err != nil {
				t.Fatal(err)
			}
		}
		enc, err := c.Encode(t.Context(), "default", []*commonpb.Payload{{Data: []byte(fmt.Sprint(i))}})
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, enc[0])
	}
	d, rec := decodeAudited(t, c, ps)
	ids := rec.KeyIDs
	if len(ids) != policy.MaxAuditKeyIDs+1 || ids[len(ids)-1] != "and 10 more key ids" {
		t.Errorf("key ids: %d entries, last %q; want %d and a count of 10 more", len(ids), ids[len(ids)-1], policy.MaxAuditKeyIDs+1)
	}
	if want := d.keyIDs(ps, "default"); !slices.Equal(ids, want) {
		t.Errorf("the chunked claims differ from the whole request's: %q, want %q", ids, want)
	}
}

// decodeAudited decodes ps in namespace "default" as the dev endpoint does, commits, and returns the decoder and the
// one audit record it wrote.
func decodeAudited(t *testing.T, c *codec.Codec, ps []*commonpb.Payload) (*Decoder, policy.Record) {
	t.Helper()
	al := &memAudit{}
	d := &Decoder{Codec: c, Authorizer: policy.DevAccess(), Audit: al}
	res, err := d.Decode(t.Context(), DecodeRequest{Identity: policy.Identity{Subject: "dev"}, Namespace: "default", Via: ViaCodecEndpoint}, ps)
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Commit(); err != nil {
		t.Fatal(err)
	}
	recs := al.records()
	if len(recs) != 1 {
		t.Fatalf("%d audit records, want 1", len(recs))
	}
	return d, recs[0]
}
