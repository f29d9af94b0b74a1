package sandbox_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/labd/labd/internal/testenv"
	"github.com/labd/labd/sandbox"
	"github.com/labd/labd/sandbox/nsbox"
)

// gatedDestroy wraps the real provider so that its sandboxes' Destroy
// waits for gate: a sandbox being torn down still holds its subnet and
// uid range.
type gatedDestroy struct {
	counting
	gate chan struct{}
}

func (g *gatedDestroy) Create(ctx context.Context, s sandbox.Spec) (sandbox.Sandbox, error) {
	sb, err := g.counting.Create(ctx, s)
	if err != nil {
		return nil, err
	}
	return &gatedSandbox{Sandbox: sb, gate: g.gate}, nil
}

type gatedSandbox struct {
	sandbox.Sandbox
	gate chan struct{}
}

func (s *gatedSandbox) Destroy(ctx context.Context) error {
	<-s.gate
	return s.Sandbox.Destroy(ctx)
}

func wantCount(t *testing.T, m *sandbox.Manager, held, limit int) {
	t.Helper()
	if h, l := m.Count(); h != held || l != limit {
		t.Errorf("Count() = %d, %d; want %d, %d", h, l, held, limit)
	}
}

// MaxSandboxes refuses a new sandbox with a *FullError while the maximum
// exist, counting those still being destroyed; existing sandboxes are
// found as before, and a sandbox that ends makes room again.
func TestMaxSandboxes(t *testing.T) {
	testenv.Root(t, "namespaces")
	p := &gatedDestroy{counting: counting{Provider: nsbox.New(nsbox.Options{})}, gate: make(chan struct{})}
	m := sandbox.NewManager(p, sandbox.ManagerOptions{DataDir: t.TempDir(), IdleTimeout: -1, Logger: quiet, MaxSandboxes: 2})
	t.Cleanup(func() {
		select {
		case <-p.gate:
		default:
			close(p.gate)
		}
		_ = m.Close(context.Background())
	})
	a, err := m.GetOrCreate(ctx(t), "a", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.GetOrCreate(ctx(t), "b", "bob"); err != nil {
		t.Fatal(err)
	}
	wantCount(t, m, 2, 2)

	admitted := false
	_, err = m.GetOrCreateWith(ctx(t), "c", "carol", sandbox.CreateOptions{Admit: func() error { admitted = true; return nil }})
	var full *sandbox.FullError
	if !errors.As(err, &full) || full.Max != 2 || !errors.Is(err, sandbox.ErrFull) {
		t.Fatalf("third sandbox: err = %v, want a *FullError of max 2 that is ErrFull", err)
	}
	if want := "create sandbox c: the server runs its maximum number of sandboxes (2)"; err.Error() != want {
		t.Errorf("err = %q, want %q", err, want)
	}
	if admitted || p.n.Load() != 2 {
		t.Errorf("a refused sandbox was admitted (%v) or created (provider calls %d, want 2)", admitted, p.n.Load())
	}
	wantCount(t, m, 2, 2)

	// At the maximum, the learners who have a sandbox keep reaching it.
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if got, err := m.GetOrCreate(ctx(t), "a", "alice"); err != nil || got != a {
				t.Errorf("existing sandbox at the maximum: %v, %v; want it", got, err)
			}
		}()
	}
	wg.Wait()

	// A sandbox being destroyed still counts: its pools are not free yet.
	destroyed := make(chan error, 1)
	go func() { destroyed <- m.Destroy(context.Background(), "a", sandbox.ReasonAdmin) }()
	waitGone(t, m, "a")
	if _, err := m.GetOrCreate(ctx(t), "c", "carol"); !errors.Is(err, sandbox.ErrFull) {
		t.Fatalf("while a is destroyed: err = %v, want ErrFull", err)
	}
	close(p.gate)
	if err := <-destroyed; err != nil {
		t.Fatal(err)
	}
	wantCount(t, m, 1, 2)
	if _, err := m.GetOrCreate(ctx(t), "c", "carol"); err != nil {
		t.Fatalf("after a ended: %v, want c created", err)
	}
	wantCount(t, m, 2, 2)
}

// waitGone waits until id is no longer in the Manager's map.
func waitGone(t *testing.T, m *sandbox.Manager, id string) {
	t.Helper()
	c := ctx(t)
	for {
		if _, _, ok := m.Get(id); !ok {
			return
		}
		select {
		case <-c.Done():
			t.Fatalf("sandbox %s still there", id)
		default:
		}
	}
}

var errSlowDown = errors.New("slow down")

// Admit is asked exactly once per creation, never for a sandbox that
// exists or is being created by another call; its refusal comes back as
// it is, creates nothing and frees the slot.
func TestCreateAdmit(t *testing.T) {
	m, p, _ := newManager(t, -1)
	var asked atomic.Int32
	admit := func() error { asked.Add(1); return nil }
	const n = 8
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := m.GetOrCreateWith(ctx(t), "same", "alice", sandbox.CreateOptions{Admit: admit}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if a, c := asked.Load(), p.n.Load(); a != 1 || c != 1 {
		t.Errorf("%d concurrent calls for one sandbox: Admit asked %d times, provider %d; want 1, 1", n, a, c)
	}
	if _, err := m.GetOrCreateWith(ctx(t), "same", "alice", sandbox.CreateOptions{Admit: admit}); err != nil || asked.Load() != 1 {
		t.Errorf("existing sandbox: err %v, Admit asked %d times; want nil, still 1", err, asked.Load())
	}
	wantCount(t, m, 1, 0)

	_, err := m.GetOrCreateWith(ctx(t), "other", "bob", sandbox.CreateOptions{Admit: func() error { return errSlowDown }})
	if err != errSlowDown {
		t.Fatalf("refused by Admit: err = %v, want errSlowDown as it is", err)
	}
	if c := p.n.Load(); c != 1 {
		t.Errorf("provider calls = %d after a refusal, want 1", c)
	}
	if _, _, ok := m.Get("other"); ok {
		t.Error("refused sandbox is there")
	}
	wantCount(t, m, 1, 0)
	if _, err := m.GetOrCreate(ctx(t), "other", "bob"); err != nil {
		t.Fatalf("after a refusal: %v", err)
	}
	wantCount(t, m, 2, 0)
}
