package policy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// ErrAuditTampered is wrapped by every VerifyAudit error that points at a bad record.
var ErrAuditTampered = errors.New("audit log chain broken")

// VerifyOptions tunes VerifyAudit.
type VerifyOptions struct {
	// Anchor, when set, is a head hash recorded elsewhere earlier (e.g. printed by `blindfold audit verify` or logged by the endpoint).
	// Verification then also fails unless some record's hash equals it, which detects removal or rewriting of the records up to the anchor,
	// including the tail, which a hash chain alone cannot protect.
	Anchor string
}

// AuditSummary describes a log that verified.
type AuditSummary struct {
	Records uint64
	// Head is the hash of the last record's line (GenesisHash for an empty log).
	Head string
	// AnchorSeq is the sequence number of the record matching VerifyOptions.Anchor (0 if no anchor was given).
	AnchorSeq uint64
}

// AuditError locates the first bad line of a log.
type AuditError struct {
	Line int
	Msg  string
}

func (e *AuditError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

// Unwrap makes every AuditError match ErrAuditTampered.
func (e *AuditError) Unwrap() error { return ErrAuditTampered }

// VerifyAudit reads a whole audit log and checks that it is an unbroken chain from the genesis hash.
//
// It detects any edited record except the last, any removed record except at the tail, reordered records,
// inserted records, and an incomplete last line. Without an anchor it cannot detect that the last records
// were removed, or that the last record was edited (nothing after it carries its hash): pass
// VerifyOptions.Anchor with a head hash kept outside the log to close that gap.
func VerifyAudit(r io.Reader, opts VerifyOptions) (AuditSummary, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	sum := AuditSummary{Head: GenesisHash}
	lineNo := 0
	for {
		line, err := readLine(br)
		if errors.Is(err, io.EOF) && line == nil {
			break
		}
		lineNo++
		if err != nil && !errors.Is(err, io.EOF) {
			if errors.Is(err, errLineTooLong) {
				return sum, &AuditError{Line: lineNo, Msg: err.Error()}
			}
			return sum, fmt.Errorf("read audit log: %w", err)
		}
		if errors.Is(err, io.EOF) {
			return sum, &AuditError{Line: lineNo, Msg: "incomplete record (no trailing newline): the log was cut or a write was interrupted"}
		}
		rec, perr := parseRecord(line)
		if perr != nil {
			return sum, &AuditError{Line: lineNo, Msg: perr.Error()}
		}
		if rec.Seq != sum.Records+1 {
			return sum, &AuditError{Line: lineNo, Msg: fmt.Sprintf("sequence number %d, expected %d: a record was removed, inserted or moved", rec.Seq, sum.Records+1)}
		}
		if rec.Prev != sum.Head {
			return sum, &AuditError{Line: lineNo, Msg: fmt.Sprintf("previous-hash %s does not match the hash %s of the record before it: that record was edited, or records were removed or reordered", short(rec.Prev), short(sum.Head))}
		}
		sum.Records = rec.Seq
		sum.Head = lineHash(line)
		if opts.Anchor != "" && sum.Head == opts.Anchor {
			sum.AnchorSeq = rec.Seq
		}
	}
	if opts.Anchor != "" && sum.AnchorSeq == 0 && !(opts.Anchor == GenesisHash) {
		return sum, fmt.Errorf("%w: anchor %s is not the hash of any record: records up to the anchor were removed or rewritten", ErrAuditTampered, short(opts.Anchor))
	}
	return sum, nil
}

var errLineTooLong = fmt.Errorf("line longer than %d bytes", maxRecordBytes)

// readLine returns one line without its newline; io.EOF with a non-nil line means the last line had no newline.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		line = append(line, frag...)
		if len(line) > maxRecordBytes {
			return line, errLineTooLong
		}
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if len(line) == 0 {
				return nil, io.EOF
			}
			return line, io.EOF
		default:
			return nil, err
		}
	}
}

func parseRecord(line []byte) (*Record, error) {
	if len(bytes.TrimSpace(line)) == 0 {
		return nil, errors.New("empty line")
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	var r Record
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("not a valid audit record: %v", err)
	}
	if dec.More() {
		return nil, errors.New("not a valid audit record: trailing data after the JSON object")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("not a valid audit record: trailing data after the JSON object")
	}
	if r.Decision != AuditAllow && r.Decision != AuditDeny {
		return nil, fmt.Errorf("decision %q is neither %q nor %q", r.Decision, AuditAllow, AuditDeny)
	}
	if r.Time.IsZero() {
		return nil, errors.New("record has no time")
	}
	if len(r.Prev) != 64 {
		return nil, errors.New("record has no valid previous-hash")
	}
	return &r, nil
}

func short(h string) string {
	if len(h) > 16 {
		return h[:16] + "…"
	}
	return h
}
