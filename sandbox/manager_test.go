package sandbox_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labd/labd/internal/testenv"
	"github.com/labd/labd/sandbox"
	"github.com/labd/labd/sandbox/nsbox"
)

func TestMain(m *testing.M) {
	nsbox.Reexec()
	os.Exit(m.Run())
}

const wait = 20 * time.Second

var quiet = slog.New(slog.DiscardHandler)

// counting wraps the real provider to count creations.
type counting struct {
	sandbox.Provider
	n atomic.Int32
}

func (c *counting) Create(ctx context.Context, s sandbox.Spec) (sandbox.Sandbox, error) {
	c.n.Add(1)
	return c.Provider.Create(ctx, s)
}

// event is one OnDestroy call.
type event struct {
	id     string
	reason sandbox.Reason
}

func newManager(t *testing.T, idle time.Duration) (*sandbox.Manager, *counting, chan event) {
	t.Helper()
	testenv.Root(t, "namespaces")
	p := &counting{Provider: nsbox.New(nsbox.Options{})}
	m := sandbox.NewManager(p, sandbox.ManagerOptions{DataDir: t.TempDir(), IdleTimeout: idle, Logger: quiet})
	events := make(chan event, 16)
	m.OnDestroy(func(id string, r sandbox.Reason) { events <- event{id, r} })
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	return m, p, events
}

func nextEvent(t *testing.T, events chan event) event {
	t.Helper()
	select {
	case e := <-events:
		return e
	case <-time.After(wait):
		t.Fatalf("no OnDestroy call within %v", wait)
	}
	return event{}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return c
}

func TestGetOrCreateConcurrent(t *testing.T) {
	m, p, _ := newManager(t, -1)
	const n = 8
	got := make([]sandbox.Sandbox, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = m.GetOrCreate(ctx(t), "same", "alice")
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("GetOrCreate() error = %v", errs[i])
		}
		if got[i] != got[0] {
			t.Errorf("GetOrCreate() #%d returned a different sandbox", i)
		}
	}
	if c := p.n.Load(); c != 1 {
		t.Errorf("provider Create calls = %d, want 1", c)
	}
	sb, owner, ok := m.Get("same")
	if !ok || sb != got[0] || owner != "alice" {
		t.Errorf("Get() = %v, %q, %v; want the sandbox, alice, true", sb, owner, ok)
	}
	if sb.Hostname() != "lab-same" {
		t.Errorf("Hostname() = %q, want lab-same", sb.Hostname())
	}
	if _, err := m.GetOrCreate(ctx(t), "same", "bob"); !errors.Is(err, sandbox.ErrNotOwner) {
		t.Errorf("GetOrCreate(other owner) error = %v, want ErrNotOwner", err)
	}
}

func TestInvalidIDs(t *testing.T) {
	m := sandbox.NewManager(nsbox.New(nsbox.Options{}), sandbox.ManagerOptions{DataDir: t.TempDir(), IdleTimeout: -1, Logger: quiet})
	defer m.Close(context.Background())
	for _, id := range []string{"", "../x", "A", "a/b", "a.b", "x2345678901234567890123456789012345678901"} {
		if _, err := m.GetOrCreate(ctx(t), id, "o"); !errors.Is(err, sandbox.ErrInvalidID) {
			t.Errorf("GetOrCreate(%q) error = %v, want ErrInvalidID", id, err)
		}
	}
}

func TestIdleReaping(t *testing.T) {
	m, _, events := newManager(t, 300*time.Millisecond)
	sb, err := m.GetOrCreate(ctx(t), "idle", "o")
	if err != nil {
		t.Fatal(err)
	}
	if e := nextEvent(t, events); e != (event{"idle", sandbox.ReasonIdle}) {
		t.Errorf("OnDestroy got %v, want idle/ReasonIdle", e)
	}
	select {
	case <-sb.Done():
	case <-time.After(wait):
		t.Fatalf("reaped sandbox still running")
	}
	if _, _, ok := m.Get("idle"); ok {
		t.Errorf("Get() found a reaped sandbox")
	}
}

func TestTouchKeepsAlive(t *testing.T) {
	m, _, events := newManager(t, 300*time.Millisecond)
	sb, err := m.GetOrCreate(ctx(t), "busy", "o")
	if err != nil {
		t.Fatal(err)
	}
	// Touch for several idle timeouts; the sandbox must survive them.
	for range 15 {
		m.Touch("busy")
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case e := <-events:
		t.Fatalf("sandbox destroyed while touched: %v", e)
	case <-sb.Done():
		t.Fatalf("sandbox ended while touched")
	default:
	}
	// Once no longer touched it goes.
	if e := nextEvent(t, events); e.reason != sandbox.ReasonIdle {
		t.Errorf("reason = %v, want idle", e.reason)
	}
}

func TestShellExitRemoves(t *testing.T) {
	m, _, events := newManager(t, -1)
	sb, err := m.GetOrCreate(ctx(t), "quits", "o")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sb.Terminal().Write([]byte("exit\n")); err != nil {
		t.Fatal(err)
	}
	if e := nextEvent(t, events); e != (event{"quits", sandbox.ReasonShellExited}) {
		t.Errorf("OnDestroy got %v, want quits/ReasonShellExited", e)
	}
	if _, _, ok := m.Get("quits"); ok {
		t.Errorf("Get() found a sandbox whose shell exited")
	}
	sb2, err := m.GetOrCreate(ctx(t), "quits", "o")
	if err != nil {
		t.Fatal(err)
	}
	if sb2 == sb {
		t.Errorf("GetOrCreate after exit returned the ended sandbox")
	}
}

func TestWorkspacePersists(t *testing.T) {
	m, _, events := newManager(t, -1)
	sb, err := m.GetOrCreate(ctx(t), "keep", "o")
	if err != nil {
		t.Fatal(err)
	}
	if code, err := sb.Exec(ctx(t), sandbox.ExecSpec{Cmd: []string{"sh", "-c", "echo kept > notes.txt"}}); err != nil || code != 0 {
		t.Fatalf("Exec() = %d, %v", code, err)
	}
	fi, err := os.Stat(sb.Workspace())
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o700 {
		t.Errorf("workspace mode = %v, want 0700", perm)
	}
	if want := m.WorkspaceDir("keep"); sb.Workspace() != want || filepath.Base(filepath.Dir(want)) != "keep" {
		t.Errorf("Workspace() = %q, want %q", sb.Workspace(), want)
	}
	if err := m.Destroy(ctx(t), "keep", sandbox.ReasonAdmin); err != nil {
		t.Fatal(err)
	}
	if e := nextEvent(t, events); e != (event{"keep", sandbox.ReasonAdmin}) {
		t.Errorf("OnDestroy got %v, want keep/ReasonAdmin", e)
	}
	sb2, err := m.GetOrCreate(ctx(t), "keep", "o")
	if err != nil {
		t.Fatal(err)
	}
	var out stringWriter
	if code, err := sb2.Exec(ctx(t), sandbox.ExecSpec{Cmd: []string{"cat", "notes.txt"}, Stdout: &out}); err != nil || code != 0 || out.s != "kept\n" {
		t.Errorf("cat notes.txt after recreate = %d, %q, %v; want 0, %q", code, out.s, err, "kept\n")
	}
}

func TestClose(t *testing.T) {
	m, _, events := newManager(t, -1)
	var sbs []sandbox.Sandbox
	for _, id := range []string{"one", "two"} {
		sb, err := m.GetOrCreate(ctx(t), id, "o")
		if err != nil {
			t.Fatal(err)
		}
		sbs = append(sbs, sb)
	}
	if err := m.Close(ctx(t)); err != nil {
		t.Fatalf("Close() error = %v", err)
	}
	got := map[event]bool{nextEvent(t, events): true, nextEvent(t, events): true}
	for _, want := range []event{{"one", sandbox.ReasonShutdown}, {"two", sandbox.ReasonShutdown}} {
		if !got[want] {
			t.Errorf("OnDestroy calls %v lack %v", got, want)
		}
	}
	for _, sb := range sbs {
		select {
		case <-sb.Done():
		default:
			t.Errorf("sandbox %s still running after Close", sb.ID())
		}
	}
	if _, err := m.GetOrCreate(ctx(t), "three", "o"); !errors.Is(err, sandbox.ErrClosed) {
		t.Errorf("GetOrCreate after Close error = %v, want ErrClosed", err)
	}
}

func TestReasonString(t *testing.T) {
	tests := map[sandbox.Reason]string{
		sandbox.ReasonIdle:        "idle",
		sandbox.ReasonShellExited: "shell exited",
		sandbox.ReasonShutdown:    "shutdown",
		sandbox.ReasonAdmin:       "admin",
		sandbox.Reason(99):        "Reason(99)",
	}
	for r, want := range tests {
		if got := r.String(); got != want {
			t.Errorf("Reason(%d).String() = %q, want %q", int(r), got, want)
		}
	}
}

type stringWriter struct{ s string }

func (w *stringWriter) Write(p []byte) (int, error) { w.s += string(p); return len(p), nil }

// The per-call environment reaches the sandbox it creates; a sandbox that
// already runs keeps its own.
func TestGetOrCreateEnv(t *testing.T) {
	m, _, _ := newManager(t, -1)
	sb, err := m.GetOrCreateEnv(ctx(t), "env", "o", []string{"LABD_USER=alice"})
	if err != nil {
		t.Fatal(err)
	}
	again, err := m.GetOrCreateEnv(ctx(t), "env", "o", []string{"LABD_USER=bob"})
	if err != nil || again != sb {
		t.Fatalf("second GetOrCreateEnv = %v, %v; want the same sandbox", again, err)
	}
	var out stringWriter
	if code, err := sb.Exec(ctx(t), sandbox.ExecSpec{Cmd: []string{"sh", "-c", "echo $LABD_USER"}, Stdout: &out}); err != nil || code != 0 || out.s != "alice\n" {
		t.Errorf("echo $LABD_USER = %d, %q, %v; want 0, %q", code, out.s, err, "alice\n")
	}
}

// recording wraps the real provider to keep the specs it was given.
type recording struct {
	sandbox.Provider
	mu    sync.Mutex
	specs []sandbox.Spec
}

func (r *recording) Create(ctx context.Context, s sandbox.Spec) (sandbox.Sandbox, error) {
	r.mu.Lock()
	r.specs = append(r.specs, s)
	r.mu.Unlock()
	return r.Provider.Create(ctx, s)
}

// A lab's resources reach the provider with the sandbox they create; a
// sandbox that already runs keeps its own (no second Create).
func TestGetOrCreateWithResources(t *testing.T) {
	testenv.Root(t, "namespaces")
	p := &recording{Provider: nsbox.New(nsbox.Options{})}
	m := sandbox.NewManager(p, sandbox.ManagerOptions{DataDir: t.TempDir(), IdleTimeout: -1, Logger: quiet})
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	want := sandbox.Resources{Memory: 2 << 30, Pids: 2048}
	sb, err := m.GetOrCreateWith(ctx(t), "res", "o", sandbox.CreateOptions{Env: []string{"LABD_USER=alice"}, Resources: want})
	if err != nil {
		t.Fatal(err)
	}
	again, err := m.GetOrCreateWith(ctx(t), "res", "o", sandbox.CreateOptions{Resources: sandbox.Resources{Memory: 1}})
	if err != nil || again != sb {
		t.Fatalf("second GetOrCreateWith = %v, %v; want the same sandbox", again, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.specs) != 1 || p.specs[0].Resources != want || len(p.specs[0].Env) == 0 || p.specs[0].Env[len(p.specs[0].Env)-1] != "LABD_USER=alice" {
		t.Errorf("provider got %+v, want one spec with %+v and LABD_USER", p.specs, want)
	}
}
