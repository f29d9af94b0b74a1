package enginetest

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkUserNS times `docker run -d` and a fully cached rebuild on two
// labd engines in the same run: one with user namespaces (what learners'
// engines use, and the pair's labd) and one without (host root is the
// containers' root, labd before issue 12).
func BenchmarkUserNS(b *testing.B) {
	dir, err := os.MkdirTemp("", "labd-bench-userns-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	plain, err := StartLabd(filepath.Join(dir, "data"), filepath.Join(dir, "plain.sock"), "--userns=false", "--registry-addr", "off")
	if err != nil {
		b.Fatal(err)
	}
	defer plain.Stop()
	ctxDir := b.TempDir()
	os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte(classicDockerfile), 0o644)
	os.WriteFile(filepath.Join(ctxDir, "app.py"), []byte("print('bench')\n"), 0o644)
	for _, c := range []struct {
		name string
		e    *Engine
	}{{"host-root", plain}, {"userns", pair.Labd}} {
		run := func(b *testing.B, dir string, args ...string) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if r := c.e.Docker(ctx, DockerCLI20, dir, nil, args...); r.Code != 0 {
				b.Fatalf("%s: %s", c.name, r.Stderr)
			}
		}
		b.Run(c.name+"/run-d", func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				run(b, "", "run", "-d", "--label", "bench=userns", "busybox", "sleep", "600")
			}
			b.StopTimer()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			removeLabelled(ctx, c.e, "bench=userns")
		})
		b.Run(c.name+"/cached-rebuild", func(b *testing.B) {
			run(b, ctxDir, "build", "-t", "bench-userns", ".")
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				run(b, ctxDir, "build", "-t", "bench-userns", ".")
			}
		})
	}
}
