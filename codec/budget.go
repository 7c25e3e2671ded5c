package codec

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"
)

// DefaultMaxDecodedTotal caps the bytes that the compressed bodies of one Decode call may expand to together when no
// WithMaxDecodedTotal option is given. It is raised to the per-payload cap when WithMaxDecodedSize sets a larger one.
const DefaultMaxDecodedTotal = 256 << 20

// zstdSlack is the spare capacity the zstd decoder wants past the end of its output to use its fast copy loops
// (klauspost/compress's compressedBlockOverAlloc). Without it, decoding is correct but slower.
const zstdSlack = 32

// minStreamBuffer is the first output buffer tried for a zstd frame that does not declare its size. It holds two
// zstd blocks: with less, the decoder reports an overflow as a corrupt block rather than as ErrDecoderSizeExceeded.
const minStreamBuffer = 256 << 10

// DecodeBudget caps the bytes that compressed bodies may expand to across several decode calls, for a caller that
// splits one request into several Codec.DecodeWithin calls (the codec endpoint decodes a request's chunks in
// parallel) and wants one cap for all of them: a cap per call alone would let a request of many calls, each full of
// small zstd bombs, expand to many times the cap. Only decompressed bytes count; an uncompressed body is no larger
// than the envelope the caller already holds.
//
// A DecodeBudget is safe for concurrent use. Its zero value allows no decompression at all.
type DecodeBudget struct {
	limit    int64
	used     atomic.Int64
	exceeded atomic.Bool
}

// NewDecodeBudget returns a budget of n decompressed bytes. An n of 0 or less allows no decompression at all.
func NewDecodeBudget(n int64) *DecodeBudget {
	return &DecodeBudget{limit: max(n, 0)}
}

// Limit returns the budget's size in bytes.
func (b *DecodeBudget) Limit() int64 { return b.limit }

// Used returns the bytes currently charged to the budget.
func (b *DecodeBudget) Used() int64 { return b.used.Load() }

// Remaining returns the bytes still available.
func (b *DecodeBudget) Remaining() int64 { return max(b.limit-b.used.Load(), 0) }

// Exceeded reports whether a decode was ever refused for lack of budget. It stays true even if the failed call's
// charge was given back, so a caller that retries payload by payload still learns that the request was too large.
func (b *DecodeBudget) Exceeded() bool { return b.exceeded.Load() }

// reserve charges n bytes if they fit, and records the refusal otherwise. The charge happens before the bytes are
// allocated, so concurrent decodes can never hold more than the budget between them.
func (b *DecodeBudget) reserve(n int64) bool {
	for {
		u := b.used.Load()
		if n > b.limit-u {
			b.exceeded.Store(true)
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

// release gives back n bytes reserved earlier.
func (b *DecodeBudget) release(n int64) {
	if n != 0 {
		b.used.Add(-n)
	}
}

// overBudget is the error of a body that does not fit in what is left of b.
func overBudget(b *DecodeBudget, what string) error {
	return fmt.Errorf("compressed body %s the %d bytes left of the decoded-size limit of %d: %w", what, b.Remaining(), b.limit, ErrDecodedTooLarge)
}

// decompress expands a zstd body, allocating no more than the per-payload cap and what is left of b allow. It returns
// the body and the bytes it charged to b, which the caller gives back if the whole decode fails.
//
// A frame that declares its content size (the Go writer always does) is checked against both caps before anything is
// allocated, and decoded into a buffer of exactly that size. A frame without one (a streaming writer's) or a body of
// several frames is decoded into buffers that grow up to the caps, each reserved (with room for the decoder's overrun)
// before it is allocated, so a bomb stops at the cap (see decompressBounded).
func (c *Codec) decompress(body []byte, b *DecodeBudget) ([]byte, int64, error) {
	dec, err := c.decoder()
	if err != nil {
		return nil, 0, fmt.Errorf("zstd decoder: %w", err)
	}
	if len(body) == 0 {
		return body, 0, nil // no frames: nothing to expand, as zstd's DecodeAll says
	}
	var h zstd.Header
	if err := h.Decode(body); err != nil {
		// Refused before any buffer is reserved, so garbage never reads as over the budget.
		return nil, 0, fmt.Errorf("decompress body: %v: %w", err, ErrMalformed)
	}
	ok := !h.Skippable
	if ok && h.WindowSize > uint64(c.maxDecodedSize) {
		// The decoder refuses windows over its memory limit; say which limit refused it.
		return nil, 0, fmt.Errorf("compressed body's window of %d bytes exceeds the per-payload limit of %d: %w", h.WindowSize, c.maxDecodedSize, ErrDecodedTooLarge)
	}
	if ok && h.HasFCS {
		if h.FrameContentSize > uint64(c.maxDecodedSize) {
			return nil, 0, fmt.Errorf("compressed body declares %d bytes, over the per-payload limit of %d: %w", h.FrameContentSize, c.maxDecodedSize, ErrDecodedTooLarge)
		}
		n := int64(h.FrameContentSize)
		if !b.reserve(n) {
			return nil, 0, overBudget(b, fmt.Sprintf("declares %d bytes, over", n))
		}
		out, err := dec.DecodeAll(body, make([]byte, 0, n+zstdSlack))
		switch {
		case err == nil && int64(len(out)) == n:
			return out, n, nil
		case err == nil && int64(len(out)) < n:
			b.release(n - int64(len(out)))
			return out, int64(len(out)), nil
		case err == nil:
			// A second frame fitted into the slack: charge it too.
			if extra := int64(len(out)) - n; !b.reserve(extra) {
				b.release(n)
				return nil, 0, overBudget(b, "expands past")
			}
			return out, int64(len(out)), nil
		}
		b.release(n)
		if !errors.Is(err, zstd.ErrDecoderSizeExceeded) && int64(len(out)) < n {
			// The first frame itself is bad. (Past it, another frame overran the buffer, whatever the error says.)
			return nil, 0, fmt.Errorf("decompress body: %v: %w", err, ErrMalformed)
		}
		// More frames follow the first one: decode the whole body the careful way, starting from what is known.
		return c.decompressBounded(dec, body, b, 2*n)
	}
	return c.decompressBounded(dec, body, b, 0)
}

// decompressBounded decodes a body of unknown decompressed size into buffers that double from a small start (or from
// hint, when more is known) up to the caps.
//
// The decoder (zstd.WithDecodeAllCapLimit) stops once its output passes the buffer's capacity, but only after the
// block that passed it, which it appends to a grown copy of the buffer: an attempt with a buffer of c bytes may hold
// about 9c/4 plus a block at its peak. That peak is what each attempt reserves, so the bytes allocated at any time
// stay within the budget; a body without a declared size therefore needs a little more than twice its size of free
// budget while it is decoded. Only the kept output stays charged. Decoding again after a too-small buffer costs at
// most about twice the work of one pass, and only for bodies the Go writer never produces.
func (c *Codec) decompressBounded(dec *zstd.Decoder, body []byte, b *DecodeBudget, hint int64) ([]byte, int64, error) {
	perPayload := int64(c.maxDecodedSize)
	size := min(max(4*int64(len(body)), minStreamBuffer, hint), perPayload)
	for {
		n := min(size, streamFit(b.Remaining()))
		if n < min(minStreamBuffer, size) || !b.reserve(streamPeak(n)) {
			return nil, 0, overBudget(b, "of undeclared size does not fit in")
		}
		out, err := dec.DecodeAll(body, make([]byte, 0, n))
		if err == nil && int64(len(out)) <= n {
			b.release(streamPeak(n) - int64(len(out)))
			return out, int64(len(out)), nil
		}
		b.release(streamPeak(n))
		// A buffer that fills up in the middle of a block is not always reported as ErrDecoderSizeExceeded (the
		// block decoder may call it a corrupt block): an error within a block of the end of the buffer counts as full.
		full := err == nil || errors.Is(err, zstd.ErrDecoderSizeExceeded) || int64(len(out))+maxBlockOutput >= n
		if !full {
			return nil, 0, fmt.Errorf("decompress body: %v: %w", err, ErrMalformed)
		}
		switch {
		case n >= perPayload:
			return nil, 0, fmt.Errorf("compressed body expands past the per-payload limit of %d bytes: %w", perPayload, ErrDecodedTooLarge)
		case n < size:
			// The budget, not the doubling, chose n, and the body did not fit in it.
			b.exceeded.Store(true)
			return nil, 0, overBudget(b, "of undeclared size does not fit in")
		}
		size = min(2*size, perPayload)
	}
}

// maxBlockOutput bounds what one zstd block adds to the output (128 KiB), with the decoder's slack.
const maxBlockOutput = 128<<10 + zstdSlack

// streamPeak is what an attempt with a buffer of n bytes may hold at its peak: the buffer, and the copy the decoder
// grows it into for the last block (Go grows a large slice by a quarter until the block fits, then rounds up to its
// size classes): n + 5/4·(n+block) + block, that is 9/4·(n+block).
func streamPeak(n int64) int64 { return (9*(n+maxBlockOutput) + 3) / 4 }

// streamFit is the largest buffer whose streamPeak fits in r bytes.
func streamFit(r int64) int64 { return max(4*r/9-maxBlockOutput-1, 0) }
