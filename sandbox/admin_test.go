package sandbox_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/labd/labd/internal/testenv"
	"github.com/labd/labd/sandbox"
	"github.com/labd/labd/sandbox/nsbox"
)

// removing is the real provider (warming when asked) that records the
// RemoveFiles calls Remove makes.
type removing struct {
	*warming
	mu      sync.Mutex
	removed []string
}

func (r *removing) RemoveFiles(ctx context.Context, name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.removed = append(r.removed, name)
	return nil
}

func (r *removing) calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.removed)
}

// TestRemove: a running sandbox is destroyed (ReasonAdmin) and its files
// go; a warm-born one loses its link and the warm sandbox's directory; a
// stopped one only its files; the provider hears of each by the
// sandbox's own name; a second Remove finds nothing.
func TestRemove(t *testing.T) {
	testenv.Root(t, "namespaces")
	data := t.TempDir()
	w := &warming{counting: counting{Provider: nsbox.New(nsbox.Options{})}}
	p := &removing{warming: w}
	m := sandbox.NewManager(p, sandbox.ManagerOptions{DataDir: data, IdleTimeout: -1, Logger: quiet, Warm: 1, MaxSandboxes: 10})
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	reasons := map[string]sandbox.Reason{}
	var mu sync.Mutex
	m.OnDestroy(func(id string, r sandbox.Reason) {
		mu.Lock()
		reasons[id] = r
		mu.Unlock()
	})
	ctx := context.Background()
	waitWarm(t, m, 1)

	// Warm-born: DATA/sandboxes/<id> links to the warm sandbox.
	const warmID = "sb-0000000000000001"
	if _, err := m.GetOrCreate(ctx, warmID, "alice"); err != nil {
		t.Fatal(err)
	}
	inst := m.Instance(warmID)
	if inst == warmID {
		t.Fatalf("%s was not given a warm sandbox", warmID)
	}
	if err := os.WriteFile(filepath.Join(m.WorkspaceDir(warmID), "work.txt"), []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	rm, err := m.Remove(ctx, warmID)
	if err != nil {
		t.Fatal(err)
	}
	link, dir := filepath.Join(data, "sandboxes", warmID), filepath.Join(data, "sandboxes", inst)
	if !rm.Stopped || !slices.Equal(rm.Paths, []string{link, dir}) {
		t.Errorf("Remove = %+v, want stopped, %s and %s removed", rm, link, dir)
	}
	for _, p := range []string{link, dir} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after Remove: %v, want it gone", p, err)
		}
	}
	mu.Lock()
	if reasons[warmID] != sandbox.ReasonAdmin {
		t.Errorf("destroyed for %v, want admin", reasons[warmID])
	}
	mu.Unlock()
	if _, ok := m.Info(warmID); ok {
		t.Error("the sandbox is still listed after Remove")
	}

	// Made for its learner (a workspace existed), stopped, then removed.
	const ownID = "sb-0000000000000002"
	if err := os.MkdirAll(m.WorkspaceDir(ownID), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := m.GetOrCreate(ctx, ownID, "bob"); err != nil {
		t.Fatal(err)
	}
	if m.Instance(ownID) != ownID {
		t.Fatalf("instance of %s = %s, want itself", ownID, m.Instance(ownID))
	}
	if err := m.Destroy(ctx, ownID, sandbox.ReasonAdmin); err != nil {
		t.Fatal(err)
	}
	// Something still mounted in it (a provider that left its disk) is
	// never renamed away from its mount table entry: refused, kept.
	mnt := filepath.Join(m.WorkspaceDir(ownID), "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Remove(ctx, ownID); err == nil || !strings.Contains(err.Error(), "still mounted: "+mnt) {
		t.Errorf("Remove with a mount inside = %v, want a refusal naming it", err)
	}
	if err := syscall.Unmount(mnt, 0); err != nil {
		t.Fatal(err)
	}
	rm, err = m.Remove(ctx, ownID)
	if err != nil || rm.Stopped || !slices.Equal(rm.Paths, []string{filepath.Join(data, "sandboxes", ownID)}) {
		t.Errorf("Remove of a stopped sandbox = %+v, %v", rm, err)
	}
	if got, want := p.calls(), []string{inst, ownID, ownID}; !slices.Equal(got, want) {
		t.Errorf("RemoveFiles calls = %v, want %v", got, want)
	}

	for _, id := range []string{warmID, ownID, "sb-0000000000000003"} {
		if _, err := m.Remove(ctx, id); !errors.Is(err, sandbox.ErrNotFound) {
			t.Errorf("Remove(%s) again = %v, want ErrNotFound", id, err)
		}
	}
	if _, err := m.Remove(ctx, "../etc"); !errors.Is(err, sandbox.ErrInvalidID) {
		t.Errorf("Remove(../etc) = %v, want ErrInvalidID", err)
	}
	// The pool's own sandboxes are untouched.
	if m.Warm() != 1 {
		t.Errorf("%d warm sandboxes after the removals, want 1", m.Warm())
	}
}

// TestDirSize: allocated bytes (a sparse file counts what it holds), hard
// links once, links not followed, and the bound on entries.
func TestDirSize(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, n int) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), make([]byte, n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a", 64<<10)
	write("sub/b", 64<<10)
	if err := os.Link(filepath.Join(dir, "a"), filepath.Join(dir, "sub", "a-again")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/usr", filepath.Join(dir, "usr")); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(1 << 30)
	f.Close()

	tests := []struct {
		name        string
		max         int
		min, most   int64
		wantPartial bool
	}{
		// a and b; the link to a, the sparse GiB and /usr add nothing.
		{"whole", 1000, 128 << 10, 192 << 10, false},
		{"bounded", 2, 0, 64 << 10, true},
	}
	for _, tt := range tests {
		n, partial, err := sandbox.DirSize(context.Background(), dir, tt.max)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if n < tt.min || n > tt.most || partial != tt.wantPartial {
			t.Errorf("%s: DirSize = %d, partial %v; want %d..%d, partial %v", tt.name, n, partial, tt.min, tt.most, tt.wantPartial)
		}
	}
	if _, _, err := sandbox.DirSize(context.Background(), filepath.Join(dir, "missing"), 10); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("DirSize of a missing dir = %v, want ErrNotExist", err)
	}
}
