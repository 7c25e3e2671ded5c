package codecserver

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/codec/codectest"
	"github.com/blindfold-dev/blindfold/policy"
)

// bench10k is one request body of 10,000 sealed payloads of 1 KiB (the target shape), the sealed payloads,
// and a handler as `blindfold dev` serves it (anonymous, allow all, a real audit log), without rate limits.
func bench10k(b *testing.B) (*Handler, *codec.Codec, []*commonpb.Payload, []byte) {
	b.Helper()
	c, err := codec.New(codectest.NewKeyring())
	if err != nil {
		b.Fatal(err)
	}
	ps := make([]*commonpb.Payload, 10000)
	for i := range ps {
		data := make([]byte, 1024)
		rand.Read(data)
		ps[i] = &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("binary/plain")}, Data: data}
	}
	enc, err := c.Encode(b.Context(), "default", ps)
	if err != nil {
		b.Fatal(err)
	}
	reqBody := []byte(body(&testing.T{}, enc...))
	al, err := policy.OpenAudit(filepath.Join(b.TempDir(), "audit.jsonl"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = al.Close() })
	h, err := New(Config{
		Codec: c, Authenticator: Anonymous{Identity: policy.Identity{Subject: "bench"}}, Authorizer: policy.DevAccess(),
		Audit: al, RateLimit: -1, IPRateLimit: -1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	return h, c, enc, reqBody
}

// BenchmarkDecode10k decodes one request of 10,000 payloads of 1 KiB each, the target (< 50 ms on 2 cores),
// and in the same loop, interleaved, codec.Decode of the same payloads in-process: the baseline. It reports the
// median of each (ms-endpoint, ms-codec), their ratio (endpoint/codec), the same for CPU time and the bytes the endpoint allocated per
// request (MiB-alloc/req; -benchmem's B/op counts both arms). "handler" calls ServeHTTP with a writer that discards
// the body (server time only); "http" posts over loopback HTTP with keep-alive and reads the whole response, into a buffer of its Content-Length.
func BenchmarkDecode10k(b *testing.B) {
	for _, mode := range []string{"handler", "http"} {
		b.Run(mode, func(b *testing.B) { benchDecode10k(b, mode == "http") })
	}
}

func benchDecode10k(b *testing.B, overHTTP bool) {
	h, c, enc, reqBody := bench10k(b)
	var post func() error
	if overHTTP {
		srv := httptest.NewServer(h)
		b.Cleanup(srv.Close)
		client := srv.Client()
		post = func() error {
			resp, err := client.Post(srv.URL+"/default/decode", "application/json", bytes.NewReader(reqBody))
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			rb, err := readResponse(resp)
			if err != nil {
				return err
			}
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("status %d: %.200s", resp.StatusCode, rb)
			}
			return nil
		}
	} else {
		post = func() error {
			r := httptest.NewRequest(http.MethodPost, "/default/decode", bytes.NewReader(reqBody))
			w := &discardWriter{header: http.Header{}}
			h.ServeHTTP(w, r)
			if w.code != http.StatusOK {
				return fmt.Errorf("status %d: %.200s", w.code, w.start)
			}
			return nil
		}
	}
	b.SetBytes(int64(len(reqBody)))
	b.ReportAllocs()
	var tEndpoint, tCodec, cpuEndpoint, cpuCodec []time.Duration
	var allocated uint64
	var ms runtime.MemStats
	for b.Loop() {
		runtime.ReadMemStats(&ms)
		before := ms.TotalAlloc
		c0, t0 := cpuTime(b), time.Now()
		if err := post(); err != nil {
			b.Fatal(err)
		}
		c1, t1 := cpuTime(b), time.Now()
		runtime.ReadMemStats(&ms)
		allocated += ms.TotalAlloc - before
		if _, err := c.Decode(b.Context(), "default", enc); err != nil {
			b.Fatal(err)
		}
		c2, t2 := cpuTime(b), time.Now()
		tEndpoint, tCodec = append(tEndpoint, t1.Sub(t0)), append(tCodec, t2.Sub(t1))
		cpuEndpoint, cpuCodec = append(cpuEndpoint, c1-c0), append(cpuCodec, c2-c1)
	}
	med := func(ds []time.Duration) float64 {
		slices.Sort(ds)
		return float64(ds[len(ds)/2].Nanoseconds()) / 1e6
	}
	e, k := med(tEndpoint), med(tCodec)
	b.ReportMetric(e, "ms-endpoint")
	b.ReportMetric(k, "ms-codec")
	b.ReportMetric(e/k, "endpoint/codec")
	// CPU time (this process, all threads: GC included) depends less on what else runs on a shared machine.
	ce, ck := med(cpuEndpoint), med(cpuCodec)
	b.ReportMetric(ce, "cpu-ms-endpoint")
	b.ReportMetric(ce/ck, "cpu-endpoint/codec")
	b.ReportMetric(float64(allocated)/float64(len(tEndpoint))/(1<<20), "MiB-alloc/req")
}

// readResponse reads resp's body into a buffer of its Content-Length when it has one, as a client that knows the size
// may (io.ReadAll grows a buffer by doubling, clearing and copying a 14 MB body several times over).
func readResponse(resp *http.Response) ([]byte, error) {
	if n := resp.ContentLength; n > 0 && n <= 1<<30 {
		b := make([]byte, n)
		if _, err := io.ReadFull(resp.Body, b); err != nil {
			return nil, err
		}
		return b, nil
	}
	return io.ReadAll(resp.Body)
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// discardWriter is a ResponseWriter that keeps only the status and the start of the body, as a socket would take
// the bytes (httptest.ResponseRecorder would add the cost of growing a buffer to the response's size).
type discardWriter struct {
	header http.Header
	code   int
	start  []byte
	n      int
}

func (w *discardWriter) Header() http.Header { return w.header }

func (w *discardWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *discardWriter) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	if len(w.start) < 200 {
		w.start = append(w.start, b[:min(len(b), 200-len(w.start))]...)
	}
	w.n += len(b)
	return len(b), nil
}

// cliHandler is a handler as the CLI meets it: a static bearer token, a policy file's rules and a real audit log
// with the given sync window (limits as given: nil for the defaults). It returns the handler and one request body of
// a sealed 1 KiB payload.
func cliHandler(b *testing.B, window time.Duration, unlimited bool) (*Handler, []byte) {
	b.Helper()
	c, err := codec.New(codectest.NewKeyring())
	if err != nil {
		b.Fatal(err)
	}
	data := make([]byte, 1024)
	rand.Read(data)
	enc, err := c.Encode(b.Context(), "default", []*commonpb.Payload{{Metadata: map[string][]byte{"encoding": []byte("binary/plain")}, Data: data}})
	if err != nil {
		b.Fatal(err)
	}
	reqBody := []byte(body(&testing.T{}, enc...))
	pol, err := policy.Parse("bench.yaml", []byte(testPolicy))
	if err != nil {
		b.Fatal(err)
	}
	al, err := policy.OpenAuditWith(filepath.Join(b.TempDir(), "audit.jsonl"), policy.AuditOptions{SyncWindow: window})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = al.Close() })
	static, err := NewStaticTokens(map[string]policy.Identity{"auditor-token": {Subject: "alice", Groups: []string{"auditors"}}})
	if err != nil {
		b.Fatal(err)
	}
	cfg := Config{Codec: c, Authenticator: static, Authorizer: pol.Access, Audit: al, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if unlimited {
		cfg.RateLimit, cfg.IPRateLimit = -1, -1
	}
	h, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return h, reqBody
}

// BenchmarkDecodeOnePayload is the temporal CLI's pattern: one 1 KiB payload per request, a static bearer token, a policy
// file's rules and a real audit log file, strict (fsync per serial record) and with a sync window. It measures the
// handler's server time per request (the target: ≤ 0.3 ms).
func BenchmarkDecodeOnePayload(b *testing.B) {
	for _, bc := range []struct {
		name   string
		window time.Duration
	}{{"strict", 0}, {"window=5ms", 5 * time.Millisecond}} {
		b.Run(bc.name, func(b *testing.B) { benchDecodeOne(b, bc.window) })
	}
}

func benchDecodeOne(b *testing.B, window time.Duration) {
	h, reqBody := cliHandler(b, window, true)
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodPost, "/default/decode", bytes.NewReader(reqBody))
		r.Header.Set("Authorization", "Bearer auditor-token")
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != 200 {
			b.Fatalf("%d %s", w.Code, w.Body)
		}
	}
}

// BenchmarkCLIRoundTrip is one CLI-pattern request over loopback HTTP with keep-alive (client and server in this
// process), with the audit log's sync window: the whole round trip the temporal CLI waits for per payload.
func BenchmarkCLIRoundTrip(b *testing.B) {
	for _, bc := range []struct {
		name   string
		window time.Duration
	}{{"window=5ms", 5 * time.Millisecond}, {"window=1h", time.Hour}} {
		b.Run(bc.name, func(b *testing.B) { benchCLIRoundTrip(b, bc.window) })
	}
}

func benchCLIRoundTrip(b *testing.B, window time.Duration) {
	h, reqBody := cliHandler(b, window, false)
	srv := httptest.NewServer(h)
	defer srv.Close()
	client := srv.Client()
	for b.Loop() {
		if _, err := postDecode(client, srv.URL+"/default/decode", "auditor-token", reqBody); err != nil {
			b.Fatal(err)
		}
	}
}
