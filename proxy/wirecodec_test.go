package proxy

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"unsafe"

	commonpb "go.temporal.io/api/common/v1"
	failurepb "go.temporal.io/api/failure/v1"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

func TestSizedPoolTiers(t *testing.T) {
	t.Parallel()
	p := newSizedPool()
	for _, tc := range []struct{ n, wantCap int }{
		{1, 1 << 10},
		{1 << 10, 1 << 10},
		{1<<10 + 1, 2 << 10},
		{64 << 10, 64 << 10},
		{64<<10 + 1, 80 << 10},
		{110_000, 112 << 10},
		{2<<20 + 100, 2<<20 + 512<<10},
		{8 << 20, 8 << 20},
	} {
		b := p.Get(tc.n)
		if len(*b) != tc.n || cap(*b) != tc.wantCap {
			t.Errorf("Get(%d): len %d cap %d, want len %d cap %d", tc.n, len(*b), cap(*b), tc.n, tc.wantCap)
		}
		p.Put(b)
	}
	if b := p.Get(8<<20 + 1); cap(*b) != 8<<20+1 {
		t.Errorf("beyond the largest tier: cap %d, want exactly the length", cap(*b))
	}
}

func TestSizedPoolReusesAndBoundsKept(t *testing.T) {
	t.Parallel()
	p := newSizedPool()
	b := p.Get(1 << 20)
	first := &(*b)[0]
	p.Put(b)
	if again := p.Get(1<<20 - 5); &(*again)[0] != first || len(*again) != 1<<20-5 {
		t.Error("a large buffer put back was not handed out again (the free list survives GC; sync.Pool may not)")
	}
	// Buffers of a capacity no tier has, or smaller than the smallest, are dropped, never handed out.
	odd := make([]byte, 100_000)
	p.Put(&odd)
	if got := p.Get(100_000); cap(*got) != 112<<10 {
		t.Errorf("Get after Put of a foreign buffer: cap %d", cap(*got))
	}
	var held []*[]byte
	for range 2 * keepBytes / (4 << 20) {
		held = append(held, p.Get(4<<20))
	}
	for _, h := range held {
		p.Put(h)
	}
	if p.kept > keepBytes {
		t.Errorf("free lists hold %d bytes, more than %d", p.kept, keepBytes)
	}
}

// poison fills the pool's buffers of every tier up to 4 MiB with 0xEE, so that a codec reading or sending bytes it did
// not write shows them.
func poison(p *sizedPool) {
	for _, c := range p.caps {
		if c > 4<<20 {
			break
		}
		b := p.Get(c)
		for i := range *b {
			(*b)[i] = 0xEE
		}
		p.Put(b)
	}
}

func codecTestMessages() []proto.Message {
	big := bytes.Repeat([]byte{7}, 2<<20)
	return []proto.Message{
		&workflowservice.SignalWorkflowExecutionRequest{Namespace: "default", SignalName: "s"},
		&workflowservice.SignalWorkflowExecutionRequest{Namespace: "default", SignalName: "s", Input: payloads(strings.Repeat("x", 1024))},
		&workflowservice.SignalWorkflowExecutionRequest{Namespace: "default", Input: &commonpb.Payloads{Payloads: []*commonpb.Payload{{Data: big}}}},
		historyResponse(100, 1024),
	}
}

func TestWireCodecRoundTrip(t *testing.T) {
	poison(wirePool)
	c := wireCodec{}
	for _, m := range codecTestMessages() {
		bs, err := c.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		wire := bs.Materialize()
		if len(wire) != proto.Size(m) {
			t.Fatalf("%T: %d bytes marshalled, Size says %d", m, len(wire), proto.Size(m))
		}
		if bytes.Contains(wire, []byte{0xEE, 0xEE, 0xEE, 0xEE}) {
			t.Fatalf("%T: marshalled bytes contain the pool's stale content", m)
		}
		bs.Free()
		// Received as gRPC does: in frames of up to 16 KiB, or in odd pieces.
		for _, chunk := range []int{len(wire) + 1, 16 << 10, 1000, 7} {
			if chunk == 7 && len(wire) > 1<<20 {
				continue
			}
			var in mem.BufferSlice
			for off := 0; off < len(wire); off += chunk {
				in = append(in, mem.SliceBuffer(wire[off:min(off+chunk, len(wire))]))
			}
			got := m.ProtoReflect().New().Interface()
			if err := c.Unmarshal(in, got); err != nil {
				t.Fatalf("%T in chunks of %d: %v", m, chunk, err)
			}
			if !proto.Equal(got, m) {
				t.Fatalf("%T in chunks of %d: differs after the round trip", m, chunk)
			}
		}
	}
}

func TestWireCodecRefusesNonProto(t *testing.T) {
	t.Parallel()
	if _, err := (wireCodec{}).Marshal("not a message"); err == nil {
		t.Error("Marshal of a string succeeded")
	}
	if err := (wireCodec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer("x")}, new(int)); err == nil {
		t.Error("Unmarshal into an int succeeded")
	}
}

// FuzzWireCodec checks that the proxy's codec parses any input exactly as protobuf does, however gRPC split it into
// buffers, and that pooled, uncleared buffers never show through.
func FuzzWireCodec(f *testing.F) {
	for _, m := range codecTestMessages()[:2] {
		b, _ := proto.Marshal(m)
		f.Add(b, uint16(5))
	}
	b, _ := proto.Marshal(historyResponse(3, 2000))
	f.Add(b, uint16(1000))
	f.Add([]byte{0x0a, 0xff, 0x01}, uint16(1))
	poison(wirePool)
	f.Fuzz(func(t *testing.T, wire []byte, chunk uint16) {
		n := max(int(chunk), 1)
		var in mem.BufferSlice
		for off := 0; off < len(wire); off += n {
			in = append(in, mem.SliceBuffer(wire[off:min(off+n, len(wire))]))
		}
		got := &workflowservice.PollWorkflowTaskQueueResponse{}
		err := wireCodec{}.Unmarshal(in, got)
		want := &workflowservice.PollWorkflowTaskQueueResponse{}
		wantErr := proto.Unmarshal(wire, want)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("codec error %v, protobuf error %v", err, wantErr)
		}
		if err != nil {
			return
		}
		if !proto.Equal(got, want) {
			t.Fatal("codec and protobuf parsed different messages")
		}
		out, err := wireCodec{}.Marshal(got)
		if err != nil {
			t.Fatal(err)
		}
		defer out.Free()
		again := &workflowservice.PollWorkflowTaskQueueResponse{}
		if err := proto.Unmarshal(out.Materialize(), again); err != nil || !proto.Equal(again, want) {
			t.Fatalf("re-marshalled message does not parse back to the same (%v)", err)
		}
	})
}

func TestUnmarshalAliasing(t *testing.T) {
	t.Parallel()
	big := func(b byte) []byte { return bytes.Repeat([]byte{b}, 64<<10) }
	signal := &workflowservice.SignalWorkflowExecutionRequest{
		Namespace: "default", SignalName: "s",
		Input: &commonpb.Payloads{Payloads: []*commonpb.Payload{
			{Metadata: map[string][]byte{"encoding": []byte("binary/plain")}, Data: big(1)},
			{Data: []byte("small")},
			{Data: big(2)},
		}},
		Header: &commonpb.Header{Fields: map[string]*commonpb.Payload{"h": {Data: big(3)}}},
	}
	wire := func(m proto.Message) []byte {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// The same payload field twice: protobuf keeps the last value, so the first marker disappears.
	twice := wire(signal)
	inputField := signal.ProtoReflect().Descriptor().Fields().ByName("input").Number()
	twice = protowire.AppendTag(twice, inputField, protowire.BytesType) // merged into the first input
	twice = protowire.AppendBytes(twice, wire(&commonpb.Payloads{Payloads: []*commonpb.Payload{{Data: big(4)}}}))
	dup := wire(&commonpb.Payload{Data: big(5)})
	dup = protowire.AppendTag(dup, 2, protowire.BytesType)
	dup = protowire.AppendBytes(dup, big(6))
	dupWrapped := protowire.AppendTag(nil, inputField, protowire.BytesType)
	dupWrapped = protowire.AppendBytes(dupWrapped, protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), dup))

	for _, tc := range []struct {
		name    string
		wire    []byte
		aliased int // payloads whose data points into the input; -1: not parsed this way
	}{
		{"payloads, list and map", wire(signal), 3},
		{"no large payload", wire(&workflowservice.SignalWorkflowExecutionRequest{Namespace: "default", Input: payloads("x")}), -1},
		{"field repeated", twice, 4},
		{"data twice in one payload", dupWrapped, -1},
		{"truncated", wire(signal)[:100<<10], -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			want := &workflowservice.SignalWorkflowExecutionRequest{}
			wantErr := proto.Unmarshal(tc.wire, want)
			buf := bytes.Clone(tc.wire)
			got := &workflowservice.SignalWorkflowExecutionRequest{}
			ok := unmarshalAliasing(buf, got)
			if ok != (tc.aliased >= 0) {
				t.Fatalf("unmarshalAliasing = %v, want %v", ok, tc.aliased >= 0)
			}
			if !ok {
				if !proto.Equal(got, &workflowservice.SignalWorkflowExecutionRequest{}) {
					t.Fatal("message not reset after refusing")
				}
				return
			}
			if wantErr != nil {
				t.Fatalf("parsed what protobuf refuses (%v)", wantErr)
			}
			if !proto.Equal(got, want) {
				t.Fatal("differs from proto.Unmarshal")
			}
			n := 0
			placeMarked(got.ProtoReflect(), func(p *commonpb.Payload) bool {
				if d := p.GetData(); len(d) > 0 && within(buf, d) {
					n++
					if cap(d) != len(d) {
						t.Error("aliased data can be appended to, over the bytes after it")
					}
				}
				return true
			})
			if n != tc.aliased {
				t.Errorf("%d payloads point into the input, want %d", n, tc.aliased)
			}
		})
	}
}

// FuzzUnmarshalAliasing checks that the skeleton parse yields exactly what protobuf's does, for any input, with every
// payload data of at least one byte replaced by a marker (the production threshold is 32 KiB).
func FuzzUnmarshalAliasing(f *testing.F) {
	for _, m := range codecTestMessages()[:2] {
		b, _ := proto.Marshal(m)
		f.Add(b)
	}
	b, _ := proto.Marshal(historyResponse(3, 40))
	f.Add(b)
	b, _ = proto.Marshal(&workflowservice.SignalWorkflowExecutionRequest{
		Input:  payloads("abc", "defgh"),
		Header: &commonpb.Header{Fields: map[string]*commonpb.Payload{"h": {Data: []byte("xyz")}}},
	})
	f.Add(b)
	f.Fuzz(func(t *testing.T, wire []byte) {
		for _, newMsg := range []func() proto.Message{
			func() proto.Message { return &workflowservice.SignalWorkflowExecutionRequest{} },
			func() proto.Message { return &workflowservice.PollWorkflowTaskQueueResponse{} },
		} {
			want := newMsg()
			wantErr := proto.Unmarshal(wire, want)
			got := newMsg()
			if !unmarshalAliasingFrom(bytes.Clone(wire), got, 1) {
				if !proto.Equal(got, newMsg()) {
					t.Fatal("message not reset after refusing")
				}
				continue
			}
			if wantErr != nil {
				t.Fatalf("parsed what protobuf refuses: %v", wantErr)
			}
			if !proto.Equal(got, want) {
				t.Fatalf("%T differs from proto.Unmarshal", got)
			}
		}
	})
}

// within reports whether d's first byte lies in buf.
func within(buf, d []byte) bool {
	start := uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(d)))
	return p >= start && p < start+uintptr(len(buf))
}

func TestUnmarshalAliasingBoundsCopies(t *testing.T) {
	t.Parallel()
	// A failure nested 40 deep, each level with 1 KiB of text, around one large payload: rewriting it would copy the
	// text at every level, so it is parsed as usual.
	f := &failurepb.Failure{EncodedAttributes: &commonpb.Payload{Data: bytes.Repeat([]byte{1}, 40<<10)}}
	for range 40 {
		f = &failurepb.Failure{Message: strings.Repeat("m", 1024), Cause: f}
	}
	b, err := proto.Marshal(&workflowservice.RespondActivityTaskFailedRequest{Failure: f})
	if err != nil {
		t.Fatal(err)
	}
	if unmarshalAliasing(bytes.Clone(b), &workflowservice.RespondActivityTaskFailedRequest{}) {
		t.Error("a deeply nested message was rewritten")
	}
}

// TestLargePayloadsThroughProxy sends a request large enough for the skeleton parse through a proxy and checks that
// the upstream receives every payload sealed, and that each opens to what the client sent.
func TestLargePayloadsThroughProxy(t *testing.T) {
	t.Parallel()
	up := startFakeUpstream(t)
	up.on("SignalWorkflowExecution", func(context.Context, proto.Message) (proto.Message, error) {
		return &workflowservice.SignalWorkflowExecutionResponse{}, nil
	})
	tp := startProxy(t, up.addr, Config{})
	fill := func(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }
	sent := &workflowservice.SignalWorkflowExecutionRequest{
		Namespace: "default", WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: "w"}, SignalName: "s",
		Input: &commonpb.Payloads{Payloads: []*commonpb.Payload{
			{Metadata: map[string][]byte{"encoding": []byte("binary/plain")}, Data: fill(1<<20, 'a')},
			{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte(`"small"`)},
			{Metadata: map[string][]byte{"encoding": []byte("binary/plain")}, Data: fill(600<<10, 'b')},
		}},
		Header: &commonpb.Header{Fields: map[string]*commonpb.Payload{
			"h": {Metadata: map[string][]byte{"encoding": []byte("binary/plain")}, Data: fill(100<<10, 'c')},
		}},
	}
	if _, err := tp.wf.SignalWorkflowExecution(context.Background(), proto.Clone(sent).(*workflowservice.SignalWorkflowExecutionRequest)); err != nil {
		t.Fatal(err)
	}
	got := up.last(t, "SignalWorkflowExecution").req.(*workflowservice.SignalWorkflowExecutionRequest)
	wire, err := proto.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []byte("abc") {
		if bytes.Contains(wire, fill(1<<10, b)) {
			t.Fatalf("the upstream received plaintext %q", b)
		}
	}
	if err := (&transformer{codec: tp.codec}).decodeResponse(context.Background(), "default", got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got.GetInput(), sent.GetInput()) || !proto.Equal(got.GetHeader(), sent.GetHeader()) {
		t.Fatal("payloads differ after sealing and opening")
	}
}
