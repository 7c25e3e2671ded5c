package codecserver

import (
	"bytes"
	"encoding/base64"
	"io"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	simdbase64 "github.com/segmentio/asm/base64"
	commonpb "go.temporal.io/api/common/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

// The remote codec protocol's bodies are large lists of base64 blobs; protojson spends most of a 10,000-payload request
// copying strings. These helpers handle the plain shape ({"payloads":[{"metadata":{…},"data":"…"}]}, no escapes,
// padded standard base64, metadata keys of printable ASCII) by hand and leave everything else — external payload
// details, escapes, and every error message — to protojson.
//
// Reading is a serial scan of the structure that only records where each string is, done while the body arrives
// (scanReader): each chunk of fastChunk payloads it has found is handed to workers that decode its base64 into one
// arena, while the scan goes on with the next bytes. Writing sizes each payload exactly, then encodes chunks in
// parallel into pooled buffers that are written in order.

// fastChunk is how many payloads one worker decodes or encodes at a time.
const fastChunk = 128

// span is a string's bytes in the body, between the quotes.
type span struct{ lo, hi int }

// scannedPayload is one payload found by the scan: its metadata entries are the scan's entries[mdLo:mdHi].
type scannedPayload struct {
	hasMD      bool
	mdLo, mdHi int
	hasData    bool
	data       span
	arena      int // where its decoded bytes start in the arena
}

type scannedEntry struct{ key, val span }

// fastUnmarshal decodes body if it has only the plain shape; ok is false when protojson must decide (including every error).
// A body it accepts is one protojson accepts with the same result (FuzzFastUnmarshal checks this). The decoded
// values share one arena (each slice's capacity is its length, so appending to one copies it); body is not kept.
func fastUnmarshal(body []byte) (ps []*commonpb.Payload, ok bool) {
	ps, arena, ok := fastUnmarshalArena(body, -1)
	if ok {
		// Nothing gives it back to the pool: the caller keeps the payloads.
		arena.keep()
	}
	return ps, ok
}

// fastUnmarshalArena is fastUnmarshal with the arena the values share, which the caller releases once nothing
// refers to the payloads any more (the response is written). A body of more than max payloads (max ≥ 0) is left to
// protojson, which decides between a malformed body and too many payloads as for any body, so that the fast path
// never holds more than max payloads' worth of state.
func fastUnmarshalArena(body []byte, max int) (ps []*commonpb.Payload, arena *bigBuffer, ok bool) {
	return newScan(body, body, nil).run(max)
}

// scanReader reads a body of exactly n bytes (n > 0) from r into buf (of length n) and decodes it as
// fastUnmarshalArena does, scanning each part as soon as it is read. It returns how many bytes it read (all n unless
// reading failed: the caller reads the rest before protojson looks at the body), and the error reading them (an
// early end is io.ErrUnexpectedEOF), which the caller reports before anything the scan found.
func scanReader(r io.Reader, buf []byte, max int) (ps []*commonpb.Payload, arena *bigBuffer, read int, ok bool, err error) {
	s := newScan(buf[:0], buf, r)
	ps, arena, ok = s.run(max)
	if s.rerr != nil {
		// The scan may have taken the early end for the end of the body.
		arena.release()
		return nil, nil, len(s.b), false, s.rerr
	}
	return ps, arena, len(s.b), ok, nil
}

// run scans the body and decodes what it finds; ok false means protojson decides (the arena is then released).
func (s *scan) run(max int) ([]*commonpb.Payload, *bigBuffer, bool) {
	// Every value is base64 between quotes in the body: its decoded bytes take at most 3/4 of the body's size.
	s.arenaBuf = getBigBuffer(len(s.buf) / 4 * 3)
	ok := s.body(max)
	ps, decoded := s.finish(ok)
	if !ok || !decoded {
		s.arenaBuf.release()
		return nil, nil, false
	}
	return ps, s.arenaBuf, true
}

func (s *scan) body(max int) bool {
	if !s.lit('{') {
		return false
	}
	if s.lit('}') {
		return s.end()
	}
	key, ok := s.str()
	if !ok || string(key) != "payloads" || !s.lit(':') || !s.lit('[') {
		return false
	}
	if !s.lit(']') {
		for {
			if !s.payload() || (max >= 0 && len(s.ps) > max) {
				return false
			}
			if len(s.ps)-s.handed == fastChunk {
				s.hand(false)
			}
			if s.lit(',') {
				continue
			}
			if !s.lit(']') {
				return false
			}
			break
		}
	}
	return s.lit('}') && s.end()
}

type scan struct {
	b   []byte // the body's bytes read so far: a prefix of buf
	buf []byte // the whole body (its length is the Content-Length)
	r   io.Reader
	// rerr is why reading stopped early; the scan then fails and the caller reports it.
	rerr    error
	i       int
	ps      []scannedPayload
	entries []scannedEntry
	arena   int // decoded bytes so far (at most: padding is not subtracted)

	arenaBuf *bigBuffer
	handed   int // payloads handed to the decoders
	chunks   []*decodedChunk
	jobs     chan *decodedChunk
	wg       sync.WaitGroup
	failed   atomic.Bool

	// First storage of ps, entries and chunks, so that a small body (the temporal CLI sends one payload per request)
	// needs no allocation for them. Chunks keep views of ps and entries; an append past these copies, leaving the
	// views intact.
	psBuf      [2]scannedPayload
	entriesBuf [4]scannedEntry
	chunk0     decodedChunk
	chunksBuf  [1]*decodedChunk
}

// newScan is a scan of buf (the whole body) whose first len(b) bytes are read, reading the rest from r if not nil.
func newScan(b, buf []byte, r io.Reader) *scan {
	s := &scan{b: b, buf: buf, r: r}
	s.ps, s.entries, s.chunks = s.psBuf[:0], s.entriesBuf[:0], s.chunksBuf[:0]
	return s
}

// decodedChunk is a chunk of scanned payloads and, once a worker is done with it, the payloads built from them.
type decodedChunk struct {
	ps      []scannedPayload
	entries []scannedEntry // the scan's entries from ps[0].mdLo on: an index into it is mdLo - base
	base    int
	out     []*commonpb.Payload
}

// hand gives the payloads scanned since the last call to the decoders, starting them on the first full chunk; the
// last chunk of a body of one chunk is left for finish to decode on the caller's goroutine. The chunk's slices are
// views of the scan's, which later appends copy or extend but never change within them.
func (s *scan) hand(last bool) {
	ps := s.ps[s.handed:len(s.ps):len(s.ps)]
	if len(ps) == 0 {
		return
	}
	base := len(s.entries)
	for _, p := range ps {
		if p.hasMD {
			base = p.mdLo
			break
		}
	}
	c := &s.chunk0
	if len(s.chunks) > 0 {
		c = new(decodedChunk)
	}
	*c = decodedChunk{ps: ps, entries: s.entries[base:len(s.entries):len(s.entries)], base: base}
	s.handed = len(s.ps)
	s.chunks = append(s.chunks, c)
	if last && s.jobs == nil {
		return
	}
	if s.jobs == nil {
		// One worker fewer than cores: the scan is running on one. It joins them once it is done (finish).
		s.jobs = make(chan *decodedChunk, 64)
		for range max(1, runtime.GOMAXPROCS(0)-1) {
			s.wg.Go(s.decodeJobs)
		}
	}
	s.jobs <- c
}

func (s *scan) decodeJobs() {
	for c := range s.jobs {
		s.decodeChunk(c)
	}
}

// finish waits for the decoders, helping them once the scan is over. With ok (the scan found the plain shape), it
// returns the payloads in order and whether every value decoded.
func (s *scan) finish(ok bool) ([]*commonpb.Payload, bool) {
	if !ok {
		s.failed.Store(true)
	} else {
		s.hand(true)
	}
	if s.jobs != nil {
		close(s.jobs)
		s.decodeJobs()
		s.wg.Wait()
	} else if ok && len(s.chunks) == 1 {
		s.decodeChunk(s.chunks[0])
	}
	if !ok || s.failed.Load() {
		return nil, false
	}
	if len(s.chunks) == 1 {
		return s.chunks[0].out, true
	}
	ps := make([]*commonpb.Payload, 0, len(s.ps))
	for _, c := range s.chunks {
		ps = append(ps, c.out...)
	}
	return ps, true
}

// more reads what has arrived of the body, reporting false once it is all read or reading failed.
func (s *scan) more() bool {
	for s.r != nil && s.rerr == nil && len(s.b) < len(s.buf) {
		n, err := s.r.Read(s.buf[len(s.b):])
		s.b = s.buf[:len(s.b)+n]
		if err != nil {
			if err == io.EOF && len(s.b) < len(s.buf) {
				err = io.ErrUnexpectedEOF
			}
			if err != io.EOF {
				s.rerr = err
			}
			s.r = nil
		}
		if n > 0 {
			return true
		}
	}
	return false
}

// has reports whether the byte at s.i has been read, reading on if needed.
func (s *scan) has() bool {
	return s.i < len(s.b) || s.more()
}

func (s *scan) ws() {
	for s.has() && (s.b[s.i] == ' ' || s.b[s.i] == '\t' || s.b[s.i] == '\n' || s.b[s.i] == '\r') {
		s.i++
	}
}

func (s *scan) lit(c byte) bool {
	s.ws()
	if s.has() && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

func (s *scan) end() bool {
	s.ws()
	return !s.has()
}

// str reads a string without escapes or control characters (anything else goes to protojson) and returns its raw bytes.
func (s *scan) str() ([]byte, bool) {
	sp, ok := s.strSpan()
	return s.b[sp.lo:sp.hi], ok
}

func (s *scan) strSpan() (span, bool) {
	if !s.lit('"') {
		return span{}, false
	}
	start := s.i
	for s.has() {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return span{start, s.i - 1}, true
		case c == '\\' || c < 0x20 || c >= 0x80:
			return span{}, false
		}
		s.i++
	}
	return span{}, false
}

// b64 finds a string meant to be padded standard base64, the form protojson and the Web UI write, and reserves its
// decoded size in the arena. Its contents are checked when it is decoded (decodeB64).
func (s *scan) b64() (span, bool) {
	if !s.lit('"') {
		return span{}, false
	}
	from := s.i
	for {
		if n := bytes.IndexByte(s.b[from:], '"'); n >= 0 {
			from += n
			break
		}
		from = len(s.b)
		if !s.more() {
			return span{}, false
		}
	}
	n := from - s.i
	if n%4 != 0 {
		return span{}, false
	}
	sp := span{s.i, from}
	s.i = from + 1
	s.arena += n / 4 * 3
	return sp, true
}

func (s *scan) payload() bool {
	if !s.lit('{') {
		return false
	}
	p := scannedPayload{arena: s.arena}
	if s.lit('}') {
		s.ps = append(s.ps, p)
		return true
	}
	for {
		key, ok := s.str()
		if !ok || !s.lit(':') {
			return false
		}
		switch string(key) {
		case "metadata":
			if p.hasMD || !s.lit('{') {
				return false
			}
			p.hasMD, p.mdLo = true, len(s.entries)
			if !s.lit('}') {
				for {
					k, ok := s.strSpan()
					if !ok || !s.lit(':') {
						return false
					}
					v, ok := s.b64()
					if !ok {
						return false
					}
					s.entries = append(s.entries, scannedEntry{key: k, val: v})
					if s.lit(',') {
						continue
					}
					if !s.lit('}') {
						return false
					}
					break
				}
			}
			p.mdHi = len(s.entries)
		case "data":
			if p.hasData {
				return false
			}
			p.hasData = true
			v, ok := s.b64()
			if !ok {
				return false
			}
			p.data = v
		default:
			return false
		}
		if s.lit(',') {
			continue
		}
		if !s.lit('}') {
			return false
		}
		s.ps = append(s.ps, p)
		return true
	}
}

// decodeChunk builds the chunk's payloads, decoding their base64 into the arena. A value that is not valid base64, or
// a metadata key given twice, leaves the whole body to protojson.
func (s *scan) decodeChunk(c *decodedChunk) {
	if s.failed.Load() {
		return
	}
	arena := s.arenaBuf.b
	var out []*commonpb.Payload
	var slab []commonpb.Payload
	if len(c.ps) == 1 {
		// A one-payload body: the slice and the payload in one allocation.
		one := new(onePayload)
		out, slab = one.out[:], one.slab[:]
	} else {
		out = make([]*commonpb.Payload, len(c.ps))
		slab = make([]commonpb.Payload, len(c.ps))
	}
	for i := range c.ps {
		sp := &c.ps[i]
		p := &slab[i]
		at := sp.arena
		if sp.hasMD && i > 0 && c.ps[i-1].hasMD && s.sameMetadata(c, &c.ps[i-1], sp) {
			// Nearly every payload of a history has the same envelope metadata ({"encoding":"binary/encrypted"}):
			// one map for all of them. Nothing changes a request's maps (the codec and markFailed build new ones).
			p.Metadata = slab[i-1].Metadata
		} else if sp.hasMD {
			p.Metadata = make(map[string][]byte, sp.mdHi-sp.mdLo)
			for _, e := range c.entries[sp.mdLo-c.base : sp.mdHi-c.base] {
				k := metadataKey(s.buf[e.key.lo:e.key.hi])
				if _, dup := p.Metadata[k]; dup {
					s.failed.Store(true)
					return
				}
				v, ok := decodeB64(arena, at, s.buf[e.val.lo:e.val.hi])
				if !ok {
					s.failed.Store(true)
					return
				}
				at += len(v)
				p.Metadata[k] = v
			}
		}
		if sp.hasData {
			v, ok := decodeB64(arena, at, s.buf[sp.data.lo:sp.data.hi])
			if !ok {
				s.failed.Store(true)
				return
			}
			if len(v) > 0 {
				p.Data = v
			}
		}
		out[i] = p
	}
	c.out = out
}

// onePayload holds the result of a chunk of one payload.
type onePayload struct {
	out  [1]*commonpb.Payload
	slab [1]commonpb.Payload
}

// sameMetadata reports whether payloads a and b of chunk c have the same metadata entries, byte for byte in the body.
func (s *scan) sameMetadata(c *decodedChunk, a, b *scannedPayload) bool {
	if a.mdHi-a.mdLo != b.mdHi-b.mdLo {
		return false
	}
	ea, eb := c.entries[a.mdLo-c.base:a.mdHi-c.base], c.entries[b.mdLo-c.base:b.mdHi-c.base]
	for j := range ea {
		if !bytes.Equal(s.buf[ea[j].key.lo:ea[j].key.hi], s.buf[eb[j].key.lo:eb[j].key.hi]) ||
			!bytes.Equal(s.buf[ea[j].val.lo:ea[j].val.hi], s.buf[eb[j].val.lo:eb[j].val.hi]) {
			return false
		}
	}
	return true
}

// decodeB64 decodes padded standard base64 src into arena at off and returns the decoded bytes (capacity = length).
func decodeB64(arena []byte, off int, src []byte) ([]byte, bool) {
	dst := arena[off : off+len(src)/4*3]
	m, ok := decodeBase64(dst, src)
	if !ok {
		return nil, false
	}
	return dst[:m:m], true
}

// metadataKey returns k as a string, without allocating for the keys every Blindfold payload has.
func metadataKey(k []byte) string {
	switch string(k) {
	case "encoding":
		return "encoding"
	case "encodingDecoded":
		return "encodingDecoded"
	case "messageType":
		return "messageType"
	}
	return string(k)
}

// parallelChunks calls fn on consecutive ranges of fastChunk of [0, n), on up to GOMAXPROCS goroutines (the caller's
// among them), and reports whether every call returned true. Once one returns false, the ranges not started are skipped.
func parallelChunks(n int, fn func(lo, hi int) bool) bool {
	chunks := (n + fastChunk - 1) / fastChunk
	workers := min(runtime.GOMAXPROCS(0), chunks)
	if workers <= 1 {
		return n == 0 || fn(0, n)
	}
	var (
		mu     sync.Mutex
		next   int
		failed bool
	)
	work := func() {
		for {
			mu.Lock()
			c := next
			next++
			stop := failed || c >= chunks
			mu.Unlock()
			if stop {
				return
			}
			if !fn(c*fastChunk, min((c+1)*fastChunk, n)) {
				mu.Lock()
				failed = true
				mu.Unlock()
			}
		}
	}
	var wg sync.WaitGroup
	for range workers - 1 {
		wg.Go(work)
	}
	work()
	wg.Wait()
	return !failed
}

// bigBuffer is a buffer of a request's size (its body, the arena of its decoded values). Large ones are pooled:
// allocating them means zeroing them, and at 10,000 payloads of 1 KiB that is 28 MB per request. A nil *bigBuffer
// is an empty one.
type bigBuffer struct {
	b      []byte
	pooled bool
	small  bool // of smallPool: capacity smallBuffer
}

// minPooledBuffer and maxPooledBuffer bound the sizes bigBuffers keeps: requests between smallBuffer and it allocate (cheap), and a buffer beyond
// the default body limit is not kept.
const (
	minPooledBuffer = 64 << 10
	maxPooledBuffer = DefaultMaxBodyBytes
)

// bigBuffers keeps released big buffers for the next request. Not a sync.Pool: a pool is emptied by every second GC,
// and a 10,000-payload request triggers several, so its 25 MB of body and arena were nearly always allocated (and
// zeroed) afresh; and a pool hands out whichever buffer it has, so a body's buffer taken for an arena (or the reverse)
// was too small and dropped. This one picks the smallest buffer that fits, holds at most maxRetainedBuffers bytes, and
// lets everything go once no request has used it for retainedIdle, so an idle endpoint does not hold the memory.
var bigBuffers = bufferCache{max: maxRetainedBuffers, idle: retainedIdle}

const (
	// maxRetainedBuffers is two requests' body and arena of 10,000 payloads of 1 KiB (14 and 11 MB).
	maxRetainedBuffers = 56 << 20
	retainedIdle       = 30 * time.Second
)

type bufferCache struct {
	max  int
	idle time.Duration

	mu    sync.Mutex
	bufs  []*bigBuffer
	bytes int
	timer *time.Timer
}

// get returns the smallest kept buffer of at least n bytes, resized to n, or nil.
func (c *bufferCache) get(n int) *bigBuffer {
	c.mu.Lock()
	defer c.mu.Unlock()
	best := -1
	for i, bb := range c.bufs {
		if cap(bb.b) >= n && (best < 0 || cap(bb.b) < cap(c.bufs[best].b)) {
			best = i
		}
	}
	if best < 0 {
		return nil
	}
	bb := c.bufs[best]
	c.bufs = slices.Delete(c.bufs, best, best+1)
	c.bytes -= cap(bb.b)
	bb.b = bb.b[:n]
	return bb
}

// put keeps bb, dropping the oldest kept buffers if needed to stay within max.
func (c *bufferCache) put(bb *bigBuffer) {
	if cap(bb.b) > c.max {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.bufs) > 0 && c.bytes+cap(bb.b) > c.max {
		c.bytes -= cap(c.bufs[0].b)
		c.bufs = slices.Delete(c.bufs, 0, 1)
	}
	c.bufs = append(c.bufs, bb)
	c.bytes += cap(bb.b)
	if c.timer == nil {
		c.timer = time.AfterFunc(c.idle, c.clear)
	} else {
		c.timer.Reset(c.idle)
	}
}

// clear lets every kept buffer go.
func (c *bufferCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.bufs)
	c.bufs, c.bytes = c.bufs[:0], 0
}

// smallBuffer is the capacity of the buffers of smallPool, which serves every request up to it.
const smallBuffer = 8 << 10

var smallPool sync.Pool // of *bigBuffer, small

// getBigBuffer returns a buffer of n bytes whose contents are undefined: the caller overwrites what it uses.
func getBigBuffer(n int) *bigBuffer {
	if n <= smallBuffer {
		// A one-payload request (the temporal CLI's) needs a body and an arena of a few KiB each, per request: garbage
		// that made the GC run every few hundred requests.
		if bb, ok := smallPool.Get().(*bigBuffer); ok {
			bb.b = bb.b[:n]
			return bb
		}
		return &bigBuffer{b: make([]byte, n, smallBuffer), pooled: true, small: true}
	}
	if n < minPooledBuffer || n > maxPooledBuffer {
		return &bigBuffer{b: make([]byte, n)}
	}
	if bb := bigBuffers.get(n); bb != nil {
		return bb
	}
	return &bigBuffer{b: make([]byte, n), pooled: true}
}

// release gives the buffer back to the pool; nothing may use its bytes afterwards.
func (bb *bigBuffer) release() {
	if bb == nil || !bb.pooled {
		return
	}
	bb.b = bb.b[:0]
	if bb.small {
		smallPool.Put(bb)
		return
	}
	bigBuffers.put(bb)
}

// keep takes the buffer out of pooling for good: its bytes live as long as whoever refers to them.
func (bb *bigBuffer) keep() {
	if bb != nil {
		bb.pooled = false
	}
}

// respBody is a response body in parts, written in order; Release returns pooled parts once they are written.
type respBody struct {
	parts [][]byte
	size  int
	pool  []*bigBuffer
	// First storage of parts and pool: a response of one chunk needs no allocation for them.
	partsBuf [3][]byte
	poolBuf  [1]*bigBuffer
}

func (r *respBody) release() {
	for _, bp := range r.pool {
		putRespBuffer(bp)
	}
	r.pool, r.parts = nil, nil
}

var respPool sync.Pool // of *bigBuffer, each a small chunk of a response

// maxPooledResp keeps a chunk of very large payloads from staying in the pool.
const maxPooledResp = 4 << 20

// minCachedResp is the size from which a response chunk is kept in respBuffers rather than respPool: the chunks of a
// large request (up to 256 payloads each, ~360 KB at 1 KiB) went the way of the big buffers in a sync.Pool (see
// bigBuffers), while a cache that scans its buffers is no place for thousands of small ones.
const minCachedResp = 64 << 10

// respBuffers keeps the large response chunks: a 10,000-payload response is ~40 of them, 14 MB.
var respBuffers = bufferCache{max: 24 << 20, idle: retainedIdle}

// getRespBuffer returns an empty buffer with room for n bytes.
func getRespBuffer(n int) *bigBuffer {
	if n >= minCachedResp && n <= maxPooledResp {
		if bb := respBuffers.get(n); bb != nil {
			bb.b = bb.b[:0]
			return bb
		}
	} else if n < minCachedResp {
		if bb, ok := respPool.Get().(*bigBuffer); ok {
			if cap(bb.b) >= n {
				return bb
			}
			respPool.Put(bb)
		}
	}
	return &bigBuffer{b: make([]byte, 0, n)}
}

func putRespBuffer(bb *bigBuffer) {
	if cap(bb.b) > maxPooledResp {
		return
	}
	bb.b = bb.b[:0]
	if cap(bb.b) >= minCachedResp {
		respBuffers.put(bb)
		return
	}
	respPool.Put(bb)
}

// marshalResponse writes {"payloads":[…]} as protojson would (sorted metadata keys, standard base64, empty fields
// omitted), its chunks encoded in parallel. Payloads with external payload details, or metadata keys that are not
// printable ASCII without quotes or backslashes, are left to protojson, whose errors (invalid UTF-8) it then returns.
func marshalResponse(ps []*commonpb.Payload) (*respBody, error) {
	var rb respBuilder
	parallelChunks(len(ps), func(lo, hi int) bool {
		rb.add(lo, ps[lo:hi])
		return true
	})
	return rb.body(ps)
}

// respBuilder assembles a response from chunks of payloads encoded concurrently, in any order: the decode's workers
// encode each chunk as soon as it is decoded, while its plaintext is still in their cache.
type respBuilder struct {
	mu       sync.Mutex
	chunks   []respChunk
	notPlain bool // some payload needs protojson: the chunks are dropped and protojson writes the whole response
}

// respChunk is the JSON of payloads [lo, lo+n), with the comma before it unless lo is 0.
type respChunk struct {
	lo, n int
	bp    *bigBuffer
}

// add encodes the payloads ps, which start at index lo of the response.
func (rb *respBuilder) add(lo int, ps []*commonpb.Payload) {
	// Each payload's metadata sorted once, for sizing and writing.
	// On the stack for a chunk of a few payloads (a CLI request's one).
	var esBuf [8]mdEntry
	var endsBuf [4]int
	es, ends := esBuf[:0], endsBuf[:0]
	if len(ps) > len(endsBuf) {
		es, ends = make([]mdEntry, 0, 2*len(ps)), make([]int, len(ps))
	} else {
		ends = ends[:len(ps)]
	}
	n := 0
	for i, p := range ps {
		var size int
		var ok bool
		es, size, ok = payloadJSONSize(p, es)
		if !ok {
			rb.mu.Lock()
			rb.notPlain = true
			rb.mu.Unlock()
			return
		}
		ends[i] = len(es)
		n += 1 + size
	}
	bp := getRespBuffer(n)
	b := bp.b[:0]
	from := 0
	for i, p := range ps {
		if lo+i > 0 {
			b = append(b, ',')
		}
		b = appendPayloadJSON(b, p, es[from:ends[i]])
		from = ends[i]
	}
	bp.b = b
	rb.mu.Lock()
	rb.chunks = append(rb.chunks, respChunk{lo: lo, n: len(ps), bp: bp})
	rb.mu.Unlock()
}

// release gives back the chunks' buffers.
func (rb *respBuilder) release() {
	for _, c := range rb.chunks {
		putRespBuffer(c.bp)
	}
	rb.chunks = nil
}

// respPrefix and respSuffix frame every response; shared, as nothing writes into a response's parts.
var respPrefix, respSuffix = []byte(`{"payloads":[`), []byte(`]}`)

// body returns the response of ps, whose chunks were all added (or protojson's, see notPlain).
func (rb *respBuilder) body(ps []*commonpb.Payload) (*respBody, error) {
	slices.SortFunc(rb.chunks, func(a, b respChunk) int { return a.lo - b.lo })
	next := 0
	for _, c := range rb.chunks {
		if c.lo != next {
			break
		}
		next += c.n
	}
	if rb.notPlain || next != len(ps) {
		// A chunk missing or added twice would be a bug of the caller's; protojson then writes what ps holds.
		rb.release()
		b, err := protojson.Marshal(&commonpb.Payloads{Payloads: ps})
		if err != nil {
			return nil, err
		}
		return &respBody{parts: [][]byte{b}, size: len(b)}, nil
	}
	r := new(respBody)
	r.parts, r.pool = r.partsBuf[:0], r.poolBuf[:0]
	if len(rb.chunks) > 1 {
		r.parts, r.pool = make([][]byte, 0, len(rb.chunks)+2), make([]*bigBuffer, 0, len(rb.chunks))
	}
	r.parts = append(r.parts, respPrefix)
	for _, c := range rb.chunks {
		r.parts, r.pool = append(r.parts, c.bp.b), append(r.pool, c.bp)
	}
	r.parts = append(r.parts, respSuffix)
	rb.chunks = nil
	for _, p := range r.parts {
		r.size += len(p)
	}
	return r, nil
}

// marshalPayloads is marshalResponse in one slice (the encode operation's response, and tests).
func marshalPayloads(ps []*commonpb.Payload) ([]byte, error) {
	r, err := marshalResponse(ps)
	if err != nil {
		return nil, err
	}
	defer r.release()
	out := make([]byte, 0, r.size)
	for _, p := range r.parts {
		out = append(out, p...)
	}
	return out, nil
}

// mdEntry is one metadata entry of a payload being written.
type mdEntry struct {
	k string
	v []byte
}

// sortedMetadata appends p's metadata entries to es, sorted by key, in one pass over the map; ok is false when a key
// is not printable ASCII without quotes or backslashes (protojson then writes the payload).
func sortedMetadata(es []mdEntry, p *commonpb.Payload) (_ []mdEntry, ok bool) {
	from := len(es)
	for k, v := range p.GetMetadata() {
		for i := 0; i < len(k); i++ {
			if c := k[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
				return es, false
			}
		}
		es = append(es, mdEntry{k, v})
	}
	if len(es)-from > 1 {
		slices.SortFunc(es[from:], func(a, b mdEntry) int { return strings.Compare(a.k, b.k) })
	}
	return es, true
}

// payloadJSONSize appends p's metadata entries, sorted, to es, and returns them with the exact length
// appendPayloadJSON writes for p; ok is false when p is not of the plain shape (external payload details, or a
// metadata key sortedMetadata refuses), which protojson must write.
func payloadJSONSize(p *commonpb.Payload, es []mdEntry) (_ []mdEntry, size int, ok bool) {
	if len(p.GetExternalPayloads()) > 0 {
		return es, 0, false
	}
	from := len(es)
	es, ok = sortedMetadata(es, p)
	if !ok {
		return es, 0, false
	}
	md := es[from:]
	n := 2 // {}
	if len(md) > 0 {
		n += len(`"metadata":{}`) + len(md) - 1 // and commas between entries
		for _, e := range md {
			n += len(e.k) + 5 + base64.StdEncoding.EncodedLen(len(e.v)) // "k":"v"
		}
	}
	if d := p.GetData(); len(d) > 0 {
		if len(md) > 0 {
			n++
		}
		n += len(`"data":""`) + base64.StdEncoding.EncodedLen(len(d))
	}
	return es, n, true
}

// appendPayloadJSON appends one plain payload as protojson writes it, given its sorted metadata entries md
// (payloadJSONSize).
func appendPayloadJSON(b []byte, p *commonpb.Payload, md []mdEntry) []byte {
	b = append(b, '{')
	if len(md) > 0 {
		b = append(b, `"metadata":{`...)
		for j, e := range md {
			if j > 0 {
				b = append(b, ',')
			}
			b = append(b, '"')
			b = append(b, e.k...)
			b = append(b, '"', ':', '"')
			b = appendBase64(b, e.v)
			b = append(b, '"')
		}
		b = append(b, '}')
	}
	if d := p.GetData(); len(d) > 0 {
		if len(md) > 0 {
			b = append(b, ',')
		}
		b = append(b, `"data":"`...)
		b = appendBase64(b, d)
		b = append(b, '"')
	}
	return append(b, '}')
}

// Base64 is most of the endpoint's own work (16 MB in and 14 MB out for 10,000 payloads of 1 KiB, against 10 MB of
// AES-GCM): github.com/segmentio/asm/base64 does the standard, padded encoding with AVX2 where the CPU has it (about
// 4.5× encoding/base64 decoding 1 KiB values, 3.5× encoding; encoding/base64 itself elsewhere and for the tails).
// FuzzBase64 and FuzzBase64Long check both directions against encoding/base64.

// b64 is the library's standard encoding; only its Encode and Decode are used, on exact-sized buffers.
var b64 = simdbase64.StdEncoding

// appendBase64 appends the padded standard base64 of src to b, as base64.StdEncoding.AppendEncode does.
func appendBase64(b, src []byte) []byte {
	n := len(b)
	b = slices.Grow(b, base64.StdEncoding.EncodedLen(len(src)))
	b = b[:n+base64.StdEncoding.EncodedLen(len(src))]
	encodeBase64(b[n:], src)
	return b
}

// encodeBase64 writes the padded standard base64 of src to dst, which has exactly its length.
func encodeBase64(dst, src []byte) { b64.Encode(dst, src) }

// decodeBase64 decodes padded standard base64 (len(src)%4 == 0, '=' only as the last one or two characters) into
// dst, which has room for len(src)/4*3 bytes, and returns the length decoded. It accepts exactly what
// base64.StdEncoding.Decode accepts without skipping CR or LF, with the same result (non-zero bits after the
// last character are ignored, as there); ok is false for anything else.
func decodeBase64(dst, src []byte) (n int, ok bool) {
	if len(src)%4 != 0 {
		return 0, false
	}
	want := len(src) / 4 * 3
	if n := len(src); n > 0 && src[n-1] == '=' {
		want--
		if src[n-2] == '=' {
			want--
		}
	}
	// encoding/base64, which decodes what the vector loop leaves, skips CR and LF (which a JSON string cannot hold raw:
	// protojson then says so): with any of them, fewer than want bytes come out.
	n, err := b64.Decode(dst[:len(src)/4*3], src)
	return n, err == nil && n == want
}
