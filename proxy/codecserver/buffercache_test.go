package codecserver

import (
	"testing"
	"time"
)

func TestBufferCache(t *testing.T) {
	t.Parallel()
	buf := func(n int) *bigBuffer { return &bigBuffer{b: make([]byte, n), pooled: true} }
	for _, tc := range []struct {
		name  string
		max   int
		kept  []int // capacities put, in order
		get   int
		want  int // capacity returned, 0 for none
		bytes int // bytes kept after the get
	}{
		{"empty", 100, nil, 10, 0, 0},
		{"too small", 100, []int{5}, 10, 0, 5},
		{"exact", 100, []int{10}, 10, 10, 0},
		{"smallest that fits", 100, []int{40, 12, 30, 11}, 11, 11, 82},
		{"fits larger", 100, []int{40, 9, 30}, 20, 30, 49},
		{"over max dropped", 100, []int{101}, 1, 0, 0},
		{"oldest evicted", 100, []int{60, 30, 50}, 1, 30, 50},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := &bufferCache{max: tc.max, idle: time.Hour}
			for _, n := range tc.kept {
				c.put(buf(n))
			}
			got := c.get(tc.get)
			switch {
			case tc.want == 0 && got != nil:
				t.Fatalf("get(%d) = buffer of %d, want none", tc.get, cap(got.b))
			case tc.want != 0 && (got == nil || cap(got.b) != tc.want || len(got.b) != tc.get):
				t.Fatalf("get(%d) = %v, want capacity %d, length %d", tc.get, got, tc.want, tc.get)
			}
			if c.bytes != tc.bytes {
				t.Fatalf("kept %d bytes, want %d", c.bytes, tc.bytes)
			}
		})
	}
}

// TestBufferCacheIdle checks that an unused cache lets its buffers go.
func TestBufferCacheIdle(t *testing.T) {
	t.Parallel()
	c := &bufferCache{max: 1 << 20, idle: 10 * time.Millisecond}
	c.put(&bigBuffer{b: make([]byte, 100), pooled: true})
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		n, bytes := len(c.bufs), c.bytes
		c.mu.Unlock()
		if n == 0 && bytes == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %d buffers (%d bytes) kept after the idle time", n, bytes)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
