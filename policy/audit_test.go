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
