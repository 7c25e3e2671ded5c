package codecserver

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

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

// FuzzFastUnmarshal is a differential test: whatever the hand-written decoder accepts, protojson accepts with the same result.
func FuzzFastUnmarshal(f *testing.F) {
	f.Add([]byte(`{"payloads":[{"metadata":{"encoding":"anNvbi9wbGFpbg=="},"data":"IngiCg=="}]}`))
	f.Add([]byte(` { "payloads" : [ { } , {"data":""} ] } `))
	f.Add([]byte(`{"payloads":[{"metadata":{}}]}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"payloads":[{"metadata":{"a":"YQ==","a":"Yg=="}}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, ok := fastUnmarshal(b)
		if !ok {
			return
		}
		var ps commonpb.Payloads
		if err := protojson.Unmarshal(b, &ps); err != nil {
			t.Fatalf("fast path accepted what protojson rejects (%v): %q", err, b)
		}
		if !proto.Equal(&ps, &commonpb.Payloads{Payloads: fast}) {
			t.Fatalf("fast path %v, protojson %v for %q", fast, ps.Payloads, b)
		}
		out, err := marshalPayloads(fast)
		if err != nil {
			t.Fatal(err)
		}
		var back commonpb.Payloads
		if err := protojson.Unmarshal(out, &back); err != nil || !proto.Equal(&back, &ps) {
			t.Fatalf("marshal round trip: %v %s", err, out)
		}
	})
}
