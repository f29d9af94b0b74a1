package enginetest

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// BenchmarkBuild times the CLI building the classic 4-step busybox
// Dockerfile on labd and on the reference dockerd in the same run: the
// first build (--no-cache), a fully cached rebuild, and a rebuild after
// changing the file of the last COPY.
func BenchmarkBuild(b *testing.B) {
	for _, e := range []*Engine{pair.Labd, pair.Dockerd} {
		if e == nil {
			continue
		}
		dir := b.TempDir()
		os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(classicDockerfile), 0o644)
		os.WriteFile(filepath.Join(dir, "app.py"), []byte("print('bench')\n"), 0o644)
		run := func(b *testing.B, args ...string) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if r := e.Docker(ctx, DockerCLI20, dir, nil, args...); r.Code != 0 {
				b.Fatalf("%s: %s", e.Name, r.Stderr)
			}
		}
		b.Run(e.Name+"/first", func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				run(b, "build", "--no-cache", "-t", "bench", ".")
			}
		})
		b.Run(e.Name+"/cached", func(b *testing.B) {
			run(b, "build", "-t", "bench", ".")
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				run(b, "build", "-t", "bench", ".")
			}
		})
		b.Run(e.Name+"/changed-copy", func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				os.WriteFile(filepath.Join(dir, "app.py"), []byte("print('bench "+strconv.Itoa(i)+time.Now().String()+"')\n"), 0o644)
				b.StartTimer()
				run(b, "build", "-t", "bench", ".")
			}
		})
	}
}
