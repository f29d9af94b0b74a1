package enginetest

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkRunDetached times `docker run -d busybox sleep` until the CLI
// returns (the container runs), on both engines in the same run.
func BenchmarkRunDetached(b *testing.B) {
	for _, e := range []*Engine{pair.Labd, pair.Dockerd} {
		if e == nil {
			continue
		}
		b.Run(e.Name, func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			for i := 0; i < b.N; i++ {
				if r := e.Docker(ctx, DockerCLI20, "", nil, "run", "-d", "--label", "bench=run", "busybox", "sleep", "600"); r.Code != 0 {
					b.Fatalf("%s: %s", e.Name, r.Stderr)
				}
			}
			b.StopTimer()
			removeLabelled(ctx, e, "bench=run")
		})
	}
}

// BenchmarkPs50 times `docker ps` with 50 running containers.
func BenchmarkPs50(b *testing.B) {
	for _, e := range []*Engine{pair.Labd, pair.Dockerd} {
		if e == nil {
			continue
		}
		b.Run(e.Name, func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			for i := 0; i < 50; i++ {
				if r := e.Docker(ctx, DockerCLI20, "", nil, "run", "-d", "--label", "bench=ps", "--name", fmt.Sprintf("ps50-%d", i), "busybox", "sleep", "600"); r.Code != 0 {
					b.Fatalf("%s: %s", e.Name, r.Stderr)
				}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if r := e.Docker(ctx, DockerCLI20, "", nil, "ps"); r.Code != 0 {
					b.Fatalf("%s: %s", e.Name, r.Stderr)
				}
			}
			b.StopTimer()
			removeLabelled(ctx, e, "bench=ps")
		})
	}
}

func removeLabelled(ctx context.Context, e *Engine, label string) {
	r := e.Docker(ctx, DockerCLI20, "", nil, "ps", "-aq", "--filter", "label="+label)
	ids := splitLines(r.Stdout)
	if len(ids) > 0 {
		e.Docker(ctx, DockerCLI20, "", nil, append([]string{"rm", "-f"}, ids...)...)
	}
}

func splitLines(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			if i > start {
				out = append(out, s[start:i])
			}
			start = i + 1
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}
