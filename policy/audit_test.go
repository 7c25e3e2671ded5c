package policy

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func record(i int) Record {
	return Record{
		Via:        "test",
		Identity:   Identity{Subject: fmt.Sprintf("user%d", i), Groups: []string{"auditors"}, Method: "static"},
		Namespace:  "default",
		Operation:  string(OpDecode),
		Payloads:   i,
		KeyIDs:     []string{"default/0a1b2c3d"},
		Decision:   AuditAllow,
		Reason:     "allowed by rule \"r\"",
		RemoteAddr: "127.0.0.1:1234",
	}
}

// writeLog appends n records and returns the path and the head the log reported.
func writeLog(t *testing.T, n int) (string, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := OpenAudit(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	head := GenesisHash
	for i := 1; i <= n; i++ {
		if head, err = l.Append(record(i)); err != nil {
			t.Fatal(err)
		}
	}
	return path, head
}

func verifyFile(t *testing.T, path string, opts VerifyOptions) (AuditSummary, error) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return VerifyAudit(bytes.NewReader(data), opts)
}

func TestAuditAppendVerify(t *testing.T) {
	t.Parallel()
	path, head := writeLog(t, 5)
	sum, err := verifyFile(t, path, VerifyOptions{Anchor: head})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Records != 5 || sum.Head != head || sum.AnchorSeq != 5 {
		t.Fatalf("summary %+v, head %s", sum, head)
	}
	data, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(data), `{"seq":1,`) || !strings.Contains(string(data), `"prev":"`+GenesisHash+`"`) {
		t.Fatalf("first record does not start the chain: %s", data)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", st.Mode().Perm())
	}
}

func TestAuditEmpty(t *testing.T) {
	t.Parallel()
	sum, err := VerifyAudit(strings.NewReader(""), VerifyOptions{})
	if err != nil || sum.Records != 0 || sum.Head != GenesisHash {
		t.Fatalf("%+v %v", sum, err)
	}
}

func TestAuditReopenContinuesChain(t *testing.T) {
	t.Parallel()
	path, _ := writeLog(t, 3)
	l, err := OpenAudit(path)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := l.Head(); n != 3 {
		t.Fatalf("reopened at seq %d", n)
	}
	head, err := l.Append(record(4))
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if _, err := l.Append(record(5)); !errors.Is(err, ErrAuditClosed) {
		t.Fatalf("append after close: %v", err)
	}
	sum, err := verifyFile(t, path, VerifyOptions{Anchor: head})
	if err != nil || sum.Records != 4 {
		t.Fatalf("%+v %v", sum, err)
	}
}

func TestAuditSecondWriterRefused(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := OpenAudit(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l2, err := OpenAudit(path); err == nil {
		l2.Close()
		t.Fatal("second writer was allowed")
	}
}

func TestAuditReopenRefusesPartialLine(t *testing.T) {
	t.Parallel()
	path, _ := writeLog(t, 2)
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"seq":3,"ti`)
	f.Close()
	if l, err := OpenAudit(path); err == nil {
		l.Close()
		t.Fatal("opened a log with a partial last line")
	}
}

func TestAuditConcurrentAppends(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := OpenAudit(path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				if _, err := l.Append(record(i)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	l.Close()
	sum, err := verifyFile(t, path, VerifyOptions{})
	if err != nil || sum.Records != 200 {
		t.Fatalf("%+v %v", sum, err)
	}
}

// TestAuditTamper edits, removes, reorders and inserts records and checks VerifyAudit reports the first bad line.
func TestAuditTamper(t *testing.T) {
	t.Parallel()
	path, head := writeLog(t, 5)
	orig, _ := os.ReadFile(path)
	lines := strings.SplitAfter(string(orig), "\n")
	lines = lines[:len(lines)-1] // trailing empty element
	join := func(ls ...string) string { return strings.Join(ls, "") }

	tests := []struct {
		name     string
		content  string
		anchor   string
		wantLine int // 0: an anchor error without a line
	}{
		{"edit first record", join(strings.Replace(lines[0], "user1", "userX", 1), lines[1], lines[2], lines[3], lines[4]), "", 2},
		{"edit middle record", join(lines[0], lines[1], strings.Replace(lines[2], `"payloads":3`, `"payloads":30`, 1), lines[3], lines[4]), "", 4},
		{"edit decision", join(lines[0], strings.Replace(lines[1], `"allow"`, `"deny"`, 1), lines[2], lines[3], lines[4]), "", 3},
		{"whitespace edit", join(lines[0], strings.Replace(lines[1], `{"seq"`, `{ "seq"`, 1), lines[2], lines[3], lines[4]), "", 3},
		{"remove first", join(lines[1], lines[2], lines[3], lines[4]), "", 1},
		{"remove middle", join(lines[0], lines[1], lines[3], lines[4]), "", 3},
		{"reorder", join(lines[0], lines[2], lines[1], lines[3], lines[4]), "", 2},
		{"duplicate", join(lines[0], lines[1], lines[1], lines[2], lines[3], lines[4]), "", 3},
		{"insert forged", join(lines[0], lines[1], strings.Replace(lines[1], "user2", "user9", 1), lines[2]), "", 3},
		{"truncated mid-line", join(lines[0], lines[1], lines[2][:20]), "", 3},
		{"blank line", join(lines[0], "\n", lines[1]), "", 2},
		{"garbage", join(lines[0], "not json\n"), "", 2},
		{"unknown field", join(lines[0], strings.Replace(lines[1], `{"seq"`, `{"x":1,"seq"`, 1)), "", 2},
		{"trailing data", join(lines[0], strings.Replace(lines[1], "}\n", "}{}\n", 1)), "", 2},
		{"edit last record with anchor", join(lines[0], lines[1], lines[2], lines[3], strings.Replace(lines[4], "user5", "userX", 1)), head, 0},
		{"remove last record with anchor", join(lines[0], lines[1], lines[2], lines[3]), head, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := VerifyAudit(strings.NewReader(tc.content), VerifyOptions{Anchor: tc.anchor})
			if !errors.Is(err, ErrAuditTampered) {
				t.Fatalf("not detected: %v", err)
			}
			var ae *AuditError
			if tc.wantLine == 0 {
				if errors.As(err, &ae) {
					t.Fatalf("want an anchor error, got %v", err)
				}
				return
			}
			if !errors.As(err, &ae) || ae.Line != tc.wantLine {
				t.Fatalf("got %v, want line %d", err, tc.wantLine)
			}
		})
	}

	// The documented limit: without an anchor, the tail is unprotected.
	if _, err := VerifyAudit(strings.NewReader(join(lines[0], lines[1], lines[2], lines[3])), VerifyOptions{}); err != nil {
		t.Fatalf("tail removal without anchor: %v", err)
	}
}

func TestAuditRecordHasNoPayloadField(t *testing.T) {
	t.Parallel()
	// A guard against someone adding payload data to the record type: every field is metadata.
	path, _ := writeLog(t, 1)
	data, _ := os.ReadFile(path)
	for _, banned := range []string{`"data"`, `"metadata"`, `"payload"`} {
		if bytes.Contains(data, []byte(banned)) {
			t.Fatalf("audit record contains %s: %s", banned, data)
		}
	}
}

func FuzzVerifyAudit(f *testing.F) {
	dir := f.TempDir()
	path := filepath.Join(dir, "seed.jsonl")
	l, err := OpenAudit(path)
	if err != nil {
		f.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		r := record(i)
		r.Time = time.Date(2026, 1, 1, 0, 0, i, 0, time.UTC)
		if _, err := l.Append(r); err != nil {
			f.Fatal(err)
		}
	}
	l.Close()
	seed, _ := os.ReadFile(path)
	f.Add(seed, "")
	f.Add(seed[:len(seed)/2], "")
	f.Add([]byte("\n\n"), GenesisHash)
	f.Add([]byte(`{"seq":1}`+"\n"), "")
	f.Fuzz(func(t *testing.T, data []byte, anchor string) {
		sum, err := VerifyAudit(bytes.NewReader(data), VerifyOptions{Anchor: anchor})
		if err == nil && len(sum.Head) != 64 {
			t.Fatalf("verified with head %q", sum.Head)
		}
	})
}

// countingSync is an fsync hook: it counts calls, can hold the first one until released, and can fail.
type countingSync struct {
	mu      sync.Mutex
	calls   int
	hold    chan struct{} // if not nil, the first call waits for it to close
	started chan struct{} // closed when the first call begins
	fail    error
	called  chan struct{} // receives one value per call (buffered), so tests can wait for a background fsync
}

func newCountingSync() *countingSync {
	return &countingSync{started: make(chan struct{}), called: make(chan struct{}, 1000)}
}

func (c *countingSync) sync(f *os.File) error {
	c.mu.Lock()
	c.calls++
	first := c.calls == 1
	fail := c.fail
	c.mu.Unlock()
	if first {
		close(c.started)
		if c.hold != nil {
			<-c.hold
		}
	}
	c.called <- struct{}{}
	if fail != nil {
		return fail
	}
	return f.Sync()
}

func (c *countingSync) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls
}

// waitWritten waits until the log has written n records (an event the test cannot observe otherwise).
func waitWritten(t *testing.T, l *AuditLog, n uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for l.written.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d records written", l.written.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestAuditGroupCommit holds the first fsync while more records are written: every waiting Append must then be covered
// by one more fsync, return only after it, and leave an intact chain.
func TestAuditGroupCommit(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	cs := newCountingSync()
	cs.hold = make(chan struct{})
	l, err := OpenAuditWith(path, AuditOptions{sync: cs.sync})
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	errs := make(chan error, n)
	go func() { _, err := l.Append(record(0)); errs <- err }()
	<-cs.started
	for i := 1; i < n; i++ {
		go func() { _, err := l.Append(record(i)); errs <- err }()
	}
	waitWritten(t, l, n)
	select {
	case err := <-errs:
		t.Fatalf("an Append returned before its fsync: %v", err)
	default:
	}
	close(cs.hold)
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := cs.count(); got != 2 {
		t.Fatalf("%d fsyncs for %d concurrent records, want 2 (the held one and one for the group)", got, n)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := cs.count(); got != 2 {
		t.Fatalf("Close ran %d more fsyncs with nothing to sync", got-2)
	}
	if sum, err := verifyFile(t, path, VerifyOptions{}); err != nil || sum.Records != n {
		t.Fatalf("%+v %v", sum, err)
	}
}

func TestAuditSyncModes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		window time.Duration
		// fsyncs expected after n serial Appends, and after Close.
		afterAppends, afterClose int
	}{
		{"strict: one fsync per serial record", 0, 10, 10},
		{"window: no fsync before the window ends, one on Close", time.Hour, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "audit.jsonl")
			cs := newCountingSync()
			l, err := OpenAuditWith(path, AuditOptions{SyncWindow: tt.window, sync: cs.sync})
			if err != nil {
				t.Fatal(err)
			}
			var head string
			for i := range 10 {
				if head, err = l.Append(record(i)); err != nil {
					t.Fatal(err)
				}
			}
			if got := cs.count(); got != tt.afterAppends {
				t.Fatalf("%d fsyncs after the appends, want %d", got, tt.afterAppends)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if got := cs.count(); got != tt.afterClose {
				t.Fatalf("%d fsyncs after Close, want %d", got, tt.afterClose)
			}
			if sum, err := verifyFile(t, path, VerifyOptions{Anchor: head}); err != nil || sum.Records != 10 {
				t.Fatalf("%+v %v", sum, err)
			}
		})
	}
}

// TestAuditSyncWindowFlushes checks that the background flusher syncs written records on its own, and that the
// records of one window share an fsync.
func TestAuditSyncWindowFlushes(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	cs := newCountingSync()
	cs.hold = make(chan struct{})
	l, err := OpenAuditWith(path, AuditOptions{SyncWindow: time.Millisecond, sync: cs.sync})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.Append(record(1)); err != nil {
		t.Fatal(err)
	}
	<-cs.started // the flusher's first fsync, holding
	for i := 2; i <= 50; i++ {
		if _, err := l.Append(record(i)); err != nil {
			t.Fatal(err)
		}
	}
	close(cs.hold)
	<-cs.called
	<-cs.called // the second round covers records 2..50
	// The fsync counter signals before the flusher records what it synced: wait for that, boundedly.
	var synced uint64
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		l.smu.Lock()
		synced = l.synced
		l.smu.Unlock()
		if synced == 50 {
			break
		}
	}
	if synced != 50 {
		t.Fatalf("synced up to %d after two fsyncs, want 50", synced)
	}
	if n := cs.count(); n != 2 {
		t.Errorf("%d fsyncs for 50 records, want 2 (one held, one for the rest)", n)
	}
}

// TestAuditSyncFailureDisables checks both modes fail closed after an fsync error: strict Appends report it at once,
// windowed ones from the next Append after the failed background fsync.
func TestAuditSyncFailureDisables(t *testing.T) {
	t.Parallel()
	for _, window := range []time.Duration{0, time.Millisecond} {
		t.Run(fmt.Sprint(window), func(t *testing.T) {
			t.Parallel()
			cs := newCountingSync()
			cs.fail = errors.New("disk on fire")
			l, err := OpenAuditWith(filepath.Join(t.TempDir(), "audit.jsonl"), AuditOptions{SyncWindow: window, sync: cs.sync})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			_, err = l.Append(record(1))
			if window == 0 {
				if err == nil || !strings.Contains(err.Error(), "disk on fire") {
					t.Fatalf("strict append after failed fsync: %v", err)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				<-cs.called
				// The flusher records the failure right after its fsync returns; the next Append must see it.
				waitFailed(t, l)
			}
			if _, err := l.Append(record(2)); err == nil || !strings.Contains(err.Error(), "log disabled") {
				t.Fatalf("append after a failed fsync: %v", err)
			}
		})
	}
}

func waitFailed(t *testing.T, l *AuditLog) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l.smu.Lock()
		failed := l.syncErr != nil
		l.smu.Unlock()
		if failed {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("fsync failure not recorded")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestAuditNegativeWindow(t *testing.T) {
	t.Parallel()
	if _, err := OpenAuditWith(filepath.Join(t.TempDir(), "a.jsonl"), AuditOptions{SyncWindow: -time.Second}); err == nil {
		t.Fatal("accepted a negative window")
	}
}
