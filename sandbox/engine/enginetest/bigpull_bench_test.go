package enginetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labd/labd/sandbox/engine"
	"github.com/labd/labd/sandbox/engine/api"
	"github.com/labd/labd/sandbox/engine/distribution"
)

// bigLayerSize makes a ~250 MB base image (issue 5's benchmark).
const bigLayerSize = 250 << 20

// classSize is the number of learners pulling the same base image at once.
const classSize = 30

// BenchmarkRegistryBigPull measures pulls of a ~250 MB base image (busybox
// plus one layer of random bytes, so gzip cannot shrink it) from Debian's
// docker-registry behind the byte-counting proxy:
//   - pull: labd into a fresh data dir each time; dockerd after rmi.
//   - pull30: 30 concurrent pulls; labd into 30 views (sandboxes) of one
//     fresh Shared store, whose pull-through cache should fetch each blob
//     once; dockerd, which has no views, 30 concurrent pulls of one image.
//
// It needs about 1.5 GB of disk and minutes: run it with -benchtime 1x or 2x.
func BenchmarkRegistryBigPull(b *testing.B) {
	reg := StartDockerRegistry(b, nil)
	dir := b.TempDir()
	writeRandom(b, filepath.Join(dir, "big.bin"), bigLayerSize)
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM busybox\nCOPY big.bin /big.bin\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	ref := reg.Addr + "/class/base250:v1"
	pair.Labd.Must(b, DockerCLI20, dir, "build", "-q", "-t", ref, ".")
	pair.Labd.Must(b, DockerCLI20, "", "push", ref)
	pair.Labd.Must(b, DockerCLI20, "", "rmi", ref)
	b.Logf("pushed %s: %.1f MB sent", ref, float64(reg.Up.Load())/1e6)

	// pulls runs n concurrent `docker pull ref`, one per socket, and reports
	// the wall time and the bytes the registry sent.
	pulls := func(b *testing.B, socks []string) {
		b.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		down := reg.Down.Load()
		res := make([]Result, len(socks))
		start := time.Now()
		var wg sync.WaitGroup
		for i, s := range socks {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res[i] = (&Engine{Name: "pull", Socket: s}).Docker(ctx, DockerCLI20, "", nil, "pull", ref)
			}()
		}
		wg.Wait()
		el := time.Since(start)
		for i, r := range res {
			if r.Code != 0 || !strings.Contains(r.Stdout, "Digest: sha256:") {
				b.Fatalf("pull %d: exit %d\n%s\n%s", i, r.Code, r.Stdout, r.Stderr)
			}
		}
		b.ReportMetric(float64(el.Milliseconds()), "ms")
		b.ReportMetric(float64(reg.Down.Load()-down)/1e6, "MB-received")
	}

	// labdViews opens a fresh Shared store with n views, each served on its
	// own socket, as labd serves its sandboxes.
	labdViews := func(b *testing.B, n int) (socks []string, cleanup func()) {
		b.Helper()
		data, err := os.MkdirTemp("", "labd-bigpull-")
		if err != nil {
			b.Fatal(err)
		}
		s, err := engine.OpenShared(data, engine.SharedOptions{NoRuntime: true, Registry: distribution.Options{AllowedRegistries: []string{reg.Addr}}})
		if err != nil {
			b.Fatal(err)
		}
		var srvs []*api.UnixServer
		for i := range n {
			e, err := s.Engine(fmt.Sprintf("sb%d", i))
			if err != nil {
				b.Fatal(err)
			}
			sock := filepath.Join(data, fmt.Sprintf("sb%d.sock", i))
			srv, err := api.ServeUnix(sock, api.New(e, api.Options{}))
			if err != nil {
				b.Fatal(err)
			}
			srvs = append(srvs, srv)
			socks = append(socks, sock)
		}
		return socks, func() {
			for _, srv := range srvs {
				_ = srv.Close(context.Background())
			}
			_ = os.RemoveAll(data)
		}
	}

	for _, n := range []int{1, classSize} {
		name := "pull"
		if n > 1 {
			name = fmt.Sprintf("pull%d", n)
		}
		b.Run("labd/"+name, func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				socks, cleanup := labdViews(b, n)
				b.StartTimer()
				pulls(b, socks)
				b.StopTimer()
				cleanup()
				b.StartTimer()
			}
		})
		if pair.Dockerd == nil {
			continue
		}
		b.Run("dockerd/"+name, func(b *testing.B) {
			socks := make([]string, n)
			for i := range socks {
				socks[i] = pair.Dockerd.Socket
			}
			for range b.N {
				b.StopTimer()
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				_ = pair.Dockerd.Docker(ctx, DockerCLI20, "", nil, "rmi", ref) // absent the first time
				cancel()
				b.StartTimer()
				pulls(b, socks)
			}
		})
	}
	if pair.Dockerd != nil {
		_ = pair.Dockerd.Docker(context.Background(), DockerCLI20, "", nil, "rmi", ref)
	}
}

// writeRandom writes n incompressible bytes to p.
func writeRandom(b testing.TB, p string, n int) {
	b.Helper()
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var seed [32]byte
	copy(seed[:], "labd registry benchmark layer!!")
	r := rand.NewChaCha8(seed)
	buf := make([]byte, 1<<20)
	for written := 0; written < n; written += len(buf) {
		_, _ = r.Read(buf)
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
}
