package enginetest

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// addAccount creates a classroom registry account with labd's own command.
func addAccount(t *testing.T, dataDir, name, password string, extra ...string) {
	t.Helper()
	bin, err := LabdBinary()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"accounts", "add", name, "--password-stdin", "--data", dataDir}, extra...)...)
	cmd.Stdin = strings.NewReader(password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("labd accounts add %s: %v\n%s", name, err, out)
	}
}

// TestClassroomRegistry runs the lab's shipping steps with the real docker
// CLI against labd's engine and its embedded registry, as a learner types
// them: login without a registry name (the Docker Hub stand-in), push into
// her namespace, push into another learner's (denied), a second push after
// a change (only the changed layer is sent), then a pull and a run from a
// second engine, also after the registry restarted.
func TestClassroomRegistry(t *testing.T) {
	data := t.TempDir()
	addAccount(t, data, "alice", "alice-secret")
	addAccount(t, data, "bob", "bob-secret")
	regAddr := freeAddr(t)
	eng, err := StartLabd(data, filepath.Join(t.TempDir(), "labd.sock"), "--registry-addr", regAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { eng.Stop() }()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	docker := func(stdin string, args ...string) Result {
		var in []byte
		if stdin != "" {
			in = []byte(stdin)
		}
		return eng.Docker(ctx, DockerCLI20, "", in, args...)
	}

	if r := docker("wrong-password\n", "login", "-u", "alice", "--password-stdin"); r.Code == 0 ||
		!strings.Contains(r.Stderr, "unauthorized: incorrect username or password") {
		t.Fatalf("login with a wrong password: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if r := docker("alice-secret\n", "login", "-u", "alice", "--password-stdin"); r.Code != 0 || !strings.Contains(r.Stdout, "Login Succeeded") {
		t.Fatalf("login: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	defer docker("", "logout")

	files := map[string]string{"Dockerfile": pushDockerfile, "a.txt": "a\n", "b.txt": "b\n", "app.py": "print('hello world!')\n"}
	eng.Must(t, DockerCLI20, WriteContext(t, files), "build", "-q", "-t", "python-hello-world", ".")
	eng.Must(t, DockerCLI20, "", "tag", "python-hello-world", "alice/python-hello-world")
	first := docker("", "push", "alice/python-hello-world")
	if first.Code != 0 || !strings.Contains(first.Stdout, "The push refers to repository [docker.io/alice/python-hello-world]") ||
		!strings.Contains(first.Stdout, "latest: digest: sha256:") || strings.Count(first.Stdout, ": Pushed") != 4 {
		t.Fatalf("first push: exit %d, want 4 layers pushed\n%s%s", first.Code, first.Stdout, first.Stderr)
	}

	eng.Must(t, DockerCLI20, "", "tag", "python-hello-world", "bob/python-hello-world")
	if r := docker("", "push", "bob/python-hello-world"); r.Code == 0 || !strings.Contains(r.Stderr+r.Stdout, "denied: requested access to the resource is denied") {
		t.Fatalf("push into bob's namespace as alice: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}

	files["app.py"] = "print('Hello Beautiful World!')\n"
	eng.Must(t, DockerCLI20, WriteContext(t, files), "build", "-q", "-t", "python-hello-world", ".")
	eng.Must(t, DockerCLI20, "", "tag", "python-hello-world", "alice/python-hello-world")
	second := docker("", "push", "alice/python-hello-world")
	if second.Code != 0 || strings.Count(second.Stdout, ": Layer already exists") != 3 || strings.Count(second.Stdout, ": Pushed") != 1 {
		t.Fatalf("second push: exit %d, want 3 layers already there and 1 pushed\n%s%s", second.Code, second.Stdout, second.Stderr)
	}
	digest := eng.Must(t, DockerCLI20, "", "image", "inspect", "-f", "{{index .RepoDigests 0}}", "alice/python-hello-world")
	wantDigest := digest[strings.Index(digest, "@")+1:]

	// A second engine, without a registry of its own, pulls by the
	// registry's address, as a learner in another sandbox would: allowed
	// explicitly, as an operator would.
	other, err := StartLabd(t.TempDir(), filepath.Join(t.TempDir(), "other.sock"), "--registry-addr", "off", "--allowed-registry", regAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Stop()
	ref := regAddr + "/alice/python-hello-world"
	pullAndRun := func(label string) {
		t.Helper()
		if r := other.Docker(ctx, DockerCLI20, "", []byte("alice-secret\n"), "login", "-u", "alice", "--password-stdin", regAddr); r.Code != 0 {
			t.Fatalf("%s: login from the second engine: exit %d\n%s%s", label, r.Code, r.Stdout, r.Stderr)
		}
		r := other.Docker(ctx, DockerCLI20, "", nil, "pull", ref)
		if r.Code != 0 || !strings.Contains(r.Stdout, "Digest: "+strings.TrimSpace(wantDigest)) {
			t.Fatalf("%s: pull: exit %d, want digest %s\n%s%s", label, r.Code, wantDigest, r.Stdout, r.Stderr)
		}
		if out := other.Must(t, DockerCLI20, "", "run", "--rm", ref, "cat", "/app.py"); !strings.Contains(out, "Hello Beautiful World!") {
			t.Fatalf("%s: run of the pulled image printed %q", label, out)
		}
		other.Must(t, DockerCLI20, "", "rmi", ref)
	}
	pullAndRun("first pull")

	// A restarted labd still has every pushed image, and its digests verify
	// (the pulling engine checks every blob's digest).
	eng.Stop()
	if err := eng.Restart(); err != nil {
		t.Fatal(err)
	}
	pullAndRun("after restart")
}
