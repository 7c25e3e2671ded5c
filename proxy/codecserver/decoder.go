package codecserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	commonpb "go.temporal.io/api/common/v1"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/policy"
)

// Values of DecodeRequest.Via, naming the component that decided in the audit record.
const (
	ViaCodecEndpoint = "codec-endpoint"   // the HTTP codec endpoint (Handler)
	ViaDecodeCommand = "blindfold-decode" // the offline `blindfold decode` command
)

// ErrForbidden means the authorizer refused a decode. Decoder.Decode returns it wrapped in a *ForbiddenError.
var ErrForbidden = errors.New("forbidden")

// ForbiddenError is the error Decoder.Decode returns when the authorizer refuses the request; errors.Is(err, ErrForbidden) holds.
type ForbiddenError struct {
	// Reason is the authorizer's reason, as recorded in the deny record.
	Reason string
	// AuditErr is why the deny record could not be written, or nil if it was.
	AuditErr error
}

func (e *ForbiddenError) Error() string {
	if e.AuditErr != nil {
		return fmt.Sprintf("forbidden: %s (and the audit log failed: %v)", e.Reason, e.AuditErr)
	}
	return "forbidden: " + e.Reason
}

// Unwrap lets errors.Is find ErrForbidden and, when the deny record was lost, the audit log's error.
func (e *ForbiddenError) Unwrap() []error {
	if e.AuditErr != nil {
		return []error{ErrForbidden, e.AuditErr}
	}
	return []error{ErrForbidden}
}

// BudgetCodec is a Codec that charges the decompressed bytes of several Decode calls to one budget, so that a request
// decoded in parallel chunks is capped as a whole: without it, every chunk would get the codec's own cap, and a
// request of many chunks full of small zstd bombs could expand to many times that. *codec.Codec implements it.
// MaxDecodedTotal is the cap a request gets when the Decoder sets none.
type BudgetCodec interface {
	DecodeWithin(ctx context.Context, namespace string, payloads []*commonpb.Payload, b *codec.DecodeBudget) ([]*commonpb.Payload, error)
	MaxDecodedTotal() int
}

// Decoder is Blindfold's one decode path: authorize, audit, decode, mark failures. The codec endpoint (Handler) and
// `blindfold decode` both go through it, so a payload is opened under the same rules and leaves the same record
// whichever way an auditor reads it. Codec, Authorizer and Audit are required. A Decoder is safe for concurrent use
// once its fields are set; do not change them afterwards.
type Decoder struct {
	Codec      Codec
	Authorizer Authorizer
	Audit      AuditLog
	// Logger receives one line per audited decision (never payload data). Nil logs nothing, for callers that report
	// on their own (the CLI).
	Logger *slog.Logger
	// KeyID names the key that sealed a payload, read from its envelope metadata, for the audit record; "" for
	// payloads that are not encrypted; namespace is the one it is opened in. Nil means codec.KeyIDIn (Blindfold envelopes).
	KeyID func(p *commonpb.Payload, namespace string) string
	// MaxDecodedBytes caps the bytes the compressed payloads of one request may expand to, all chunks together; 0
	// means the codec's own cap (BudgetCodec.MaxDecodedTotal). It needs a Codec that implements BudgetCodec; with any
	// other Codec, each Decode call is capped by the Codec alone.
	MaxDecodedBytes int64
}

// DecodeRequest says who asks to decode, where, and through what; it becomes the audit record.
type DecodeRequest struct {
	Identity  policy.Identity
	Namespace string
	// Via is ViaCodecEndpoint or ViaDecodeCommand.
	Via string
	// RemoteAddr is the caller's network address, empty offline.
	RemoteAddr string
}

// Decoded is the result of an authorized decode. Its payloads are plaintext: the caller prepares its output from
// them, then calls Commit, and releases nothing unless Commit returned nil.
type Decoded struct {
	// Payloads has one entry per payload given, in order: the decoded payload, or the ciphertext as given with a
	// DecodeErrorKey metadata entry saying why it could not be opened.
	Payloads []*commonpb.Payload
	// Failed counts the payloads that stayed encrypted.
	Failed int
	// FirstErr is the codec's error for the first failed payload (in input order), nil when none failed.
	FirstErr error

	d         *Decoder
	rec       policy.Record
	once      sync.Once
	commitErr error
}

// Commit appends the allow record (with the failure count) to the audit log and returns an error if it is not
// durable, in which case the caller must discard the plaintext. The record is written at most once; later calls
// return the first call's result.
func (r *Decoded) Commit() error {
	r.once.Do(func() {
		rec := r.rec
		rec.Decision, rec.Failed = policy.AuditAllow, r.Failed
		r.commitErr = r.d.audit(rec)
	})
	return r.commitErr
}

// Decode authorizes req to decode payloads and, if allowed, decodes them.
//
// The audit record counts the payloads and names the key ids that sealed them (sorted), never their content.
// When the authorizer refuses, Decode writes the deny record and returns a *ForbiddenError. Otherwise it decodes
// every payload it can: chunks run in parallel and a chunk the codec rejects is retried payload by payload, so one
// bad payload (destroyed key, tampered, sealed for another namespace) does not hide the rest. The allow record is
// left for Decoded.Commit, so that it is on disk before any plaintext leaves but after the caller knows it can
// produce its output.
//
// If ctx ends during the decode, the failures say nothing about the payloads: Decode records the decision as allowed
// with every payload failed and "decode timed out", and returns an error wrapping ctx.Err(). Likewise when the
// request's compressed payloads expand past MaxDecodedBytes: the decision is recorded with every payload failed and
// the error wraps codec.ErrDecodedTooLarge and names the cap (one payload over the codec's per-payload cap is only that
// payload's failure). Nil payloads are bad input: Decode rejects them before deciding anything, so nothing is audited.
func (d *Decoder) Decode(ctx context.Context, req DecodeRequest, payloads []*commonpb.Payload) (*Decoded, error) {
	return d.decodeEach(ctx, req, payloads, nil)
}

// chunkFunc is called by the decode's workers with each chunk's results, out[lo:hi] of the whole: concurrently, in no
// particular order, each range once. It lets the handler prepare its response while the chunk's plaintext is still in
// the core's cache; it must not keep the payloads beyond what Decoded.Commit guards.
type chunkFunc func(lo, hi int, out []*commonpb.Payload)

// decodeEach is Decode with each, if not nil, called on every chunk once decoded (see chunkFunc). When the decode
// fails as a whole (timeout, budget), each may have seen some chunks: the caller discards what it made of them.
func (d *Decoder) decodeEach(ctx context.Context, req DecodeRequest, payloads []*commonpb.Payload, each chunkFunc) (*Decoded, error) {
	if d.Codec == nil || d.Authorizer == nil || d.Audit == nil {
		return nil, errors.New("codecserver: Decoder needs Codec, Authorizer and Audit")
	}
	for i, p := range payloads {
		if p == nil {
			return nil, fmt.Errorf("codecserver: payload %d is nil", i)
		}
	}
	rec := policy.Record{
		Via: req.Via, Identity: req.Identity, Namespace: req.Namespace, Operation: string(policy.OpDecode), RemoteAddr: req.RemoteAddr,
		Payloads: len(payloads), Decision: policy.AuditDeny,
	}
	dec := d.Authorizer.Authorize(ctx, req.Identity, req.Namespace, policy.OpDecode)
	rec.Reason = dec.Reason
	if !dec.Allow {
		rec.KeyIDs, rec.Bindings = d.keyIDs(payloads, req.Namespace), bindings(payloads)
		return nil, &ForbiddenError{Reason: dec.Reason, AuditErr: d.audit(rec)}
	}
	budget := d.budget()
	// The record's key ids and bindings are read from the payloads' envelopes by the same workers that decode them
	// (every chunk, also one whose decode is skipped), which makes them the same lists keyIDs and bindings give.
	out, failed, firstErr, claims := d.decode(ctx, req.Namespace, payloads, budget, each)
	rec.KeyIDs, rec.Bindings = claims.keyIDs(), claims.bindings()
	if ctx.Err() != nil {
		rec.Decision, rec.Failed = policy.AuditAllow, len(payloads)
		rec.Reason = dec.Reason + "; decode timed out"
		if err := d.audit(rec); err != nil {
			return nil, fmt.Errorf("codecserver: decode did not finish: %w (and the audit log failed: %w)", ctx.Err(), err)
		}
		return nil, fmt.Errorf("codecserver: decode did not finish: %w", ctx.Err())
	}
	if budget != nil && budget.Exceeded() {
		rec.Decision, rec.Failed = policy.AuditAllow, len(payloads)
		rec.Reason = fmt.Sprintf("%s; decoded payloads over the limit of %d bytes per request", dec.Reason, budget.Limit())
		tooLarge := fmt.Errorf("codecserver: decoded payloads exceed the limit of %d bytes per request: %w", budget.Limit(), codec.ErrDecodedTooLarge)
		if err := d.audit(rec); err != nil {
			return nil, fmt.Errorf("%w (and the audit log failed: %w)", tooLarge, err)
		}
		return nil, tooLarge
	}
	return &Decoded{Payloads: out, Failed: failed, FirstErr: firstErr, d: d, rec: rec}, nil
}

// audit appends rec and logs the decision with the new head hash, which anchors the chain outside the file.
// A nil error means the record is durable.
func (d *Decoder) audit(rec policy.Record) error {
	head, err := d.Audit.Append(rec)
	if d.Logger == nil {
		return err
	}
	level, msg, last := slog.LevelInfo, "codec endpoint decision", slog.String("audit_head", head)
	if err != nil {
		level, msg, last = slog.LevelError, "codec endpoint: audit append failed", slog.Any("err", err)
	}
	// Typed attributes in an array, behind Enabled: the []any form boxed every value, a dozen allocations per request
	// for a client that decodes one payload per request.
	ctx := context.Background()
	if !d.Logger.Enabled(ctx, level) {
		return err
	}
	attrs := [...]slog.Attr{slog.String("subject", rec.Identity.Subject), slog.String("method", rec.Identity.Method),
		slog.String("namespace", rec.Namespace), slog.String("operation", rec.Operation), slog.Int("payloads", rec.Payloads),
		slog.Int("failed", rec.Failed), slog.String("decision", rec.Decision), slog.String("reason", rec.Reason),
		slog.String("remote", rec.RemoteAddr), last}
	d.Logger.LogAttrs(ctx, level, msg, attrs[:]...)
	return err
}

// bindings lists the distinct bindings the payloads claim (format v2), for the audit record: which workflows' data an
// auditor decoded. Claims are read before decoding; a payload whose claim is false does not open.
func bindings(payloads []*commonpb.Payload) []string {
	var out []string
	more := 0
	for _, p := range payloads {
		b, ok := codec.BindingOf(p)
		if !ok || b.Kind == codec.BindNamespace {
			continue
		}
		s := b.String()
		if slices.Contains(out, s) {
			continue
		}
		if len(out) == policy.MaxAuditBindings {
			more++
			continue
		}
		out = append(out, s)
	}
	slices.Sort(out)
	if more > 0 {
		out = append(out, fmt.Sprintf("and %d more payloads", more))
	}
	return out
}

// keyIDs lists the distinct key ids that sealed payloads, sorted so that records of the same payloads compare equal.
func (d *Decoder) keyIDs(payloads []*commonpb.Payload, namespace string) []string {
	keyID := d.keyIDOf()
	var ids []string
	for _, p := range payloads {
		if id := keyID(p, namespace); id != "" && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return capKeyIDs(ids)
}

// capKeyIDs keeps the first policy.MaxAuditKeyIDs of sorted, distinct ids, then says how many more there were.
func capKeyIDs(ids []string) []string {
	if len(ids) <= policy.MaxAuditKeyIDs {
		return ids
	}
	more := len(ids) - policy.MaxAuditKeyIDs
	return append(ids[:policy.MaxAuditKeyIDs:policy.MaxAuditKeyIDs], fmt.Sprintf("and %d more key ids", more))
}

// keyIDOf returns d.KeyID, or codec.KeyIDIn's id when it is nil.
func (d *Decoder) keyIDOf() func(p *commonpb.Payload, namespace string) string {
	if d.KeyID != nil {
		return d.KeyID
	}
	return func(p *commonpb.Payload, namespace string) string {
		id, _ := codec.KeyIDIn(p, namespace)
		return id
	}
}

// chunkClaims is what one chunk's envelopes claim, for the audit record: distinct key ids and bindings (other than
// the namespace), each in the order of its first payload, the bindings with how many payloads claim each.
type chunkClaims struct {
	ids   []string
	binds []bindingCount
}

type bindingCount struct {
	b codec.Binding
	n int
}

// add reads p's claims.
func (c *chunkClaims) add(p *commonpb.Payload, id string) {
	if id != "" && !slices.Contains(c.ids, id) {
		c.ids = append(c.ids, id)
	}
	b, ok := codec.BindingOf(p)
	if !ok || b.Kind == codec.BindNamespace {
		return
	}
	for i := range c.binds {
		if c.binds[i].b == b {
			c.binds[i].n++
			return
		}
	}
	c.binds = append(c.binds, bindingCount{b: b, n: 1})
}

// requestClaims are the claims of a request's chunks, in chunk order.
type requestClaims []chunkClaims

// keyIDs is Decoder.keyIDs of the request's payloads.
func (r requestClaims) keyIDs() []string {
	var ids []string
	for _, c := range r {
		ids = append(ids, c.ids...)
	}
	// Sorted, then without repeats: a request of payloads claiming many different keys costs n log n, not n².
	slices.Sort(ids)
	return capKeyIDs(slices.Compact(ids))
}

// bindings is bindings of the request's payloads: taking the chunks' distinct bindings in order, with their counts,
// gives the same first MaxAuditBindings and the same count of payloads beyond them.
func (r requestClaims) bindings() []string {
	var out []string
	more := 0
	for _, c := range r {
		for _, bc := range c.binds {
			s := bc.b.String()
			switch {
			case slices.Contains(out, s):
			case len(out) == policy.MaxAuditBindings:
				more += bc.n
			default:
				out = append(out, s)
			}
		}
	}
	slices.Sort(out)
	if more > 0 {
		out = append(out, fmt.Sprintf("and %d more payloads", more))
	}
	return out
}

// maxDecodeChunk and minDecodeChunk bound the batch size handed to the codec; chunks run in parallel and a failing
// chunk is retried payload by payload. A request gets about four chunks per worker (so that one slow chunk does not
// leave a core idle at the end), within the bounds: a page of 100 payloads is split across the cores too.
const (
	maxDecodeChunk = 256
	minDecodeChunk = 16
)

// decodeChunkSize is the chunk size for n payloads on the given number of workers.
func decodeChunkSize(n, workers int) int {
	return max(minDecodeChunk, min(maxDecodeChunk, (n+4*workers-1)/(4*workers)))
}

// budget returns the request's decoded-size budget, or nil when the Codec cannot charge one (see BudgetCodec).
func (d *Decoder) budget() *codec.DecodeBudget {
	bc, ok := d.Codec.(BudgetCodec)
	if !ok {
		return nil
	}
	n := d.MaxDecodedBytes
	if n <= 0 {
		n = int64(bc.MaxDecodedTotal())
	}
	return codec.NewDecodeBudget(n)
}

// decode opens every payload it can, charging what compressed payloads expand to to b (nil: no shared budget). A
// payload that fails keeps its ciphertext and gains a DecodeErrorKey metadata entry. It returns the failure count, the
// first failure's error in input order and the envelopes' claims, and calls each (if not nil) on every chunk decoded.
// Once b is exceeded the request fails as a whole, so the chunks not started yet are not decoded (their claims are
// still read).
func (d *Decoder) decode(ctx context.Context, ns string, in []*commonpb.Payload, b *codec.DecodeBudget, each chunkFunc) ([]*commonpb.Payload, int, error, requestClaims) {
	out := make([]*commonpb.Payload, len(in))
	size := decodeChunkSize(len(in), runtime.GOMAXPROCS(0))
	chunks := (len(in) + size - 1) / size
	keyID := d.keyIDOf()
	if chunks <= 1 {
		// One chunk (every request of the temporal CLI, one payload each) is decoded here, without the workers' shared
		// state, which cost as many allocations as the decode itself.
		claims := make(requestClaims, 1)
		for _, p := range in {
			claims[0].add(p, keyID(p, ns))
		}
		if len(in) == 0 || b != nil && b.Exceeded() {
			return out, 0, nil, claims
		}
		failed, firstErr := d.decodeRange(ctx, ns, in, out, b)
		if each != nil {
			each(0, len(in), out)
		}
		return out, failed, firstErr, claims
	}
	// Each chunk owns its slots, so workers write without locking; the sums are taken after they finish.
	failed := make([]int, chunks)
	firstErrs := make([]error, chunks)
	claims := make(requestClaims, chunks)
	workers := min(runtime.GOMAXPROCS(0), chunks)
	var next atomic.Int64
	var wg sync.WaitGroup
	work := func() {
		for {
			c := int(next.Add(1) - 1)
			if c >= chunks {
				return
			}
			lo, hi := c*size, min((c+1)*size, len(in))
			cl := &claims[c]
			for _, p := range in[lo:hi] {
				cl.add(p, keyID(p, ns))
			}
			if b != nil && b.Exceeded() {
				continue
			}
			failed[c], firstErrs[c] = d.decodeRange(ctx, ns, in[lo:hi], out[lo:hi], b)
			if each != nil {
				each(lo, hi, out)
			}
		}
	}
	// The caller's goroutine is one of the workers: a request of one chunk starts none.
	for range workers - 1 {
		wg.Go(work)
	}
	work()
	wg.Wait()
	total := 0
	var firstErr error
	for c := range chunks {
		total += failed[c]
		if firstErr == nil {
			firstErr = firstErrs[c]
		}
	}
	return out, total, firstErr, claims
}

// decodeRange decodes one chunk, and payload by payload if the chunk fails. A failed codec call gives back what it
// charged to b, so the retry is not charged twice.
func (d *Decoder) decodeRange(ctx context.Context, ns string, in, out []*commonpb.Payload, b *codec.DecodeBudget) (int, error) {
	decode := d.Codec.Decode
	if b != nil {
		bc := d.Codec.(BudgetCodec)
		decode = func(ctx context.Context, ns string, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
			return bc.DecodeWithin(ctx, ns, ps, b)
		}
	}
	res, err := decode(ctx, ns, in)
	if err == nil && len(res) == len(in) {
		copy(out, res)
		return 0, nil
	}
	if b != nil && b.Exceeded() {
		// The request fails as a whole (see Decode): retrying the chunk's payloads would tell nothing more.
		return len(in), err
	}
	failed := 0
	var firstErr error
	for i, p := range in {
		res, err := decode(ctx, ns, []*commonpb.Payload{p})
		if err == nil && len(res) == 1 && res[0] != nil {
			out[i] = res[0]
			continue
		}
		if err == nil {
			err = errors.New("codec returned no payload")
		}
		failed++
		if firstErr == nil {
			firstErr = err
		}
		out[i] = markFailed(p, err)
	}
	return failed, firstErr
}

// markFailed returns a copy of p (the ciphertext the caller sent) with a metadata entry saying why it stayed encrypted.
func markFailed(p *commonpb.Payload, err error) *commonpb.Payload {
	md := make(map[string][]byte, len(p.GetMetadata())+1)
	for k, v := range p.GetMetadata() {
		md[k] = v
	}
	// The codec numbers payloads within its batch, which here is always this one payload.
	msg := strings.TrimPrefix(err.Error(), "decode payload 0 ")
	if len(msg) > 300 {
		msg = msg[:300] + "…"
	}
	md[DecodeErrorKey] = []byte(msg)
	return &commonpb.Payload{Metadata: md, Data: p.GetData(), ExternalPayloads: p.GetExternalPayloads()}
}
