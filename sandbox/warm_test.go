package sandbox_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labd/labd/internal/testenv"
	"github.com/labd/labd/sandbox"
	"github.com/labd/labd/sandbox/nsbox"
)

// warming makes the real provider a Warmer: Prepare creates a sandbox of
// the warm name, Adopt hands it over and records the learner's spec.
type warming struct {
	counting
	prepared atomic.Int32
	mu       sync.Mutex
	adopted  []sandbox.Spec
	failNext atomic.Bool // the next Adopt fails
	forgot   []string    // Forget calls
}

func (w *warming) Forget(name string) error {
	w.mu.Lock()
	w.forgot = append(w.forgot, name)
	w.mu.Unlock()
	return nil
}

func (w *warming) Prepare(ctx context.Context, s sandbox.Spec) (sandbox.Prepared, error) {
	sb, err := w.counting.Provider.Create(ctx, s)
	if err != nil {
		return nil, err
	}
	w.prepared.Add(1)
	return &warmBox{Sandbox: sb, w: w}, nil
}

type warmBox struct {
	sandbox.Sandbox
	w *warming
}

func (b *warmBox) Adopt(ctx context.Context, s sandbox.Spec) (sandbox.Sandbox, error) {
	if b.w.failNext.CompareAndSwap(true, false) {
		return nil, errors.New("adopt failed on purpose")
	}
	b.w.mu.Lock()
	b.w.adopted = append(b.w.adopted, s)
	b.w.mu.Unlock()
	return b.Sandbox, nil
}

func newWarmManager(t *testing.T, data string, opts sandbox.ManagerOptions) (*sandbox.Manager, *warming) {
	t.Helper()
	testenv.Root(t, "namespaces")
	w := &warming{counting: counting{Provider: nsbox.New(nsbox.Options{})}}
	opts.DataDir, opts.IdleTimeout, opts.Logger = data, -1, quiet
	m := sandbox.NewManager(w, opts)
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	return m, w
}

func waitWarm(t *testing.T, m *sandbox.Manager, n int) {
	t.Helper()
	for deadline := time.Now().Add(wait); m.Warm() != n; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d warm sandboxes, want %d", m.Warm(), n)
		}
	}
}

// A learner without a workspace gets a warm sandbox (no Create), under
// the warm sandbox's name, which DATA/sandboxes/<id> links to; a learner
// with a workspace, or a lab with limits of its own, gets one made for
// it; the pool refills.
func TestWarmPool(t *testing.T) {
	data := t.TempDir()
	m, w := newWarmManager(t, data, sandbox.ManagerOptions{Warm: 2, MaxSandboxes: 10})
	waitWarm(t, m, 2)
	wantCount(t, m, 2, 10)

	sb, err := m.GetOrCreateWith(ctx(t), "fresh", "alice", sandbox.CreateOptions{Env: []string{"LABD_USER=alice"}})
	if err != nil {
		t.Fatal(err)
	}
	if n := w.n.Load(); n != 0 {
		t.Errorf("%d sandboxes created for a new learner, want a warm one", n)
	}
	w.mu.Lock()
	adopted := append([]sandbox.Spec{}, w.adopted...)
	w.mu.Unlock()
	if len(adopted) != 1 || !strings.HasPrefix(adopted[0].ID, "sb-w") || !slices.Contains(adopted[0].Env, "LABD_USER=alice") {
		t.Fatalf("adopted %+v, want one warm sandbox with the learner's environment", adopted)
	}
	link, err := os.Readlink(filepath.Join(data, "sandboxes", "fresh"))
	if err != nil || link != adopted[0].ID {
		t.Errorf("DATA/sandboxes/fresh links to %q (%v), want %q", link, err, adopted[0].ID)
	}
	// The learner's files are found by their id, in the sandbox's workspace.
	if err := os.WriteFile(filepath.Join(sb.Workspace(), "note"), []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(m.WorkspaceDir("fresh"), "note")); err != nil || string(b) != "mine" {
		t.Errorf("the learner's file by its id: %q, %v", b, err)
	}
	waitWarm(t, m, 2)
	wantCount(t, m, 3, 10)

	// Coming back after the sandbox ended: the same files, made for it,
	// under the warm name it was given.
	if err := m.Destroy(ctx(t), "fresh", sandbox.ReasonAdmin); err != nil {
		t.Fatal(err)
	}
	sb, err = m.GetOrCreate(ctx(t), "fresh", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if n := w.n.Load(); n != 1 {
		t.Errorf("%d sandboxes created for a returning learner, want 1", n)
	}
	if b, err := os.ReadFile(filepath.Join(sb.Workspace(), "note")); err != nil || string(b) != "mine" {
		t.Errorf("the returning learner's file: %q, %v", b, err)
	}
	if sb.Hostname() != "lab-"+adopted[0].ID[:12] {
		t.Errorf("hostname %q, want the warm sandbox's", sb.Hostname())
	}

	// A lab asking for its own limits: made for it.
	if _, err := m.GetOrCreateWith(ctx(t), "big-lab", "bob", sandbox.CreateOptions{Resources: sandbox.Resources{Memory: 1 << 30}}); err != nil {
		t.Fatal(err)
	}
	if n := w.n.Load(); n != 2 {
		t.Errorf("%d sandboxes created, want 2 (a lab with limits of its own)", n)
	}
	if _, err := os.Readlink(filepath.Join(data, "sandboxes", "big-lab")); err == nil {
		t.Error("a sandbox made for its lab is a link")
	}
}

// At the maximum, warm sandboxes are still given out (they hold their
// places already); a refused admission or a failed adoption loses nothing.
func TestWarmPoolAtMaximum(t *testing.T) {
	data := t.TempDir()
	m, w := newWarmManager(t, data, sandbox.ManagerOptions{Warm: 2, MaxSandboxes: 3})
	waitWarm(t, m, 2)
	if _, err := m.GetOrCreate(ctx(t), "one", "a"); err != nil {
		t.Fatal(err)
	}
	// one + 1 warm + the refill = 3: full, and nothing more is made.
	waitWarm(t, m, 2)
	wantCount(t, m, 3, 3)
	refused := errors.New("slow down")
	if _, err := m.GetOrCreateWith(ctx(t), "two", "b", sandbox.CreateOptions{Admit: func() error { return refused }}); !errors.Is(err, refused) {
		t.Fatalf("refused admission: %v", err)
	}
	if m.Warm() != 2 {
		t.Errorf("%d warm after a refused admission, want 2 (given back)", m.Warm())
	}
	w.failNext.Store(true)
	sb, err := m.GetOrCreate(ctx(t), "two", "b")
	if err != nil {
		t.Fatalf("a failed adoption must fall back to a sandbox made for it: %v", err)
	}
	if _, err := os.Readlink(filepath.Join(data, "sandboxes", "two")); err == nil {
		t.Error("a failed adoption left its link")
	}
	if !strings.HasSuffix(sb.Workspace(), "/sandboxes/two/workspace") {
		t.Errorf("workspace %s, want the learner's own", sb.Workspace())
	}
	if _, err := m.GetOrCreate(ctx(t), "three", "c"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.GetOrCreate(ctx(t), "four", "d"); !errors.Is(err, sandbox.ErrFull) {
		t.Errorf("past the maximum with no warm sandbox: %v, want ErrFull", err)
	}
	wantCount(t, m, 3, 3)
}

// A restart keeps the warm sandboxes that were given out (a learner's
// files) and removes those nobody got; Close removes the pool's.
func TestWarmPoolRestart(t *testing.T) {
	data := t.TempDir()
	m, _ := newWarmManager(t, data, sandbox.ManagerOptions{Warm: 1})
	waitWarm(t, m, 1)
	sb, err := m.GetOrCreate(ctx(t), "kept", "a")
	if err != nil {
		t.Fatal(err)
	}
	ws := sb.Workspace()
	if err := os.WriteFile(filepath.Join(ws, "work"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitWarm(t, m, 1)
	// A killed labd's pool: one more unlinked warm directory.
	orphan := filepath.Join(data, "sandboxes", "sb-w000000000000", "workspace")
	if err := os.MkdirAll(orphan, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	m2, w2 := newWarmManager(t, data, sandbox.ManagerOptions{Warm: 1})
	waitWarm(t, m2, 1)
	// What the provider keeps of the unused ones beside their directories
	// (the engine: uid ranges, records) goes too; the given-out one stays.
	w2.mu.Lock()
	forgot := append([]string{}, w2.forgot...)
	w2.mu.Unlock()
	if !slices.Contains(forgot, "sb-w000000000000") || slices.Contains(forgot, filepath.Base(filepath.Dir(ws))) {
		t.Errorf("forgotten after the restart: %v, want the unused warm sandboxes only", forgot)
	}
	if b, err := os.ReadFile(filepath.Join(m2.WorkspaceDir("kept"), "work")); err != nil || !bytes.Equal(b, []byte("x")) {
		t.Errorf("the learner's file after a restart: %q, %v", b, err)
	}
	if _, err := os.Stat(orphan); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an unused warm sandbox of the earlier run is still there: %v", err)
	}
	des, _ := os.ReadDir(filepath.Join(data, "sandboxes"))
	var dirs []string
	for _, de := range des {
		dirs = append(dirs, de.Name())
	}
	// kept (link), its warm directory, the new pool's one.
	if len(dirs) != 3 {
		t.Errorf("after the restart DATA/sandboxes holds %v, want the link, its directory and one warm", dirs)
	}
	if err := m2.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	des, _ = os.ReadDir(filepath.Join(data, "sandboxes"))
	if len(des) != 2 {
		t.Errorf("after Close DATA/sandboxes holds %d entries, want the learner's link and directory", len(des))
	}
}
