package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// GenesisHash is the "previous hash" of the first record of every audit log.
var GenesisHash = strings.Repeat("0", 64)

// Decision values written in audit records.
const (
	AuditAllow = "allow"
	AuditDeny  = "deny"
)

// Record is one line of the audit log. It never holds payload contents: only counts and the key ids named in envelope metadata.
type Record struct {
	// Seq numbers records from 1 without gaps.
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	// Via names the component that decided: "codec-endpoint" or "blindfold-decode".
	Via        string   `json:"via"`
	Identity   Identity `json:"identity"`
	Namespace  string   `json:"namespace,omitempty"`
	Operation  string   `json:"operation,omitempty"`
	Payloads   int      `json:"payloads"`
	KeyIDs     []string `json:"key_ids,omitempty"`
	Decision   string   `json:"decision"`
	Reason     string   `json:"reason"`
	Failed     int      `json:"failed,omitempty"`
	RemoteAddr string   `json:"remote_addr,omitempty"`
	// Prev is the hex SHA-256 of the previous record's line (without its newline), or GenesisHash for the first record.
	Prev string `json:"prev"`
}

// ErrAuditClosed is returned by Append after Close.
var ErrAuditClosed = errors.New("audit log closed")

// AuditLog appends hash-chained records to a JSON-lines file.
//
// Durability: every Append writes the record with one write(2) on an O_APPEND file and fsyncs before returning,
// so a decision is on disk before the caller acts on it (the codec endpoint sends no plaintext until then).
// Concurrency: safe for concurrent use within a process (a mutex orders records); an exclusive flock on the file
// refuses a second writer process. If a write or fsync fails the log becomes unusable (every later Append fails),
// because the chain state on disk is then unknown: callers must fail closed.
type AuditLog struct {
	mu   sync.Mutex
	f    *os.File
	seq  uint64
	head string
	err  error // sticky
}

// OpenAudit opens (creating with mode 0600 if needed) the audit log at path and continues its chain from the last record.
// It does not verify the whole file (use VerifyAudit for that); it refuses a file whose last line is incomplete or not a record.
func OpenAudit(path string) (*AuditLog, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock audit log %s (is another blindfold process writing it?): %w", path, err)
	}
	l := &AuditLog{f: f, head: GenesisHash}
	last, err := lastLine(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("audit log %s: %w", path, err)
	}
	if last != nil {
		var r Record
		if err := json.Unmarshal(last, &r); err != nil || r.Seq == 0 {
			f.Close()
			return nil, fmt.Errorf("audit log %s: last line is not an audit record; run `blindfold audit verify`", path)
		}
		l.seq = r.Seq
		l.head = lineHash(last)
	}
	return l, nil
}

// lastLine returns the last newline-terminated line of f, or nil for an empty file, reading backwards in chunks.
func lastLine(f *os.File) ([]byte, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	if size == 0 {
		return nil, nil
	}
	var tail []byte
	const chunk = 64 << 10
	off := size
	for {
		n := int64(chunk)
		if off < n {
			n = off
		}
		off -= n
		buf := make([]byte, n)
		if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		tail = append(buf, tail...)
		if len(tail) > 0 && tail[len(tail)-1] != '\n' {
			return nil, errors.New("last record is incomplete (no trailing newline); run `blindfold audit verify` and repair by hand")
		}
		body := tail[:len(tail)-1]
		if i := bytes.LastIndexByte(body, '\n'); i >= 0 {
			return body[i+1:], nil
		}
		if off == 0 {
			return body, nil
		}
		if len(tail) > maxRecordBytes {
			return nil, errors.New("last line is longer than any record")
		}
	}
}

// maxRecordBytes bounds one line; Append refuses bigger records and VerifyAudit reports longer lines.
const maxRecordBytes = 1 << 20

func lineHash(line []byte) string {
	sum := sha256.Sum256(line)
	return hex.EncodeToString(sum[:])
}

// Append assigns r its sequence number, previous hash and (if zero) time, writes it durably, and returns the new head hash.
func (l *AuditLog) Append(r Record) (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return "", l.err
	}
	r.Seq = l.seq + 1
	r.Prev = l.head
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	r.Time = r.Time.UTC()
	line, err := json.Marshal(r)
	if err != nil {
		return "", fmt.Errorf("encode audit record: %w", err)
	}
	if len(line)+1 > maxRecordBytes {
		return "", fmt.Errorf("audit record of %d bytes exceeds the %d-byte limit", len(line), maxRecordBytes)
	}
	buf := append(line, '\n')
	if _, err := l.f.Write(buf); err != nil {
		l.err = fmt.Errorf("audit log write failed, log disabled: %w", err)
		return "", l.err
	}
	if err := l.f.Sync(); err != nil {
		l.err = fmt.Errorf("audit log fsync failed, log disabled: %w", err)
		return "", l.err
	}
	l.seq = r.Seq
	l.head = lineHash(line)
	return l.head, nil
}

// Head returns the number of records and the hash of the last one (GenesisHash when empty).
// Publishing the head elsewhere (logs, a ticket) anchors the chain: see VerifyOptions.Anchor.
func (l *AuditLog) Head() (uint64, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seq, l.head
}

// Close releases the file; later Appends fail with ErrAuditClosed.
func (l *AuditLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	if l.err == nil {
		l.err = ErrAuditClosed
	}
	return err
}
