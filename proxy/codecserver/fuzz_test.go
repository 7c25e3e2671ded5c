package codecserver

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	commonpb "go.temporal.io/api/common/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/codec/codectest"
	"github.com/blindfold-dev/blindfold/policy"
)

// FuzzRequest sends arbitrary paths, namespaces and bodies through the whole handler: it must never panic and never answer 500.
func FuzzRequest(f *testing.F) {
	f.Add("/default/decode", "", `{"payloads":[{"metadata":{"encoding":"anNvbi9wbGFpbg=="},"data":"IngiCg=="}]}`)
	f.Add("/decode", "default", `{"payloads":[]}`)
	f.Add("/x/decode", "", `{"payloads":[{"metadata":{"encoding":"YmluYXJ5L2VuY3J5cHRlZA==","blindfold-format":"MQ==","blindfold-key-id":"eC8x","blindfold-namespace":"eA=="},"data":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}]}`)
	f.Add("/x/encode", "", `{"payloads":[{"data":"AAAA"}]}`)
	f.Add("/decode", "a/b", `{"payloads":[null]}`)
	f.Add("//decode", "", `{"payloads":{}}`)
	f.Add("/default/decode", "", `{"payloads":[{"externalPayloads":[{"sizeBytes":"1"}]}]}`)
	f.Add("/default/decode", "", "\x00\xff")

	al, err := policy.OpenAudit(filepath.Join(f.TempDir(), "audit.jsonl"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { al.Close() })
	c, err := codec.New(codectest.NewKeyring())
	if err != nil {
		f.Fatal(err)
	}
	h, err := New(Config{
		Codec:         c,
		Authenticator: Anonymous{Identity: policy.Identity{Subject: "fuzz"}},
		Authorizer:    policy.DevAccess(),
		Audit:         al,
		MaxBodyBytes:  1 << 16,
		MaxPayloads:   100,
		RateLimit:     -1,
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, path, ns, body string) {
		r := httptest.NewRequest(http.MethodPost, "http://codec.test/", strings.NewReader(body))
		r.URL.Path = path // any decoded path the server could see, control characters included
		if ns != "" && !strings.ContainsAny(ns, "\r\n\x00") {
			r.Header.Set("X-Namespace", ns)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code >= 500 {
			t.Fatalf("status %d for path %q ns %q body %q: %s", w.Code, path, ns, body, w.Body)
		}
	})
}

// FuzzParsePayloads checks the body decoder alone: errors are always 400 or 413.
func FuzzParsePayloads(f *testing.F) {
	f.Add([]byte(`{"payloads":[{"metadata":{"encoding":"anNvbi9wbGFpbg=="},"data":"IngiCg=="}]}`))
	f.Add([]byte(`{"payloads":[null,{}]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ps, err := parsePayloads(b, 10)
		if err != nil {
			if err.status != http.StatusBadRequest && err.status != http.StatusRequestEntityTooLarge {
				t.Fatalf("status %d", err.status)
			}
			return
		}
		for _, p := range ps {
			if p == nil {
				t.Fatal("nil payload accepted")
			}
		}
	})
}

// FuzzFastUnmarshal is a differential test: whatever the hand-written decoder accepts, protojson accepts with the same
// result, and the hand-written writer's output of it reads back (through protojson) as the same payloads.
func FuzzFastUnmarshal(f *testing.F) {
	f.Add([]byte(`{"payloads":[{"metadata":{"encoding":"anNvbi9wbGFpbg=="},"data":"IngiCg=="}]}`))
	f.Add([]byte(` { "payloads" : [ { } , {"data":""} ] } `))
	f.Add([]byte(`{"payloads":[{"metadata":{}}]}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"payloads":[{"metadata":{"a":"YQ==","a":"Yg=="}}]}`))
	f.Add([]byte(`{"payloads":[{"data":"YWJj\r\nYWJj"}]}`))
	f.Add([]byte("{\"payloads\":[{\"data\":\"YW\n\nJj==\"}]}"))
	f.Fuzz(func(t *testing.T, b []byte) { checkFastUnmarshal(t, b) })
}

// FuzzFastUnmarshalMany is FuzzFastUnmarshal on bodies of many payloads, so that the parser's parallel chunks all
// run: n copies of one payload object with another one at position at (the odd one out is where a bad value hides).
func FuzzFastUnmarshalMany(f *testing.F) {
	f.Add(`{"metadata":{"encoding":"YmluYXJ5L3BsYWlu"},"data":"AAEC"}`, `{"data":"AA=="}`, uint16(300), uint16(150))
	f.Add(`{"data":"AAEC"}`, `{"data":"A=A="}`, uint16(700), uint16(600))
	f.Add(`{"metadata":{"k":""}}`, `{"metadata":{"k":"", "k":""}}`, uint16(257), uint16(256))
	f.Fuzz(func(t *testing.T, obj, odd string, n, at uint16) {
		n %= 800
		parts := make([]string, n)
		for i := range parts {
			parts[i] = obj
		}
		if n > 0 {
			parts[int(at)%int(n)] = odd
		}
		checkFastUnmarshal(t, []byte(`{"payloads":[`+strings.Join(parts, ",")+`]}`))
	})
}

func checkFastUnmarshal(t *testing.T, b []byte) {
	t.Helper()
	fast, ok := fastUnmarshal(b)
	checkScanReader(t, b, fast, ok)
	if !ok {
		return
	}
	var ps commonpb.Payloads
	if err := protojson.Unmarshal(b, &ps); err != nil {
		t.Fatalf("fast path accepted what protojson rejects (%v): %.300q", err, b)
	}
	if !proto.Equal(&ps, &commonpb.Payloads{Payloads: fast}) {
		t.Fatalf("fast path %v, protojson %v for %.300q", fast, ps.Payloads, b)
	}
	for i, p := range fast {
		// Values share one arena: each must end where it ends, so that appending to one never writes into the next.
		for k, v := range p.Metadata {
			if cap(v) != len(v) {
				t.Fatalf("payload %d metadata %q: capacity %d, length %d", i, k, cap(v), len(v))
			}
		}
		if cap(p.Data) != len(p.Data) {
			t.Fatalf("payload %d data: capacity %d, length %d", i, cap(p.Data), len(p.Data))
		}
	}
	checkMarshal(t, fast)
}

// checkScanReader scans b as it arrives in pieces (one byte at a time, half of what is asked, the last piece with
// io.EOF, and cut short) and checks that it finds what fastUnmarshal found in the whole body.
func checkScanReader(t *testing.T, b []byte, want []*commonpb.Payload, wantOK bool) {
	t.Helper()
	if len(b) == 0 {
		return
	}
	for _, r := range []io.Reader{
		iotest.OneByteReader(bytes.NewReader(b)),
		iotest.HalfReader(bytes.NewReader(b)),
		iotest.DataErrReader(bytes.NewReader(b)),
	} {
		buf := make([]byte, len(b))
		ps, arena, n, ok, err := scanReader(r, buf, -1)
		if err != nil || ok != wantOK || n > len(b) || !bytes.Equal(buf[:n], b[:n]) || (ok && n != len(b)) {
			t.Fatalf("scanReader: ok %v (want %v), %d of %d bytes read, err %v: %.300q", ok, wantOK, n, len(b), err, b)
		}
		if ok && !proto.Equal(&commonpb.Payloads{Payloads: ps}, &commonpb.Payloads{Payloads: want}) {
			t.Fatalf("scanReader %v, fastUnmarshal %v for %.300q", ps, want, b)
		}
		arena.release()
	}
	// A body that ends early is a read error, never payloads.
	buf := make([]byte, len(b)+1)
	if ps, _, n, ok, err := scanReader(bytes.NewReader(b), buf, -1); ok || (wantOK && (!errors.Is(err, io.ErrUnexpectedEOF) || n != len(b))) {
		t.Fatalf("scanReader of a short body: %d payloads, ok %v, %d bytes, err %v", len(ps), ok, n, err)
	}
}

// checkMarshal compares the hand-written writer with protojson.Marshal: both fail or neither; the output is valid
// JSON that protojson reads back as the same payloads, field for field, as protojson's own output and as the input.
func checkMarshal(t *testing.T, ps []*commonpb.Payload) {
	t.Helper()
	in := &commonpb.Payloads{Payloads: ps}
	ref, refErr := protojson.Marshal(in)
	out, err := marshalPayloads(ps)
	if (err == nil) != (refErr == nil) {
		t.Fatalf("writer error %v, protojson error %v", err, refErr)
	}
	if err != nil {
		return
	}
	if !json.Valid(out) {
		t.Fatalf("writer output is not JSON: %.300q", out)
	}
	var back, refBack commonpb.Payloads
	if err := protojson.Unmarshal(out, &back); err != nil {
		t.Fatalf("protojson cannot read the writer's output (%v): %.300q", err, out)
	}
	if err := protojson.Unmarshal(ref, &refBack); err != nil {
		t.Fatal(err)
	}
	if len(back.Payloads) != len(ps) || len(refBack.Payloads) != len(ps) {
		t.Fatalf("%d payloads written, %d read back, protojson's %d", len(ps), len(back.Payloads), len(refBack.Payloads))
	}
	for i := range ps {
		for _, want := range []*commonpb.Payload{ps[i], refBack.Payloads[i]} {
			got := back.Payloads[i]
			if !maps.EqualFunc(got.GetMetadata(), want.GetMetadata(), bytes.Equal) || !bytes.Equal(got.GetData(), want.GetData()) ||
				!proto.Equal(got, want) {
				t.Fatalf("payload %d: writer's output reads back as %v, want %v", i, got, want)
			}
		}
	}
}

// FuzzMarshalResponse checks the hand-written writer against protojson on payloads it would never get from the parser:
// any metadata key (quotes, backslashes, control characters, invalid UTF-8), empty and missing values, external
// payload details, and enough payloads for several parallel chunks.
func FuzzMarshalResponse(f *testing.F) {
	f.Add("encoding", []byte("binary/plain"), []byte("data"), uint16(3), false)
	f.Add("k\"\\\x00é", []byte{}, []byte{}, uint16(300), false)
	f.Add("\xff", []byte("v"), []byte("d"), uint16(1), false)
	f.Add("a", []byte("v"), []byte("d"), uint16(200), true)
	f.Fuzz(func(t *testing.T, key string, val, data []byte, n uint16, external bool) {
		n %= 600
		ps := make([]*commonpb.Payload, n)
		for i := range ps {
			p := &commonpb.Payload{}
			switch i % 4 {
			case 0:
				p.Metadata = map[string][]byte{key: val, "encoding": []byte("json/plain")}
			case 1:
				p.Metadata = map[string][]byte{}
			case 2:
				p.Metadata = map[string][]byte{key + "2": nil}
			}
			if i%3 != 0 {
				p.Data = append(bytes.Clone(data), byte(i))
			}
			ps[i] = p
		}
		if external && n > 0 {
			ps[n/2].ExternalPayloads = []*commonpb.Payload_ExternalPayloadDetails{{SizeBytes: int64(len(data))}}
		}
		checkMarshal(t, ps)
	})
}

// FuzzBase64 checks the endpoint's base64 against encoding/base64: the same encoding of any bytes, and for any
// input of whole 4-character groups, the hand-written decoder accepts exactly what encoding/base64 accepts (except
// CR and LF, which encoding/base64 skips and JSON forbids raw) with the same bytes.
func FuzzBase64(f *testing.F) {
	f.Add([]byte("hello, world"))
	f.Add([]byte("YR=="))
	f.Add([]byte("YWJjZGVmZ2g="))
	f.Add([]byte("YW\nJj==\r\n"))
	f.Add([]byte("A=AA"))
	f.Fuzz(func(t *testing.T, b []byte) {
		enc := appendBase64([]byte("x"), b)
		if want := base64.StdEncoding.AppendEncode([]byte("x"), b); !bytes.Equal(enc, want) {
			t.Fatalf("encode %q: %q, want %q", b, enc, want)
		}
		for _, src := range [][]byte{b, enc[1:]} {
			if len(src)%4 != 0 {
				src = src[:len(src)/4*4]
			}
			got := make([]byte, len(src)/4*3)
			n, ok := decodeBase64(got, src)
			want := make([]byte, len(src)/4*3)
			m, err := base64.StdEncoding.Decode(want, src)
			crlf := bytes.ContainsAny(src, "\r\n")
			switch {
			case ok && (err != nil || n != m || !bytes.Equal(got[:n], want[:m])):
				t.Fatalf("decode %q: %q, encoding/base64 %q (%v)", src, got[:n], want[:m], err)
			case !ok && err == nil && !crlf:
				t.Fatalf("decode %q refused, encoding/base64 gives %q", src, want[:m])
			}
		}
	})
}

// FuzzBase64Long is FuzzBase64 on values long enough for the vector loops (which start at 28 bytes to encode and 45
// characters to decode): b repeated reps times, with one byte of the encoding replaced by bad at position at, so that
// an invalid character, padding or CR/LF lands inside a vector block, at its edges or in the tail.
func FuzzBase64Long(f *testing.F) {
	f.Add([]byte("hello, world"), uint8(40), uint16(100), byte('='))
	f.Add([]byte{0xff, 0x00, 0x7f}, uint8(200), uint16(31), byte('\n'))
	f.Add([]byte("abc"), uint8(16), uint16(63), byte('A'))
	f.Add([]byte("0123456789"), uint8(9), uint16(0), byte(' '))
	f.Fuzz(func(t *testing.T, b []byte, reps uint8, at uint16, bad byte) {
		src := bytes.Repeat(b, int(reps))
		if len(src) > 4<<10 { // long enough for many vector blocks; longer inputs only slow the fuzzer
			src = src[:4<<10]
		}
		enc := appendBase64(nil, src)
		if want := base64.StdEncoding.EncodeToString(src); string(enc) != want {
			t.Fatalf("encode %d bytes: %q, want %q", len(src), enc, want)
		}
		for _, in := range [][]byte{enc, withByte(enc, int(at), bad), withByte(src[:len(src)/4*4], int(at), bad)} {
			got := make([]byte, len(in)/4*3)
			n, ok := decodeBase64(got, in)
			want := make([]byte, len(in)/4*3)
			m, err := base64.StdEncoding.Decode(want, in)
			crlf := bytes.ContainsAny(in, "\r\n")
			switch {
			case ok && (err != nil || n != m || !bytes.Equal(got[:n], want[:m])):
				t.Fatalf("decode %q: %q, encoding/base64 %q (%v)", in, got[:n], want[:m], err)
			case !ok && err == nil && !crlf:
				t.Fatalf("decode %q refused, encoding/base64 gives %q", in, want[:m])
			}
		}
	})
}

// withByte returns a copy of b with the byte at i (modulo its length) replaced by c.
func withByte(b []byte, i int, c byte) []byte {
	b = bytes.Clone(b)
	if len(b) > 0 {
		b[i%len(b)] = c
	}
	return b
}

// TestLargeRequest sends one request of many payloads (several parser, decoder and writer chunks, a failing payload
// at a chunk boundary) through the whole handler twice, so the second reuses the first's pooled buffers, and checks
// every payload, the failure marking and count, the length header and the one audit record per request.
func TestLargeRequest(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	const n = 1000
	markers := make([]string, n)
	for i := range markers {
		markers[i] = fmt.Sprintf("payload-%04d-%s", i, strings.Repeat("x", i%50))
	}
	sealed := f.seal("default", markers...)
	bad := []int{fastChunk, 2*fastChunk - 1, n - 1}
	for _, i := range bad {
		sealed[i] = proto.Clone(sealed[i]).(*commonpb.Payload)
		sealed[i].Data[len(sealed[i].Data)-1] ^= 1
	}
	reqBody := body(t, sealed...)
	for round := range 2 {
		resp, b := f.do(req{path: "/default/decode", body: reqBody, headers: auth("auditor-token")})
		if resp.StatusCode != http.StatusOK || resp.Header.Get(FailedPayloadsHeader) != fmt.Sprint(len(bad)) {
			t.Fatalf("round %d: %d, %s %q: %.300s", round, resp.StatusCode, FailedPayloadsHeader, resp.Header.Get(FailedPayloadsHeader), b)
		}
		if resp.ContentLength != int64(len(b)) {
			t.Fatalf("round %d: Content-Length %d for %d bytes", round, resp.ContentLength, len(b))
		}
		out := decodeResponse(t, b)
		if len(out) != n {
			t.Fatalf("round %d: %d payloads, want %d", round, len(out), n)
		}
		for i, p := range out {
			if slices.Contains(bad, i) {
				if p.Metadata[DecodeErrorKey] == nil || !bytes.Equal(p.Data, sealed[i].Data) {
					t.Fatalf("round %d: payload %d not marked failed with its ciphertext", round, i)
				}
				continue
			}
			if want := `"` + markers[i] + `"`; string(p.Data) != want || string(p.Metadata["encoding"]) != "json/plain" {
				t.Fatalf("round %d: payload %d = %q %q, want %q", round, i, p.Data, p.Metadata, want)
			}
		}
	}
	recs := readAudit(t, f.auditLog)
	if len(recs) != 2 || recs[1].Payloads != n || recs[1].Failed != len(bad) || recs[1].Decision != policy.AuditAllow {
		t.Fatalf("audit records %+v, want two allow records of %d payloads, %d failed", recs, n, len(bad))
	}
}
