package vaultkv

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/blindfold-dev/blindfold/keys"
)

// FuzzDecodeRecord: a scope's KV secret can be written by anyone with rights on the folder. Decoding it never panics, and
// what encodeRecord writes decodes to the same contents.
func FuzzDecodeRecord(f *testing.F) {
	f.Add([]byte(`{"format":"blindfold-kv/v1","keyset":"a2V5c2V0","tombstone":"dG9tYg=="}`), []byte("k"), []byte(nil))
	f.Add([]byte(`{"format":"blindfold-kv/v1","keyset":7}`), []byte(nil), []byte("t"))
	f.Add([]byte(`{"password":"hunter2"}`), []byte{}, []byte{0xff})
	f.Fuzz(func(t *testing.T, raw, keyset, tombstone []byte) {
		var data map[string]any
		if json.Unmarshal(raw, &data) == nil && data != nil {
			_, _ = decodeRecord(data)
		}
		in := keys.Stored{Keyset: keyset, Tombstone: tombstone}
		// Through JSON, as Vault stores and returns it.
		b, err := json.Marshal(encodeRecord(in))
		if err != nil {
			t.Fatal(err)
		}
		var back map[string]any
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		out, err := decodeRecord(back)
		if err != nil {
			t.Fatalf("decode of an encoded record: %v", err)
		}
		if !bytes.Equal(out.Keyset, in.Keyset) || !bytes.Equal(out.Tombstone, in.Tombstone) ||
			(out.Keyset == nil) != (in.Keyset == nil) || (out.Tombstone == nil) != (in.Tombstone == nil) {
			t.Fatalf("round trip %+v -> %+v", in, out)
		}
	})
}
