package codec

import (
	"bytes"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

var reference = proto.MarshalOptions{Deterministic: true}

func bodyCases() []*commonpb.Payload {
	withUnknown := &commonpb.Payload{Data: []byte("x")}
	withUnknown.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 7))
	return []*commonpb.Payload{
		{},
		{Data: []byte("only data")},
		{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte(`"x"`)},
		{Metadata: map[string][]byte{"b": nil, "a": {}, "c": []byte("v"), "": []byte("empty key")}},
		{Metadata: map[string][]byte{"k1": {1}, "k2": {2}, "k3": {3}, "k4": {4}, "k5": {5}, "k6": {6}, "k7": {7}, "k8": {8}, "k9": {9}, "k10": {10}}},
		{Data: bytes.Repeat([]byte{0xab}, 300)},
		{Metadata: map[string][]byte{"encoding": []byte("json/protobuf")}, ExternalPayloads: []*commonpb.Payload_ExternalPayloadDetails{{SizeBytes: 5}, {}}},
		withUnknown,
	}
}

func TestAppendBodyMatchesProto(t *testing.T) {
	t.Parallel()
	for i, p := range bodyCases() {
		want, err := reference.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		got, err := appendBody([]byte{0xee}, p)
		if err != nil {
			t.Fatalf("case %d: appendBody: %v", i, err)
		}
		if !bytes.Equal(got[1:], want) || got[0] != 0xee {
			t.Errorf("case %d: appendBody = %x, want ee%x", i, got, want)
		}
		if n := bodySize(p); n != len(want) {
			t.Errorf("case %d: bodySize = %d, want %d", i, n, len(want))
		}
		back, err := unmarshalBody(want)
		if err != nil || !proto.Equal(back, p) {
			t.Errorf("case %d: unmarshalBody = %v, %v", i, back, err)
		}
	}
	bad := &commonpb.Payload{Metadata: map[string][]byte{"\xff": nil}}
	if _, err := appendBody(nil, bad); err == nil {
		t.Error("appendBody accepted a non-UTF-8 metadata key")
	}
	if _, err := reference.Marshal(bad); err == nil {
		t.Error("proto accepted a non-UTF-8 metadata key; the direct path must follow it")
	}
}

func TestParseSimpleAliasesSafely(t *testing.T) {
	t.Parallel()
	body, _ := reference.Marshal(&commonpb.Payload{Metadata: map[string][]byte{"a": []byte("1"), "b": []byte("2")}, Data: []byte("data")})
	p, ok := parseSimple(body)
	if !ok {
		t.Fatal("parseSimple refused a simple body")
	}
	_ = append(p.Metadata["a"], 'X')
	_ = append(p.Data, 'X')
	if string(p.Metadata["b"]) != "2" || string(p.Metadata["a"]) != "1" || string(p.Data) != "data" {
		t.Errorf("append to an aliased field overwrote its neighbour: %v", p)
	}
}

// FuzzBody checks the direct body paths against the protobuf runtime: parsing must agree with proto.Unmarshal whenever it accepts,
// and appendBody must give exactly proto's deterministic encoding.
func FuzzBody(f *testing.F) {
	for _, p := range bodyCases() {
		b, _ := reference.Marshal(p)
		f.Add(b)
	}
	f.Add([]byte{0x0a, 0x02, 0x0a, 0x00})             // entry with key only
	f.Add([]byte{0x0a, 0x02, 0x12, 0x00})             // entry with value only
	f.Add([]byte{0x12, 0x01, 'a', 0x12, 0x01, 'b'})   // data twice: last wins
	f.Add([]byte{0x0a, 0x03, 0x0a, 0x01, 0xff})       // invalid UTF-8 key
	f.Add([]byte{0x92, 0x00, 0x01, 'a'})              // overlong tag varint
	f.Add([]byte{0x0a, 0x04, 0x18, 0x01, 0x0a, 0x00}) // unknown field in an entry
	f.Fuzz(func(t *testing.T, b []byte) {
		var ref commonpb.Payload
		refErr := proto.Unmarshal(b, &ref)
		if p, ok := parseSimple(b); ok {
			if refErr != nil {
				t.Fatalf("parseSimple accepted what proto rejects: %v", refErr)
			}
			if !proto.Equal(p, &ref) {
				t.Fatalf("parseSimple = %v, proto = %v", p, &ref)
			}
		}
		got, err := unmarshalBody(b)
		if (err == nil) != (refErr == nil) {
			t.Fatalf("unmarshalBody error %v, proto error %v", err, refErr)
		}
		if err != nil {
			return
		}
		if !proto.Equal(got, &ref) {
			t.Fatalf("unmarshalBody = %v, proto = %v", got, &ref)
		}
		want, err := reference.Marshal(&ref)
		if err != nil {
			t.Fatal(err)
		}
		enc, err := appendBody(nil, got)
		if err != nil || !bytes.Equal(enc, want) {
			t.Fatalf("appendBody = %x, %v; proto = %x", enc, err, want)
		}
		if bodySize(got) != len(want) {
			t.Fatalf("bodySize = %d, want %d", bodySize(got), len(want))
		}
	})
}
