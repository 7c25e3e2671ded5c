package codec_test

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
	commonpb "go.temporal.io/api/common/v1"
	"google.golang.org/protobuf/proto"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/codec/codectest"
)

const bombSize = 8 << 20 // what each test bomb expands to

// bombBody is the protobuf body of a payload whose data is size zero bytes: it compresses to a few hundred bytes.
func bombBody(t testing.TB, size int) []byte {
	t.Helper()
	body, err := proto.Marshal(&commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("binary/plain")}, Data: make([]byte, size)})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// Frame kinds of sealBombs.
const (
	declared = iota // frames that declare their content size, as the Go writer's
	streamed        // frames that do not, as a streaming writer's
	mixed           // every other one streamed, so both decoder paths are bounded
)

// sealBombs seals n compressed bombs for "default", with frames of kind.
func sealBombs(t testing.TB, kr codec.Keyring, n, size, kind int) []*commonpb.Payload {
	t.Helper()
	body := bombBody(t, size)
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	withSize := enc.EncodeAll(body, []byte{0x01})
	var stream bytes.Buffer
	stream.WriteByte(0x01)
	zw, err := zstd.NewWriter(&stream)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(body); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if len(withSize) > 4<<10 || stream.Len() > 4<<10 {
		t.Fatalf("bombs of %d and %d bytes: not small", len(withSize), stream.Len())
	}
	out := make([]*commonpb.Payload, n)
	for i := range out {
		pt := withSize
		if kind == streamed || kind == mixed && i%2 == 1 {
			pt = stream.Bytes()
		}
		out[i] = sealRaw(t, kr, "default", pt)
	}
	return out
}

// allocated returns the bytes f allocates on the heap.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestDecodeTotalCap: a response of many small bombs, each within the per-payload cap, fails as a whole once the
// total cap is reached, without allocating much past it; the same bombs decode one per call.
func TestDecodeTotalCap(t *testing.T) {
	// Not parallel: it measures the heap.
	const n = 64 // 512 MiB if nothing stopped it
	kr := codectest.NewKeyring()
	total := 4 * len(bombBody(t, bombSize)) // four bombs fit exactly
	c := newCodec(t, kr, codec.WithMaxDecodedTotal(total))
	bombs := sealBombs(t, kr, n, bombSize, mixed)
	ctx := context.Background()

	var err error
	alloc := allocated(func() { _, err = c.Decode(ctx, "default", bombs) })
	if !errors.Is(err, codec.ErrDecodedTooLarge) {
		t.Fatalf("Decode of %d bombs: %v, want ErrDecodedTooLarge", n, err)
	}
	if got := sentinelsIn(err); len(got) != 1 {
		t.Errorf("error %q wraps %v, want exactly ErrDecodedTooLarge", err, got)
	}
	if !strings.Contains(err.Error(), strconv.Itoa(total)) {
		t.Errorf("error %q does not name the cap", err)
	}
	// Three or four bombs fit (one without a declared size needs twice its size free while it decodes), the next is
	// refused before it is allocated. The growing buffers of those without a declared size cost about as much again.
	if limit := uint64(16 * bombSize); alloc > limit {
		t.Errorf("Decode allocated %d MiB for %d bombs, want at most %d MiB (unbounded: %d MiB)", alloc>>20, n, limit>>20, n*bombSize>>20)
	}
	t.Logf("Decode of %d bombs of %d MiB under a %d MiB cap allocated %d MiB", n, bombSize>>20, total>>20, alloc>>20)

	for i, p := range bombs[:4] { // one per call: every call has a fresh budget (both frame kinds)
		out, err := c.Decode(ctx, "default", []*commonpb.Payload{p})
		if err != nil || len(out[0].Data) != bombSize {
			t.Fatalf("bomb %d alone: %v", i, err)
		}
	}
}

// TestDecodeBudgetAcrossCalls: one budget shared by several calls caps them together, and a failed call gives back
// what it charged.
func TestDecodeBudgetAcrossCalls(t *testing.T) {
	t.Parallel()
	kr := codectest.NewKeyring()
	c := newCodec(t, kr)
	ctx := context.Background()
	bombs := sealBombs(t, kr, 4, 1<<20, declared)
	body := int64(len(bombBody(t, 1<<20)))

	b := codec.NewDecodeBudget(3 * body)
	for i, p := range bombs[:3] {
		if _, err := c.DecodeWithin(ctx, "default", []*commonpb.Payload{p}, b); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if b.Used() != 3*body || b.Remaining() != 0 || b.Exceeded() {
		t.Fatalf("after three calls: used %d, remaining %d, exceeded %v; want %d, 0, false", b.Used(), b.Remaining(), b.Exceeded(), 3*body)
	}
	_, err := c.DecodeWithin(ctx, "default", bombs[3:], b)
	if !errors.Is(err, codec.ErrDecodedTooLarge) || !b.Exceeded() {
		t.Fatalf("fourth call: %v (exceeded %v), want ErrDecodedTooLarge", err, b.Exceeded())
	}
	if b.Used() != 3*body {
		t.Errorf("a refused call changed the budget: used %d, want %d", b.Used(), 3*body)
	}

	// A call that fails after decoding some bodies gives them back.
	b = codec.NewDecodeBudget(10 * body)
	tampered := proto.Clone(bombs[0]).(*commonpb.Payload)
	tampered.Data[len(tampered.Data)-1] ^= 1
	if _, err := c.DecodeWithin(ctx, "default", []*commonpb.Payload{bombs[0], bombs[1], tampered}, b); !errors.Is(err, codec.ErrTampered) {
		t.Fatalf("batch with a tampered payload: %v", err)
	}
	if b.Used() != 0 || b.Exceeded() {
		t.Errorf("after a failed call: used %d, exceeded %v; want 0, false", b.Used(), b.Exceeded())
	}

	// Uncompressed payloads and a nil budget.
	plain := sealOne(t, c, "default", jsonPayload("plain"))
	if _, err := c.DecodeWithin(ctx, "default", []*commonpb.Payload{plain}, codec.NewDecodeBudget(0)); err != nil {
		t.Errorf("uncompressed payload under an empty budget: %v", err)
	}
	if _, err := c.DecodeWithin(ctx, "default", bombs, nil); err != nil {
		t.Errorf("nil budget: %v", err)
	}
}

// TestDecodeBudgetConcurrent: goroutines sharing one budget never decode more than it between them.
func TestDecodeBudgetConcurrent(t *testing.T) {
	t.Parallel()
	kr := codectest.NewKeyring()
	c := newCodec(t, kr)
	bombs := sealBombs(t, kr, 2, 256<<10, declared)
	body := int64(len(bombBody(t, 256<<10)))
	const fit = 10
	b := codec.NewDecodeBudget(fit * body)
	var (
		mu       sync.Mutex
		ok, fail int
		wg       sync.WaitGroup
	)
	for g := range 8 {
		wg.Go(func() {
			for i := range 4 {
				_, err := c.DecodeWithin(context.Background(), "default", bombs[(g+i)%2:(g+i)%2+1], b)
				mu.Lock()
				switch {
				case err == nil:
					ok++
				case errors.Is(err, codec.ErrDecodedTooLarge):
					fail++
				default:
					t.Errorf("goroutine %d: %v", g, err)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if ok != fit || fail != 32-fit || b.Used() != fit*body || !b.Exceeded() {
		t.Errorf("%d decoded, %d refused, used %d; want %d, %d, %d", ok, fail, b.Used(), fit, 32-fit, fit*body)
	}
}

func TestMaxDecodedOptions(t *testing.T) {
	t.Parallel()
	kr := codectest.NewKeyring()
	for _, tc := range []struct {
		name      string
		opts      []codec.Option
		wantTotal int
	}{
		{"default", nil, codec.DefaultMaxDecodedTotal},
		{"total set", []codec.Option{codec.WithMaxDecodedTotal(1 << 30)}, 1 << 30},
		{"per-payload cap above the default total raises it", []codec.Option{codec.WithMaxDecodedSize(512 << 20)}, 512 << 20},
		{"total below the per-payload cap", []codec.Option{codec.WithMaxDecodedTotal(1 << 20)}, 1 << 20},
	} {
		c := newCodec(t, kr, tc.opts...)
		if got := c.MaxDecodedTotal(); got != tc.wantTotal {
			t.Errorf("%s: MaxDecodedTotal = %d, want %d", tc.name, got, tc.wantTotal)
		}
	}
	if _, err := codec.New(kr, codec.WithMaxDecodedTotal(0)); err == nil {
		t.Error("WithMaxDecodedTotal(0) accepted")
	}

	// A total below the per-payload cap lowers it: one body over the total is refused on its own, as too large for a payload.
	c := newCodec(t, kr, codec.WithMaxDecodedTotal(1<<20))
	_, err := c.Decode(context.Background(), "default", sealBombs(t, kr, 1, 2<<20, declared))
	if !errors.Is(err, codec.ErrDecodedTooLarge) || !strings.Contains(err.Error(), "per-payload limit of 1048576") {
		t.Errorf("2 MiB body under a 1 MiB total: %v", err)
	}
	// Encode keeps to the lowered cap, so the codec decodes what it writes.
	big := &commonpb.Payload{Data: bytes.Repeat([]byte("z"), 2<<20)}
	c = newCodec(t, kr, codec.WithCompression(0), codec.WithMaxDecodedTotal(1<<20))
	if compressed(t, kr, "default", sealOne(t, c, "default", big)) {
		t.Error("a body over the lowered cap was compressed")
	}
}
