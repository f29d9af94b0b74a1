package enginetest

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/labd/labd/sandbox/engine/mountinfo"
)

// leaks counts what a build step may leave behind: mounts under the
// engine's state, build scratch directories and the cgroups under the
// engine's own cgroup parent (not labd's default, which every other test
// binary of `go test ./...` uses at the same time).
type leaks struct {
	mounts, scratch, cgroups int
}

func countLeaks(e *Engine, dataDir string) leaks {
	var l leaks
	l.mounts = len(mountinfo.Under(dataDir)) + len(mountinfo.Under(e.RuntimeRoot))
	ents, _ := os.ReadDir(filepath.Join(dataDir, "engine", "build"))
	l.scratch = len(ents)
	l.cgroups = len(CgroupDirs(e.CgroupParent))
	return l
}

// waitFor polls cond until it holds or 20 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestCancelledBuildLeavesNothing cancels the client during a RUN step:
// the container is killed and no mount, scratch dir or cgroup remains.
func TestCancelledBuildLeavesNothing(t *testing.T) {
	dataDir := filepath.Join(pair.Dir, "labd-data")
	before := countLeaks(pair.Labd, dataDir)
	dir := WriteContext(t, map[string]string{"Dockerfile": "FROM busybox\nRUN echo started && sleep 30\n"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan Result, 1)
	go func() {
		done <- pair.Labd.Docker(ctx, DockerCLI20, dir, nil, "build", "--no-cache", "-t", "cancelled", ".")
	}()
	waitFor(t, "RUN step to start", func() bool { return countLeaks(pair.Labd, dataDir).mounts > before.mounts })
	cancel()
	<-done
	waitFor(t, "cleanup after cancel", func() bool { return countLeaks(pair.Labd, dataDir) == before })
	r := pair.Labd.Docker(context.Background(), DockerCLI20, "", nil, "image", "inspect", "cancelled")
	if r.Code == 0 {
		t.Error("a cancelled build tagged its image")
	}
}

// TestKillDuringBuild kills labd (SIGKILL) in the middle of a RUN step,
// restarts it, and checks the store is consistent and builds work.
func TestKillDuringBuild(t *testing.T) {
	dataDir := filepath.Join(pair.Dir, "labd-data")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	before := pair.Labd.Must(t, DockerCLI20, "", "images", "-a", "-q", "--no-trunc")
	dir := WriteContext(t, map[string]string{"Dockerfile": "FROM busybox\nRUN echo killed > /k\nRUN sleep 30\n"})
	done := make(chan Result, 1)
	go func() {
		done <- pair.Labd.Docker(ctx, DockerCLI20, dir, nil, "build", "--no-cache", "-t", "killed", ".")
	}()
	base := countLeaks(pair.Labd, dataDir).mounts
	waitFor(t, "RUN sleep to start", func() bool { return countLeaks(pair.Labd, dataDir).mounts > base })
	pair.Labd.Kill()
	r := <-done
	if r.Code == 0 {
		t.Fatalf("build survived the engine's death:\n%s", r.Stdout)
	}
	if err := pair.Labd.Restart(); err != nil {
		t.Fatalf("restart: %v\n%s", err, pair.Labd.Log())
	}
	// The killed RUN's mounts and scratch are gone after the restart.
	waitFor(t, "restart cleanup", func() bool {
		l := countLeaks(pair.Labd, dataDir)
		// The standalone engine's network keeps its netns mounts under
		// engine/run while it runs, and its user namespace its pin.
		return l.scratch == 0 && l.mounts == len(mountinfo.Under(filepath.Join(dataDir, "engine", "run")))+len(mountinfo.Under(filepath.Join(dataDir, "engine", "userns")))
	})
	imgs := pair.Labd.Must(t, DockerCLI20, "", "images", "-a")
	if strings.Contains(imgs, "killed") {
		t.Errorf("half-built image tagged:\n%s", imgs)
	}
	// Every image from before the kill is still there, and every listed
	// image can be inspected and its history read.
	after := strings.Fields(pair.Labd.Must(t, DockerCLI20, "", "images", "-a", "-q", "--no-trunc"))
	for _, id := range strings.Fields(before) {
		if !slices.Contains(after, id) {
			t.Errorf("image %s existed before the kill and is gone after the restart", id)
		}
	}
	if len(strings.Fields(before)) == 0 {
		t.Error("no image before the kill: the test checks nothing about keeping them")
	}
	for _, id := range after {
		pair.Labd.Must(t, DockerCLI20, "", "history", id)
	}
	dir2 := WriteContext(t, map[string]string{"Dockerfile": "FROM busybox\nRUN echo after > /a\n"})
	out := pair.Labd.Must(t, DockerCLI20, dir2, "build", "-t", "after-crash", ".")
	if !strings.Contains(out, "Successfully tagged after-crash:latest") {
		t.Errorf("build after restart:\n%s", out)
	}
	if got := pair.Labd.Must(t, DockerCLI20, "", "save", "after-crash"); len(got) < 1024 {
		t.Errorf("save after restart: %d bytes", len(got))
	}
}
