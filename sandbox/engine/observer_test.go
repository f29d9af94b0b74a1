package engine_test

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/labd/labd/sandbox/engine"
	"github.com/labd/labd/sandbox/engine/api"
	"github.com/labd/labd/sandbox/engine/image"
)

// observed is an engine.Observer that notes what it hears.
type observed struct {
	mu             sync.Mutex
	builds, failed int
	starts         int
}

func (o *observed) BuildDone(_ time.Duration, failed bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.builds++
	if failed {
		o.failed++
	}
}

func (o *observed) ContainerStarted() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.starts++
}

func (o *observed) Transferred(string, int64, bool) {}

func contextTar(t *testing.T, dockerfile string) io.Reader {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "Dockerfile", Mode: 0o644, Size: int64(len(dockerfile))})
	tw.Write([]byte(dockerfile))
	tw.Close()
	return bytes.NewReader(buf.Bytes())
}

// The engines tell their Observer of every build (done or failed) and
// container start: what labd's /metrics counts.
func TestObserver(t *testing.T) {
	obs := &observed{}
	shared, err := engine.OpenShared(t.TempDir(), engine.SharedOptions{Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := image.BootstrapBusybox(ctx, shared.Store); err != nil {
		t.Fatal(err)
	}
	e, err := shared.Engine("observed")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close(context.Background()) })
	for _, df := range []string{"FROM busybox\nRUN true\n", "FROM busybox\nRUN false\n"} {
		_, _ = e.Build(ctx, api.BuildConfig{Options: &build.ImageBuildOptions{Context: contextTar(t, df), Tags: []string{"obs"}}, Stdout: io.Discard, Stderr: io.Discard})
	}
	cr, err := e.ContainerCreate(ctx, "", &container.Config{Image: "busybox", Cmd: []string{"true"}}, &container.HostConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.ContainerStart(ctx, cr.ID); err != nil {
		t.Fatal(err)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.builds != 2 || obs.failed != 1 || obs.starts != 1 {
		t.Errorf("observed %d builds (%d failed) and %d starts, want 2 (1) and 1", obs.builds, obs.failed, obs.starts)
	}
}
