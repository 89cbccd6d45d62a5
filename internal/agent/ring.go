package agent

import (
	"context"
	"io"
	"sync"
)

// ring is a bounded in-memory log: it keeps the last limit bytes written
// and lets readers follow new writes. Offsets are absolute (bytes ever
// written), so a reader that falls more than limit behind skips ahead
// instead of holding the writer back: the entrypoint must never block on
// a slow log reader.
//
// The buffer grows with the output up to the limit, so that a quiet
// writer (an idle terminal) costs little: until then buf holds every byte
// ever written, and after it wraps len(buf) is the limit.
type ring struct {
	mu      sync.Mutex
	buf     []byte
	limit   int
	total   int64 // bytes ever written
	closed  bool
	changed chan struct{} // closed and replaced on every write and on close
}

func newRing(limit int) *ring {
	if limit <= 0 {
		limit = 1 << 20
	}
	return &ring{buf: make([]byte, 0, min(limit, 4<<10)), limit: limit, changed: make(chan struct{})}
}

// Write appends p, dropping the oldest bytes beyond the limit.
func (r *ring) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(p)
	if len(r.buf) < r.limit {
		// Still growing: append what fits, then wrap as usual.
		k := min(len(p), r.limit-len(r.buf))
		if len(r.buf)+k > cap(r.buf) {
			grown := make([]byte, len(r.buf), min(max(2*cap(r.buf), len(r.buf)+k), r.limit))
			copy(grown, r.buf)
			r.buf = grown
		}
		r.buf = append(r.buf, p[:k]...)
		r.total += int64(k)
		p = p[k:]
	}
	if len(p) > len(r.buf) {
		r.total += int64(len(p) - len(r.buf))
		p = p[len(p)-len(r.buf):]
	}
	for len(p) > 0 {
		i := int(r.total % int64(len(r.buf)))
		c := copy(r.buf[i:], p)
		p = p[c:]
		r.total += int64(c)
	}
	r.wake()
	return n, nil
}

// Close marks the end of the output: followers return io.EOF once drained.
func (r *ring) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	r.wake()
	return nil
}

func (r *ring) wake() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// end returns the current end offset.
func (r *ring) end() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.total
}

// readAt copies bytes from absolute offset off into p. It returns the
// number copied, the offset to continue from, whether the log is closed,
// and a channel that is closed on the next change.
func (r *ring) readAt(off int64, p []byte) (int, int64, bool, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if lo := r.total - int64(len(r.buf)); off < lo {
		off = lo
	}
	if off < 0 {
		off = 0
	}
	n := 0
	for n < len(p) && off < r.total {
		i := int(off % int64(len(r.buf)))
		j := len(r.buf)
		if avail := r.total - off; int64(j-i) > avail {
			j = i + int(avail)
		}
		c := copy(p[n:], r.buf[i:j])
		n += c
		off += int64(c)
	}
	return n, off, r.closed, r.changed
}

// ringReader reads a ring from an offset, either up to a fixed end or,
// when following, until the ring is closed or ctx ends.
type ringReader struct {
	ctx    context.Context
	r      *ring
	off    int64
	end    int64 // -1 when following
	closed chan struct{}
	once   sync.Once
}

// reader returns a reader of everything retained. With follow it keeps
// returning new output until the ring is closed or ctx is done.
func (r *ring) reader(ctx context.Context, follow bool) *ringReader {
	end := int64(-1)
	if !follow {
		end = r.end()
	}
	return &ringReader{ctx: ctx, r: r, end: end, closed: make(chan struct{})}
}

func (rr *ringReader) Read(p []byte) (int, error) {
	for {
		if rr.end >= 0 {
			if rr.off >= rr.end {
				return 0, io.EOF
			}
			if rem := rr.end - rr.off; int64(len(p)) > rem {
				p = p[:rem]
			}
		}
		n, off, closed, changed := rr.r.readAt(rr.off, p)
		rr.off = off
		if n > 0 {
			return n, nil
		}
		if closed || rr.end >= 0 {
			return 0, io.EOF
		}
		select {
		case <-changed:
		case <-rr.ctx.Done():
			return 0, rr.ctx.Err()
		case <-rr.closed:
			return 0, io.ErrClosedPipe
		}
	}
}

func (rr *ringReader) Close() error {
	rr.once.Do(func() { close(rr.closed) })
	return nil
}
