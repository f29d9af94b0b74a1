package enginetest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestEngineNeedsSeccomp builds labd without -tags seccomp, as a
// developer might with a bare `go build`: its engine must refuse to run
// containers at all rather than run learners' code without Docker's
// default profile. The labd make builds applies the profile: a container
// sees a seccomp filter.
func TestEngineNeedsSeccomp(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "labd-no-seccomp")
	build := exec.Command("go", "build", "-o", bin, "./cmd/labd")
	build.Dir = root
	// GOFLAGS from make carries -tags=seccomp: this build must not.
	build.Env = append(os.Environ(), "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build without tags: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	out, err := exec.CommandContext(ctx, bin, "engine", "--socket", filepath.Join(dir, "e.sock"), "--data", filepath.Join(dir, "data"), "--registry-addr", "off").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "built without seccomp support: build it with -tags seccomp") {
		t.Errorf("labd engine without seccomp support: %v\n%s\nwant a refusal naming -tags seccomp", err, out)
	}

	r := pair.Labd.Docker(ctx, DockerCLI20, "", nil, "run", "--rm", "busybox", "grep", "^Seccomp:", "/proc/self/status")
	if r.Code != 0 || !strings.Contains(r.Stdout, "2") {
		t.Errorf("a container of labd's engine: %q %q, want Seccomp: 2 (filter)", r.Stdout, r.Stderr)
	}
}
