package proxy

import (
	"bytes"
	"fmt"
	"slices"
	"sync"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
)

// wireCodec is the gRPC codec of the proxy's own connections (inbound server and upstream client). It encodes exactly
// as gRPC's default protobuf codec; what differs is where the bytes live. Its buffers come from sizedPool, which hands
// out buffers of a closely fitting size without clearing them (and, with aliasLarge, large requests are parsed by
// unmarshalAliasing). gRPC's default pool clears the whole capacity of every buffer it hands
// out and has no tier between 32 KiB and 1 MiB: a 110 KB poll response cleared 1 MiB twice in the proxy (once received
// from the upstream, once marshalled towards the caller), and a 2 MiB payload was cleared before each of its copies.
//
// Not clearing is safe because every byte of a buffer is written before anything reads it: Marshal checks that
// MarshalAppend wrote exactly the size it asked for (the buffer's length; the capacity beyond it is never sent), and
// Unmarshal copies the whole received message into the buffer before parsing it. Protobuf's Unmarshal copies what it
// keeps (it never aliases its input), so the buffer returns to the pool as soon as the message is parsed.
type wireCodec struct {
	// aliasLarge parses large messages so that large payload data stays in the buffer the message was gathered
	// into (unmarshalAliasing). The inbound server sets it: requests with large payloads are sealed, so their
	// plaintext data is read once by the AEAD and dropped; an upstream response of many small payloads (a long
	// history) would only pay for the extra walk.
	aliasLarge bool
}

// wireCodecName is the default codec's name: the content-subtype of calls stays "proto".
const wireCodecName = "proto"

func (wireCodec) Name() string { return wireCodecName }

func (wireCodec) Marshal(v any) (mem.BufferSlice, error) {
	m := messageOf(v)
	if m == nil {
		return nil, fmt.Errorf("marshal: message is %T, not a protobuf message", v)
	}
	size := proto.Size(m)
	// UseCachedSize: the Size just computed (the default codec does the same; the message is not mutated meanwhile).
	opts := proto.MarshalOptions{UseCachedSize: true}
	if mem.IsBelowBufferPoolingThreshold(size) {
		b, err := opts.Marshal(m)
		if err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	buf := wirePool.Get(size)
	out, err := opts.MarshalAppend((*buf)[:0], m)
	if err != nil {
		wirePool.Put(buf)
		return nil, err
	}
	if len(out) != size || &out[0] != &(*buf)[0] {
		// Only if the message changed between Size and MarshalAppend; the buffer would hold stale bytes past len(out).
		wirePool.Put(buf)
		return nil, fmt.Errorf("marshal %s: size changed while encoding (%d, then %d bytes)", m.ProtoReflect().Descriptor().FullName(), size, len(out))
	}
	return mem.BufferSlice{mem.NewBuffer(buf, wirePool)}, nil
}

func (c wireCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m := messageOf(v)
	if m == nil {
		return fmt.Errorf("unmarshal: message is %T, not a protobuf message", v)
	}
	switch len(data) {
	case 0:
		return proto.Unmarshal(nil, m)
	case 1:
		return proto.Unmarshal(data[0].ReadOnlyData(), m)
	}
	n := data.Len()
	if c.aliasLarge && n >= aliasMinMessage {
		// Gathered into memory of its own (not pooled, not cleared: every byte is copied in), which the message's
		// large payloads then point into.
		parts := make([][]byte, len(data))
		for i, b := range data {
			parts[i] = b.ReadOnlyData()
		}
		owned := bytes.Join(parts, nil)
		if unmarshalAliasing(owned, m) {
			return nil
		}
		return proto.Unmarshal(owned, m)
	}
	buf := wirePool.Get(n)
	data.CopyTo(*buf) // all n bytes: nothing stale is parsed
	err := proto.Unmarshal(*buf, m)
	wirePool.Put(buf)
	return err
}

func messageOf(v any) proto.Message {
	switch v := v.(type) {
	case protoadapt.MessageV2:
		return v
	case protoadapt.MessageV1:
		return protoadapt.MessageV2Of(v)
	}
	return nil
}

// sizedPool is a mem.BufferPool of uncleared buffers (see wireCodec for why that is safe where it is used), in tiers:
// powers of two from 1 KiB to 64 KiB, then four tiers per power of two (1.25, 1.5, 1.75, 2 × 2^k) up to maxPooled, so
// a message of just over 2 MiB does not take a 4 MiB buffer. Larger buffers are not pooled.
//
// Each tier is a sync.Pool, plus, for tiers of at least keepMin, a short free list the garbage collector does not
// empty: with a few MiB moving per call the collector runs every call or two, emptying sync.Pools, and a fresh buffer
// of a few MiB costs more than the copy it is for (the runtime clears it, the kernel faults its pages in). The free
// lists hold at most keepBytes in all, which bounds the memory idle buffers pin.
type sizedPool struct {
	caps  []int // capacity of each tier, ascending
	tiers []sync.Pool
	mu    sync.Mutex
	keep  [][]*[]byte
	kept  int // bytes in keep
}

const (
	minPooled = 1 << 10  // smaller messages are not pooled (mem.IsBelowBufferPoolingThreshold)
	fineFrom  = 64 << 10 // from here on, four tiers per power of two
	maxPooled = 8 << 20  // beyond, a buffer would pin too much memory while idle in the pool
	keepMin   = 64 << 10
	keepBytes = 16 << 20
)

var wirePool = newSizedPool()

func newSizedPool() *sizedPool {
	var caps []int
	for c := minPooled; c <= fineFrom; c *= 2 {
		caps = append(caps, c)
	}
	for c := fineFrom; c < maxPooled; c *= 2 {
		caps = append(caps, c+c/4, c+c/2, c+3*c/4, 2*c)
	}
	return &sizedPool{caps: caps, tiers: make([]sync.Pool, len(caps)), keep: make([][]*[]byte, len(caps))}
}

// tier returns the index of the smallest tier holding n bytes, and false if n is beyond the largest.
func (p *sizedPool) tier(n int) (int, bool) {
	t, _ := slices.BinarySearch(p.caps, n)
	return t, t < len(p.caps)
}

// Get returns a buffer of length n whose content is whatever an earlier user left in it.
func (p *sizedPool) Get(n int) *[]byte {
	t, ok := p.tier(n)
	if !ok {
		b := make([]byte, n)
		return &b
	}
	if p.caps[t] >= keepMin {
		p.mu.Lock()
		if k := p.keep[t]; len(k) > 0 {
			b := k[len(k)-1]
			p.keep[t] = k[:len(k)-1]
			p.kept -= p.caps[t]
			p.mu.Unlock()
			*b = (*b)[:n]
			return b
		}
		p.mu.Unlock()
	}
	if b, _ := p.tiers[t].Get().(*[]byte); b != nil {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, p.caps[t])
	return &b
}

// Put returns a buffer that Get handed out; buffers of any other capacity are dropped.
func (p *sizedPool) Put(b *[]byte) {
	c := cap(*b)
	t, found := slices.BinarySearch(p.caps, c)
	if !found {
		return
	}
	if c >= keepMin {
		p.mu.Lock()
		if p.kept+c <= keepBytes {
			p.keep[t] = append(p.keep[t], b)
			p.kept += c
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
	}
	p.tiers[t].Put(b)
}
