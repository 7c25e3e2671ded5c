package policy

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// checkRecordJSON fails t unless appendRecordJSON writes r as json.Marshal does, or declines it.
func checkRecordJSON(t *testing.T, r Record) {
	t.Helper()
	want, werr := json.Marshal(r)
	got, ok := appendRecordJSON([]byte("prefix"), &r)
	if !ok {
		if r.Time.Location() == time.UTC && r.Time.Year() >= 0 && r.Time.Year() <= 9999 {
			t.Fatalf("declined a UTC record of year %d", r.Time.Year())
		}
		return
	}
	if werr != nil {
		t.Fatalf("json.Marshal failed (%v) where appendRecordJSON wrote %s", werr, got)
	}
	if !bytes.Equal(got[len("prefix"):], want) {
		t.Fatalf("appendRecordJSON:\n%s\njson.Marshal:\n%s", got[len("prefix"):], want)
	}
}

func TestAppendRecordJSON(t *testing.T) {
	t.Parallel()
	ts := time.Date(2026, 12, 2, 3, 4, 5, 123000000, time.UTC)
	full := Record{
		Seq: 12, Time: ts, Via: "codec-endpoint", Door: DoorHTTP,
		Identity:  Identity{Subject: "alice", Groups: []string{"auditors", "ops"}, Method: "oidc", Issuer: "https://idp.example", SANs: []string{"spiffe://x/y"}},
		Namespace: "prod-eu", Operation: "decode", Payloads: 3, KeyIDs: []string{"prod-eu/1a2b3c4d"}, Bindings: []string{`workflow "order-1"`},
		Decision: AuditAllow, Reason: `allowed by rule "auditors-read-prod"`, Failed: 1, RemoteAddr: "10.0.0.7:53122", Prev: GenesisHash,
	}
	for _, tc := range []struct {
		name string
		r    Record
	}{
		{"zero", Record{Time: time.Time{}.UTC()}},
		{"full", full},
		{"empty slices", Record{Time: ts, Identity: Identity{Groups: []string{}, SANs: []string{}}, KeyIDs: []string{}, Bindings: []string{}}},
		{"empty strings in slices", Record{Time: ts, Identity: Identity{Groups: []string{""}}, KeyIDs: []string{"", ""}}},
		{"negative counts", Record{Time: ts, Payloads: -1, Failed: -7}},
		{"max seq", Record{Seq: ^uint64(0), Time: ts}},
		{"whole second", Record{Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}},
		{"nanoseconds", Record{Time: time.Date(2026, 1, 1, 0, 0, 0, 1, time.UTC)}},
		{"year 0", Record{Time: time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)}},
		{"year 9999", Record{Time: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)}},
		{"year 10000 declined", Record{Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}},
		{"not UTC declined", Record{Time: ts.In(time.FixedZone("x", 3600))}},
		{"escapes", Record{Time: ts, Reason: "q\" b\\ <>& \b\f\n\r\t \x00\x1f \x7f"}},
		{"unicode", Record{Time: ts, Identity: Identity{Subject: "ünï €😀"}, Reason: "\u2028\u2029"}},
		{"invalid utf-8", Record{Time: ts, Reason: "a\xffb\xc3", Namespace: "\xed\xa0\x80"}},
		{"long", Record{Time: ts, Reason: strings.Repeat("x", 5000)}},
	} {
		t.Run(tc.name, func(t *testing.T) { checkRecordJSON(t, tc.r) })
	}
}

// FuzzAppendRecordJSON compares appendRecordJSON with json.Marshal for arbitrary records: the audit log writes the
// former, and its lines must stay what json.Marshal wrote before.
func FuzzAppendRecordJSON(f *testing.F) {
	f.Add(uint64(1), int64(1764644645123456789), "codec-endpoint", "http", "alice", "auditors\x00ops", "oidc", "https://idp", "", "default", "decode", 1, "default/1a2b3c4d", `workflow "w"`, "allow", `allowed by rule "r"`, 0, "127.0.0.1:1", GenesisHash, true)
	f.Add(uint64(0), int64(0), "", "", "", "", "", "", "", "", "", 0, "", "", "", "", 0, "", "", false)
	f.Add(uint64(7), int64(-62135596800000000000/1e9), "\u2028<>&", "\xff", "ü\"\\", "\x00", "\n", "\t", "a\x00b", "\x7f", "\r", -5, "\x00\x00", "\xed\xa0\x80", "\b\f", "😀", 3, "\xc3", "x", true)
	f.Fuzz(func(t *testing.T, seq uint64, unixNano int64, via, door, subject, groups, method, issuer, sans, namespace, operation string,
		payloads int, keyIDs, bindings, decision, reason string, failed int, remote, prev string, utc bool) {
		ts := time.Unix(0, unixNano)
		if utc {
			ts = ts.UTC()
		}
		split := func(s string) []string {
			if s == "" {
				return nil
			}
			return strings.Split(s, "\x00")
		}
		checkRecordJSON(t, Record{
			Seq: seq, Time: ts, Via: via, Door: door,
			Identity:  Identity{Subject: subject, Groups: split(groups), Method: method, Issuer: issuer, SANs: split(sans)},
			Namespace: namespace, Operation: operation, Payloads: payloads, KeyIDs: split(keyIDs), Bindings: split(bindings),
			Decision: decision, Reason: reason, Failed: failed, RemoteAddr: remote, Prev: prev,
		})
	})
}
