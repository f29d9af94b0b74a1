package web

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/labd/labd/sandbox"
	"github.com/labd/labd/sandbox/nsbox"
)

// specProvider keeps the specs of the sandboxes it creates.
type specProvider struct {
	inner sandbox.Provider
	mu    sync.Mutex
	specs []sandbox.Spec
}

func (p *specProvider) Create(ctx context.Context, spec sandbox.Spec) (sandbox.Sandbox, error) {
	p.mu.Lock()
	p.specs = append(p.specs, spec)
	p.mu.Unlock()
	return p.inner.Create(ctx, spec)
}

// TestLabResources: the lab page creates the sandbox with what the lab's
// front matter asks for ("resources:"); a lab without asks for nothing
// (the server's defaults).
func TestLabResources(t *testing.T) {
	root := t.TempDir()
	for id, extra := range map[string]string{"big": "resources: {memory: 2g, pids: 2048}\n", "plain": ""} {
		dir := filepath.Join(root, id)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		lab := "---\ntitle: T\nsummary: S\nduration: 5 min\nlevel: beginner\n" + extra + "---\n## Step\n\nText.\n"
		if err := os.WriteFile(filepath.Join(dir, "lab.md"), []byte(lab), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := &specProvider{inner: nsbox.New(nsbox.Options{})}
	mgr := sandbox.NewManager(p, sandbox.ManagerOptions{DataDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(func() { mgr.Close(context.Background()) })
	s := newTestServerIdle(t, root, 0, 0, func(o *Options) { o.Sandboxes = mgr })
	c := s.client(t)
	want := map[string]sandbox.Resources{"big": {Memory: 2 << 30, Pids: 2048}, "plain": {}}
	for _, id := range []string{"big", "plain"} {
		resp, body := get(t, c, s.URL+"/labs/"+id)
		if resp.StatusCode != 200 {
			t.Fatalf("GET /labs/%s: %d\n%s", id, resp.StatusCode, body)
		}
		// One at a time, so the specs come in the labs' order.
		waitSandbox(t, mgr, sandboxAttrOf(t, body))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.specs) != 2 {
		t.Fatalf("%d sandboxes created, want 2", len(p.specs))
	}
	for i, id := range []string{"big", "plain"} {
		if got := p.specs[i].Resources; got != want[id] {
			t.Errorf("lab %s: sandbox resources %+v, want %+v", id, got, want[id])
		}
	}
}
