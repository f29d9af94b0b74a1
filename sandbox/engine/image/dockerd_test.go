package image

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/labd/labd/internal/testenv"
	"github.com/opencontainers/go-digest"

	"github.com/labd/labd/sandbox/engine/layer"
)

// refDockerd is a reference dockerd on a private socket and data root.
type refDockerd struct {
	sock string
	cmd  *exec.Cmd
}

func findBinary(names ...string) string {
	for _, n := range names {
		if _, err := os.Stat(n); err == nil {
			return n
		}
	}
	return ""
}

// startDockerd starts dockerd without host networking (no bridge, no
// iptables) and stops it when the test ends. Missing dockerd fails the
// test unless LABD_NO_DOCKERD=1.
func startDockerd(t *testing.T) (*refDockerd, string) {
	t.Helper()
	dockerd := findBinary("/usr/sbin/dockerd", "/usr/bin/dockerd")
	cli := findBinary("/usr/bin/docker", "/usr/local/bin/docker")
	if dockerd == "" || cli == "" {
		if os.Getenv("LABD_NO_DOCKERD") == "1" {
			testenv.Missing(t, "dockerd not installed and LABD_NO_DOCKERD=1")
		}
		t.Fatal("dockerd or docker CLI missing (apt-get install docker.io), or set LABD_NO_DOCKERD=1")
	}
	dir, err := os.MkdirTemp("", "labd-refdockerd-")
	if err != nil {
		t.Fatal(err)
	}
	d := &refDockerd{sock: filepath.Join(dir, "d.sock")}
	logf, _ := os.Create(filepath.Join(dir, "dockerd.log"))
	d.cmd = exec.Command(dockerd, "--host", "unix://"+d.sock, "--data-root", filepath.Join(dir, "root"),
		"--exec-root", filepath.Join(dir, "exec"), "--pidfile", filepath.Join(dir, "d.pid"),
		"--bridge", "none", "--iptables=false", "--ip-masq=false")
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { d.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "dockerd.log"))
			t.Logf("dockerd log tail:\n%s", tail(string(b), 3000))
		}
		os.RemoveAll(dir)
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := d.run(cli, nil, "version"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("reference dockerd did not come up within 60 s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	return d, cli
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func (d *refDockerd) run(cli string, env []string, args ...string) (string, error) {
	cmd := exec.Command(cli, append([]string{"-H", "unix://" + d.sock}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// layerFiles lists the entries of every layer.tar of a docker-save tar,
// keyed by the layer's diffID.
func saveLayerFiles(t *testing.T, saved []byte) map[digest.Digest][]string {
	t.Helper()
	out := map[digest.Digest][]string{}
	tr := tar.NewReader(bytes.NewReader(saved))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(h.Name, "/layer.tar") || h.Typeflag != tar.TypeReg {
			continue
		}
		b, _ := io.ReadAll(tr)
		var names []string
		lr := tar.NewReader(bytes.NewReader(b))
		for {
			lh, err := lr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			names = append(names, strings.TrimSuffix(lh.Name, "/"))
		}
		sort.Strings(names)
		out[digest.FromBytes(b)] = names
	}
}

func TestDifferentialDockerd(t *testing.T) {
	d, cli := startDockerd(t)
	ctx := context.Background()
	s := openStore(t)
	id, err := BootstrapBusybox(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	v := view(t, s, "default")
	work := t.TempDir()

	// labd save -> docker load: same image ID.
	f, _ := os.Create(filepath.Join(work, "busybox.tar"))
	if err := v.Save(ctx, []string{"busybox"}, f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	out, err := d.run(cli, nil, "load", "-i", filepath.Join(work, "busybox.tar"))
	if err != nil || !strings.Contains(out, "Loaded image: busybox:latest") {
		t.Fatalf("docker load: %v\n%s", err, out)
	}
	out, err = d.run(cli, nil, "image", "inspect", "--format", "{{.Id}}", "busybox:latest")
	if err != nil || strings.TrimSpace(out) != id.String() {
		t.Fatalf("dockerd sees busybox as %q (%v), labd made %s", out, err, id)
	}

	// A build in dockerd (RUN makes a layer with whiteouts, hard links,
	// owners), docker save -> labd Load: same ID, diffIDs and files.
	ctxDir := filepath.Join(work, "ctx")
	os.Mkdir(ctxDir, 0o755)
	os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte("FROM busybox\n"+
		"RUN rm /bin/vi && rm -rf /root && mkdir -p /root /srv/www && echo hi > /srv/www/index.html && ln /srv/www/index.html /srv/www/hl && chown 1000:1000 /srv/www/index.html && ln -s /srv/www /www\n"+
		"CMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/srv/www\"]\n"), 0o644)
	out, err = d.run(cli, []string{"DOCKER_BUILDKIT=0"}, "build", "--network", "none", "-t", "web:1", ctxDir)
	if err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	out, err = d.run(cli, nil, "image", "inspect", "--format", "{{.Id}}", "web:1")
	if err != nil {
		t.Fatalf("inspect web:1: %v %s", err, out)
	}
	webID := digest.Digest(strings.TrimSpace(out))
	savedPath := filepath.Join(work, "web.tar")
	if out, err := d.run(cli, nil, "save", "-o", savedPath, "web:1"); err != nil {
		t.Fatalf("docker save: %v\n%s", err, out)
	}
	saved, err := os.ReadFile(savedPath)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	if err := v.Load(ctx, bytes.NewReader(saved), func(l string) { lines = append(lines, l) }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(lines, "") != "Loaded image: web:1\n" {
		t.Errorf("Load output = %q", lines)
	}
	got, err := v.Resolve("web:1")
	if err != nil || got != webID {
		t.Fatalf("labd resolves web:1 to %v (%v), dockerd has %s", got, err, webID)
	}
	c, _ := s.Config(got)
	files := saveLayerFiles(t, saved)
	if len(c.DiffIDs()) != 2 {
		t.Fatalf("diff_ids = %v", c.DiffIDs())
	}
	for _, diffID := range c.DiffIDs() {
		if _, ok := files[diffID]; !ok {
			t.Errorf("dockerd's save has no layer with diffID %s", diffID)
		}
		// The extracted layer, tarred again by labd, is dockerd's tar.
		var buf bytes.Buffer
		d2, _, err := layer.Diff(ctx, s.LayerDir(diffID), &buf)
		if err != nil {
			t.Fatal(err)
		}
		if d2 != diffID {
			t.Errorf("labd re-diff of layer %s gives %s", diffID, d2)
		}
		rc, err := s.OpenLayer(diffID)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()

		if digest.FromBytes(b) != diffID {
			t.Errorf("stored layer tar does not hash to %s", diffID)
		}
	}
	// labd's save of the loaded image is dockerd's save, byte for byte.
	var mine bytes.Buffer
	if err := v.Save(ctx, []string{"web:1"}, &mine); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mine.Bytes(), saved) {
		t.Errorf("labd save of web:1 (%d bytes) differs from dockerd's (%d bytes)", mine.Len(), len(saved))
	}
}
