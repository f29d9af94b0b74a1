package enginetest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// clis are the docker CLIs every lifecycle test drives labd with.
var clis = []string{DockerCLI20, DockerCLI28}

// TestCLIImageLifecycle drives build, images, history, tag, rmi, prune,
// save and load with each docker CLI against labd, and checks what the
// CLI prints against the reference where one runs.
func TestCLIImageLifecycle(t *testing.T) {
	for _, cli := range clis {
		name := "cli20"
		if cli == DockerCLI28 {
			name = "cli28"
		}
		t.Run(name, func(t *testing.T) {
			if cli == DockerCLI28 {
				needCLI28(t)
			}
			for _, e := range both(t) {
				testLifecycle(t, e, cli)
			}
		})
	}
}

func testLifecycle(t *testing.T, e *Engine, cli string) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := WriteContext(t, map[string]string{"Dockerfile": classicDockerfile, "app.py": "print('lifecycle')\n"})
	out := e.Must(t, cli, dir, "build", "-t", "life:1", ".")
	if !strings.Contains(out, "Successfully tagged life:1") {
		t.Fatalf("%s: build output:\n%s", e.Name, out)
	}
	if _, err := os.Stat("/nonexistent"); err == nil {
		t.Fatal("impossible")
	}
	imgs := e.Must(t, cli, "", "images", "--format", "{{.Repository}}:{{.Tag}}")
	if !strings.Contains(imgs, "life:1") || !strings.Contains(imgs, "busybox:latest") {
		t.Errorf("%s: images:\n%s", e.Name, imgs)
	}
	hist := e.Must(t, cli, "", "history", "life:1")
	if !strings.Contains(hist, "<missing>") || !strings.Contains(hist, "COPY file:") {
		t.Errorf("%s: history:\n%s", e.Name, hist)
	}
	e.Must(t, cli, "", "tag", "life:1", "someuser/life:latest")
	id := strings.TrimSpace(e.Must(t, cli, "", "inspect", "--format", "{{.Id}}", "someuser/life"))
	id1 := strings.TrimSpace(e.Must(t, cli, "", "image", "inspect", "--format", "{{.Id}}", "life:1"))
	if id != id1 || !strings.HasPrefix(id, "sha256:") {
		t.Errorf("%s: tag points at %q, want %q", e.Name, id, id1)
	}
	// save, rmi both tags (the image and its parents go), load back.
	tarPath := filepath.Join(t.TempDir(), "life.tar")
	e.Must(t, cli, "", "save", "-o", tarPath, "life:1")
	rm := e.Must(t, cli, "", "rmi", "someuser/life")
	if strings.TrimSpace(rm) != "Untagged: someuser/life:latest" {
		t.Errorf("%s: rmi one of two tags printed:\n%s", e.Name, rm)
	}
	rm = e.Must(t, cli, "", "rmi", "life:1")
	if !strings.HasPrefix(rm, "Untagged: life:1\nDeleted: sha256:") {
		t.Errorf("%s: rmi printed:\n%s", e.Name, rm)
	}
	if r := e.Docker(ctx, cli, "", nil, "image", "inspect", "life:1"); r.Code == 0 || !strings.Contains(r.Stderr, "No such image: life:1") {
		t.Errorf("%s: inspect after rmi: exit %d, %q", e.Name, r.Code, r.Stderr)
	}
	load := e.Must(t, cli, "", "load", "-i", tarPath)
	if !strings.Contains(load, "Loaded image: life:1") {
		t.Errorf("%s: load printed %q", e.Name, load)
	}
	if got := strings.TrimSpace(e.Must(t, cli, "", "image", "inspect", "--format", "{{.Id}}", "life:1")); got != id1 {
		t.Errorf("%s: loaded ID %s, want %s", e.Name, got, id1)
	}
	// A dangling image: build, then move the tag away.
	dir2 := WriteContext(t, map[string]string{"Dockerfile": "FROM busybox\nLABEL v=1\n"})
	e.Must(t, cli, dir2, "build", "-t", "dangle", ".")
	os.WriteFile(filepath.Join(dir2, "Dockerfile"), []byte("FROM busybox\nLABEL v=2\n"), 0o644)
	e.Must(t, cli, dir2, "build", "-t", "dangle", ".")
	pr := e.Must(t, cli, "", "image", "prune", "-f")
	if !strings.Contains(pr, "Deleted Images:") || !strings.Contains(pr, "Total reclaimed space:") {
		t.Errorf("%s: prune printed:\n%s", e.Name, pr)
	}
	if r := e.Docker(ctx, cli, "", nil, "builder", "prune", "-f"); r.Code != 0 && e.Name == "labd" {
		t.Errorf("%s: builder prune: %s", e.Name, r.Stderr)
	}
	e.Must(t, cli, "", "rmi", "dangle", "life:1")
	// Unknown things get Docker's errors.
	r := e.Docker(ctx, cli, "", nil, "rmi", "nosuchimage")
	if r.Code == 0 || !strings.Contains(r.Stderr, "No such image: nosuchimage") {
		t.Errorf("%s: rmi unknown: exit %d, %q", e.Name, r.Code, r.Stderr)
	}
	r = e.Docker(ctx, cli, "", nil, "inspect", "nosuchthing")
	if r.Code == 0 || !strings.Contains(r.Stderr, "No such object: nosuchthing") {
		t.Errorf("%s: inspect unknown: exit %d, %q", e.Name, r.Code, r.Stderr)
	}
}

// TestCLIOutputsMatch compares the text of read-only commands.
func TestCLIOutputsMatch(t *testing.T) {
	needDockerd(t)
	for _, args := range [][]string{
		{"history", "--no-trunc", "--format", "{{.ID}} {{.CreatedBy}} {{.Size}}", "busybox"},
		{"images", "--format", "{{.Repository}} {{.Tag}} {{.ID}} {{.Size}}", "busybox"},
		{"image", "inspect", "--format", "{{.Id}} {{.RepoTags}} {{.Os}} {{.Architecture}} {{.RootFS.Layers}} {{.Config.Cmd}}", "busybox"},
		{"rmi", "nosuch:tag"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		l := pair.Labd.Docker(ctx, DockerCLI20, "", nil, args...)
		d := pair.Dockerd.Docker(ctx, DockerCLI20, "", nil, args...)
		cancel()
		if l != d {
			t.Errorf("docker %s:\nlabd:    %+v\ndockerd: %+v", strings.Join(args, " "), l, d)
		}
	}
}
