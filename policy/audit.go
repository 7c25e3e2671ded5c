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
	"sync/atomic"
	"time"
)

// GenesisHash is the "previous hash" of the first record of every audit log.
var GenesisHash = strings.Repeat("0", 64)

// Decision values written in audit records.
const (
	AuditAllow = "allow"
	AuditDeny  = "deny"
)

// Doors of the gateway, written in audit records (Record.Door): both authorize with the same access rules.
const (
	// DoorGRPC is the gRPC proxy SDK workers and clients call.
	DoorGRPC = "grpc"
	// DoorHTTP is the codec endpoint the Web UI and the temporal CLI call.
	DoorHTTP = "http"
)

// Record is one line of the audit log. It never holds payload contents: only counts and the key ids named in envelope metadata.
type Record struct {
	// Seq numbers records from 1 without gaps.
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	// Via names the component that decided: "codec-endpoint" or "blindfold-decode".
	Via string `json:"via"`
	// Door is the entrance the request came through: DoorGRPC or DoorHTTP (empty in records of older versions and of
	// the offline tool).
	Door      string   `json:"door,omitempty"`
	Identity  Identity `json:"identity"`
	Namespace string   `json:"namespace,omitempty"`
	Operation string   `json:"operation,omitempty"`
	Payloads  int      `json:"payloads"`
	// KeyIDs lists, distinct and sorted, the key ids the payloads claim. At most MaxAuditKeyIDs, then a last entry
	// saying how many more.
	KeyIDs []string `json:"key_ids,omitempty"`
	// Bindings lists, distinct and sorted, what the payloads are bound to besides their namespace (format v2): e.g.
	// `workflow "order-1"`. At most MaxAuditBindings, then a last entry saying how many more.
	Bindings   []string `json:"bindings,omitempty"`
	Decision   string   `json:"decision"`
	Reason     string   `json:"reason"`
	Failed     int      `json:"failed,omitempty"`
	RemoteAddr string   `json:"remote_addr,omitempty"`
	// Prev is the hex SHA-256 of the previous record's line (without its newline), or GenesisHash for the first record.
	Prev string `json:"prev"`
}

// MaxAuditBindings bounds Record.Bindings, so one request of many workflows' payloads cannot bloat its record.
const MaxAuditBindings = 32

// MaxAuditKeyIDs bounds Record.KeyIDs: a scope rotated daily for two months has 64 keys, while envelopes claiming
// forged key ids (one each) must not make a record too large to append, which would refuse the request.
const MaxAuditKeyIDs = 64

// ErrAuditClosed is returned by Append after Close.
var ErrAuditClosed = errors.New("audit log closed")

// AuditLog appends hash-chained records to a JSON-lines file.
//
// Durability: every Append writes the record with one write(2) on an O_APPEND file. What else it waits for is set by
// AuditOptions.SyncWindow:
//   - zero (OpenAudit's default): Append returns only once the record is fsynced, so a decision is on disk before
//     the caller acts on it (the codec endpoint sends no plaintext until then). Concurrent Appends share fsyncs
//     (group commit): while one fsync runs, later records are written and the next fsync covers them all, so N
//     concurrent decisions cost about two fsyncs, not N. A serial caller still pays one fsync per record.
//   - positive: Append returns once the record is written, and a background flusher fsyncs every written record
//     within the window. The record is then in the kernel before the caller acts: it survives the process being
//     killed or crashing, but a power loss or kernel crash can lose the records of the last window.
//
// Concurrency: safe for concurrent use within a process (a mutex orders records); an exclusive flock on the file
// refuses a second writer process. If a write or fsync fails the log becomes unusable (every later Append fails),
// because the chain state on disk is then unknown: callers must fail closed.
type AuditLog struct {
	// mu orders records: it guards f, seq, head and err and is held across each write. Lock order: smu may be held
	// while taking mu, never the reverse.
	mu   sync.Mutex
	f    *os.File
	seq  uint64
	head string
	err  error  // sticky
	buf  []byte // the last record's line, reused for the next one's

	window time.Duration
	syncFn func(*os.File) error
	// written is the sequence number of the last record whose write(2) returned; an fsync started after reading it
	// covers every record up to it.
	written atomic.Uint64

	// smu guards the group commit state; cond wakes the Appends waiting for an fsync to cover their record.
	smu     sync.Mutex
	cond    *sync.Cond
	synced  uint64 // every record up to synced is on disk
	syncing bool   // an fsync is running; the others wait for it instead of starting their own
	syncErr error  // sticky: an fsync failed

	kick chan struct{} // SyncWindow mode: a record was written
	stop chan struct{} // closed by Close
	done chan struct{} // closed when the flusher has stopped
}

// AuditOptions sets how an AuditLog makes records durable. The zero value is the strict mode of OpenAudit.
type AuditOptions struct {
	// SyncWindow is zero for "fsynced before Append returns" (with group commit). A positive window makes Append return
	// after write(2) and fsyncs every record within the window (plus the time of an fsync or two): durable against a
	// crash of the process at once, against power loss or a kernel crash only after the window.
	SyncWindow time.Duration

	// sync replaces fsync, so tests can count and fail fsyncs.
	sync func(*os.File) error
}

// OpenAudit opens (creating with mode 0600 if needed) the audit log at path and continues its chain from the last record.
// Every Append is fsynced before it returns; see OpenAuditWith for the other mode.
// It does not verify the whole file (use VerifyAudit for that); it refuses a file whose last line is incomplete or not a record.
func OpenAudit(path string) (*AuditLog, error) {
	return OpenAuditWith(path, AuditOptions{})
}

// OpenAuditWith is OpenAudit with options.
func OpenAuditWith(path string, opts AuditOptions) (*AuditLog, error) {
	if opts.SyncWindow < 0 {
		return nil, fmt.Errorf("audit log sync window %s is negative", opts.SyncWindow)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock audit log %s (is another blindfold process writing it?): %w", path, err)
	}
	l := &AuditLog{f: f, head: GenesisHash, window: opts.SyncWindow, syncFn: opts.sync}
	if l.syncFn == nil {
		l.syncFn = (*os.File).Sync
	}
	l.cond = sync.NewCond(&l.smu)
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
	// What is already in the file counts as durable: it was written by an earlier process, which synced it on Close.
	l.written.Store(l.seq)
	l.synced = l.seq
	if l.window > 0 {
		l.kick, l.stop, l.done = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
		go l.flusher(f)
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

// maxKeptRecordBuf bounds the line buffer an AuditLog keeps between records.
const maxKeptRecordBuf = 16 << 10

func lineHash(line []byte) string {
	sum := sha256.Sum256(line)
	var h [2 * sha256.Size]byte
	hex.Encode(h[:], sum[:])
	return string(h[:])
}

// Append assigns r its sequence number, previous hash and (if zero) time, writes it, and returns the new head hash.
// In strict mode (no SyncWindow) a nil error means the record is on disk; with a SyncWindow it means the record is
// written and will be fsynced within the window.
func (l *AuditLog) Append(r Record) (string, error) {
	l.mu.Lock()
	if l.err != nil {
		err := l.err
		l.mu.Unlock()
		return "", err
	}
	r.Seq = l.seq + 1
	r.Prev = l.head
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	r.Time = r.Time.UTC()
	buf, ok := appendRecordJSON(l.buf[:0], &r)
	if !ok {
		line, err := json.Marshal(r)
		if err != nil {
			l.mu.Unlock()
			return "", fmt.Errorf("encode audit record: %w", err)
		}
		buf = line
	}
	line := buf
	if len(line)+1 > maxRecordBytes {
		l.mu.Unlock()
		return "", fmt.Errorf("audit record of %d bytes exceeds the %d-byte limit", len(line), maxRecordBytes)
	}
	buf = append(line, '\n')
	// Kept for the next record (mu guards it), unless one outsized record grew it: that one is not worth holding.
	if cap(buf) <= maxKeptRecordBuf {
		l.buf = buf[:0]
	}
	if _, err := l.f.Write(buf); err != nil {
		l.err = fmt.Errorf("audit log write failed, log disabled: %w", err)
		err := l.err
		l.mu.Unlock()
		return "", err
	}
	l.seq = r.Seq
	l.head = lineHash(line)
	f, seq, head := l.f, l.seq, l.head
	l.written.Store(seq)
	l.mu.Unlock()

	if l.window > 0 {
		select {
		case l.kick <- struct{}{}:
		default: // the flusher already has a round pending, which will cover this record
		}
		return head, nil
	}
	if err := l.syncTo(f, seq); err != nil {
		return "", err
	}
	return head, nil
}

// syncTo returns once every record up to seq is on disk. It is the group commit: if an fsync is running, it waits for
// it and, if that did not cover seq (the record was written after it started), one of the waiters runs the next fsync
// for everyone written by then.
func (l *AuditLog) syncTo(f *os.File, seq uint64) error {
	l.smu.Lock()
	defer l.smu.Unlock()
	for l.synced < seq {
		if l.syncErr != nil {
			return l.syncErr
		}
		if l.syncing {
			l.cond.Wait()
			continue
		}
		l.syncing = true
		target := l.written.Load()
		l.smu.Unlock()
		err := l.syncFn(f)
		if err != nil {
			err = fmt.Errorf("audit log fsync failed, log disabled; records after %d may not be on disk: %w", l.syncedSeq(), err)
			l.mu.Lock()
			if l.err == nil || errors.Is(l.err, ErrAuditClosed) {
				l.err = err
			}
			l.mu.Unlock()
		}
		l.smu.Lock()
		l.syncing = false
		if err != nil {
			l.syncErr = err
		} else if target > l.synced {
			l.synced = target
		}
		l.cond.Broadcast()
	}
	return nil
}

// syncedSeq reads synced for an error message, from outside smu.
func (l *AuditLog) syncedSeq() uint64 {
	l.smu.Lock()
	defer l.smu.Unlock()
	return l.synced
}

// flusher is the SyncWindow mode's background fsync: after a record is written it waits out the window, so that the
// records of the window share one fsync, then syncs everything written by then.
func (l *AuditLog) flusher(f *os.File) {
	defer close(l.done)
	t := time.NewTimer(l.window)
	t.Stop()
	for {
		select {
		case <-l.kick:
		case <-l.stop:
			return
		}
		t.Reset(l.window)
		select {
		case <-t.C:
		case <-l.stop:
			t.Stop()
			return // Close syncs what is left
		}
		// An error disables the log (syncTo records it); every later Append then fails.
		if l.syncTo(f, l.written.Load()) != nil {
			return
		}
	}
}

// Head returns the number of records and the hash of the last one (GenesisHash when empty).
// Publishing the head elsewhere (logs, a ticket) anchors the chain: see VerifyOptions.Anchor.
func (l *AuditLog) Head() (uint64, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seq, l.head
}

// Close fsyncs every record written (so a SyncWindow log loses nothing on an orderly stop) and releases the file;
// later Appends fail with ErrAuditClosed.
func (l *AuditLog) Close() error {
	l.mu.Lock()
	if l.f == nil {
		l.mu.Unlock()
		return nil
	}
	f, seq := l.f, l.seq
	l.f = nil
	if l.err == nil {
		l.err = ErrAuditClosed
	}
	l.mu.Unlock()
	if l.stop != nil {
		close(l.stop)
		<-l.done
	}
	serr := l.syncTo(f, seq)
	if err := f.Close(); err != nil {
		return fmt.Errorf("close audit log: %w", err)
	}
	return serr
}
