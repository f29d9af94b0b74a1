package terminal

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestRingModel drives a ring and a plain slice with the same random
// operations and compares them after each one.
func TestRingModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, max := range []int{1, 7, 4096, 10000} {
		r := newRing(max)
		var model []byte
		next := byte(0)
		gen := func(n int) []byte {
			p := make([]byte, n)
			for i := range p {
				p[i] = next
				next++
			}
			return p
		}
		for i := 0; i < 5000; i++ {
			switch rng.IntN(3) {
			case 0: // Write: overwrite oldest
				p := gen(rng.IntN(max*2 + 1))
				r.Write(p)
				model = append(model, p...)
				if len(model) > max {
					model = model[len(model)-max:]
				}
			case 1: // Push: must fit
				p := gen(rng.IntN(r.Free() + 1))
				r.Push(p)
				model = append(model, p...)
			case 2:
				dst := make([]byte, rng.IntN(max+1))
				n := r.Pop(dst)
				want := min(len(dst), len(model))
				if n != want || !bytes.Equal(dst[:n], model[:want]) {
					t.Fatalf("max %d op %d: Pop() = %d %v, want %d %v", max, i, n, dst[:n], want, model[:want])
				}
				model = model[want:]
			}
			if r.Len() != len(model) || !bytes.Equal(r.Snapshot(false), model) {
				t.Fatalf("max %d op %d: ring = %v, want %v", max, i, r.Snapshot(false), model)
			}
			if len(r.buf) > max {
				t.Fatalf("max %d: buffer grew to %d", max, len(r.buf))
			}
		}
	}
}

func TestRingSnapshotSkipsBrokenRune(t *testing.T) {
	r := newRing(4)
	r.Write([]byte("x€ab")) // € is e2 82 ac; the ring keeps 82 ac 'a' 'b'
	got := r.Snapshot(true)
	if want := "ab"; string(got) != want {
		t.Errorf("Snapshot(true) = %q, want %q", got, want)
	}
	if got := r.Snapshot(false); len(got) != 4 {
		t.Errorf("Snapshot(false) has %d bytes, want 4", len(got))
	}
}
