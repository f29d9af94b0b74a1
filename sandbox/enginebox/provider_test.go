package enginebox_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labd/labd/sandbox"
	"github.com/labd/labd/sandbox/engine"
	"github.com/labd/labd/sandbox/engine/image"
	"github.com/labd/labd/sandbox/enginebox"
	"github.com/labd/labd/sandbox/nsbox"
)

func TestMain(m *testing.M) {
	nsbox.Reexec()
	code := m.Run()
	removeShellData()
	os.Exit(code)
}

// run executes a shell command in sb the way a grader does and returns its
// combined output.
func run(t *testing.T, sb sandbox.Sandbox, script string) (string, int) {
	t.Helper()
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code, err := sb.Exec(ctx, sandbox.ExecSpec{Cmd: []string{"sh", "-c", script}, Stdout: &out, Stderr: &out})
	if err != nil {
		t.Fatalf("exec %q: %v", script, err)
	}
	return out.String(), code
}

// TestProviderGivesEachSandboxItsOwnEngine drives the real docker CLI from
// inside two sandboxes: each reaches its own engine through DOCKER_HOST,
// sees the shared base image, and not the other's builds.
func TestProviderGivesEachSandboxItsOwnEngine(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("needs root (namespaces, containers); CI runs as root")
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Fatal("the docker CLI is missing: apt-get install docker.io (deploy/deps.sh test)")
	}
	ctx := context.Background()
	data := t.TempDir()
	shared, err := engine.OpenShared(data, engine.SharedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := image.BootstrapBusybox(ctx, shared.Store); err != nil {
		t.Fatal(err)
	}
	mgr := sandbox.NewManager(&enginebox.Provider{Inner: nsbox.New(nsbox.Options{}), Shared: shared}, sandbox.ManagerOptions{DataDir: data, IdleTimeout: -1})
	defer mgr.Close(ctx)

	a, err := mgr.GetOrCreate(ctx, "sb-a", "alice")
	if err != nil {
		t.Fatal(err)
	}
	b, err := mgr.GetOrCreate(ctx, "sb-b", "bob")
	if err != nil {
		t.Fatal(err)
	}
	if out, _ := run(t, a, `echo "$DOCKER_HOST $DOCKER_BUILDKIT"`); !strings.Contains(out, "unix://") || !strings.HasSuffix(strings.TrimSpace(out), " 0") {
		t.Fatalf("sandbox environment = %q, want DOCKER_HOST=unix://... and DOCKER_BUILDKIT=0", out)
	}

	if err := os.WriteFile(filepath.Join(a.Workspace(), "Dockerfile"), []byte("FROM busybox\nRUN echo hi > /hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := run(t, a, "docker build -t mine .")
	if code != 0 || !strings.Contains(out, "Successfully tagged mine:latest") {
		t.Fatalf("docker build in sandbox a: exit %d\n%s", code, out)
	}
	out, _ = run(t, a, "docker image ls --format '{{.Repository}}:{{.Tag}}'")
	if !strings.Contains(out, "mine:latest") || !strings.Contains(out, "busybox:latest") {
		t.Fatalf("images in a = %q, want mine and busybox", out)
	}
	out, _ = run(t, b, "docker image ls --format '{{.Repository}}:{{.Tag}}'")
	if strings.Contains(out, "mine") || !strings.Contains(out, "busybox:latest") {
		t.Fatalf("images in b = %q, want busybox only", out)
	}
	if out, code := run(t, b, "docker image inspect mine"); code == 0 {
		t.Fatalf("sandbox b sees a's image: %s", out)
	}

	// Published ports listen in the sandbox's own network namespace: both
	// publish 5001, each reaches its own container.
	for _, sb := range []sandbox.Sandbox{a, b} {
		out, code := run(t, sb, `docker run -d -p 5001:5000 busybox sh -c 'mkdir /w && echo "ok $(hostname)" > /w/index.html && exec httpd -f -p 5000 -h /w' >/dev/null &&
for i in $(seq 100); do busybox wget -qO- http://127.0.0.1:5001/ 2>/dev/null && break; sleep 0.1; done`)
		if code != 0 || !strings.HasPrefix(out, "ok ") {
			t.Fatalf("run -p 5001 and wget in %s: exit %d, %q", sb.ID(), code, out)
		}
	}

	sock := filepath.Join(filepath.Dir(a.Workspace()), enginebox.SocketName)
	if err := mgr.Destroy(ctx, "sb-a", sandbox.ReasonAdmin); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("engine socket %s still there after destroy (err %v)", sock, err)
	}
}
