package terminal

// ring is a byte FIFO with a hard capacity. Its buffer grows on demand (up
// to max) so idle clients and short sessions cost little memory.
type ring struct {
	buf   []byte
	start int // index of the oldest byte
	n     int // bytes held
	max   int
}

func newRing(max int) *ring { return &ring{max: max} }

func (r *ring) Len() int  { return r.n }
func (r *ring) Free() int { return r.max - r.n }

// grow makes room for need bytes in total, keeping order.
func (r *ring) grow(need int) {
	if need <= len(r.buf) {
		return
	}
	size := max(len(r.buf)*2, 4096, need)
	size = min(size, r.max)
	nb := make([]byte, size)
	r.copyOut(nb)
	r.buf, r.start = nb, 0
}

// copyOut copies the held bytes, oldest first, into dst (len(dst) >= r.n).
func (r *ring) copyOut(dst []byte) int {
	if r.n == 0 {
		return 0
	}
	end := r.start + r.n
	if end <= len(r.buf) {
		return copy(dst, r.buf[r.start:end])
	}
	k := copy(dst, r.buf[r.start:])
	return k + copy(dst[k:], r.buf[:end-len(r.buf)])
}

// Push appends p, which must fit: len(p) <= r.Free().
func (r *ring) Push(p []byte) {
	if len(p) > r.Free() {
		panic("terminal: ring overflow")
	}
	if len(p) == 0 {
		return
	}
	r.grow(r.n + len(p))
	end := (r.start + r.n) % len(r.buf)
	k := copy(r.buf[end:], p)
	copy(r.buf, p[k:])
	r.n += len(p)
}

// Write appends p, dropping the oldest bytes to stay within max.
func (r *ring) Write(p []byte) {
	if len(p) >= r.max {
		r.buf = append(r.buf[:0], p[len(p)-r.max:]...)
		if cap(r.buf) > r.max {
			r.buf = r.buf[:r.max:r.max]
		}
		r.start, r.n = 0, r.max
		return
	}
	if over := r.n + len(p) - r.max; over > 0 {
		r.Discard(over)
	}
	r.Push(p)
}

// Pop moves up to len(dst) of the oldest bytes into dst.
func (r *ring) Pop(dst []byte) int {
	n := min(len(dst), r.n)
	if n == 0 {
		return 0
	}
	end := r.start + n
	if end <= len(r.buf) {
		copy(dst, r.buf[r.start:end])
	} else {
		k := copy(dst, r.buf[r.start:])
		copy(dst[k:n], r.buf)
	}
	r.Discard(n)
	return n
}

// Discard drops the n oldest bytes.
func (r *ring) Discard(n int) {
	r.n -= n
	if r.n == 0 {
		r.start = 0
		return
	}
	r.start = (r.start + n) % len(r.buf)
}

// Snapshot returns a copy of the held bytes. When the ring has dropped old
// bytes the copy may start inside a UTF-8 sequence; those leading
// continuation bytes are skipped so the replay starts on a character.
func (r *ring) Snapshot(dropped bool) []byte {
	out := make([]byte, r.n)
	r.copyOut(out)
	if dropped {
		for i := 0; i < 3 && len(out) > 0 && out[0]&0xC0 == 0x80; i++ {
			out = out[1:]
		}
	}
	return out
}
