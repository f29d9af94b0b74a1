package enginebox_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/labd/labd/sandbox"
	"github.com/labd/labd/sandbox/engine"
	"github.com/labd/labd/sandbox/enginebox"
)

// TestWarmShellSandbox: a warm sandbox (user namespace, network, engine
// and the shell's container made ahead, its command held) shows nothing
// until it is given out, then runs the learner's login shell with the
// learner's environment, is a whole sandbox (docker build and run -p), and
// the pool's and the learner's sandboxes leave nothing behind.
func TestWarmShellSandbox(t *testing.T) {
	data := sandboxImageData(t)
	ctx := context.Background()
	shared, err := engine.OpenShared(data, engine.SharedOptions{UserNS: &engine.UserNSOptions{}})
	if err != nil {
		t.Fatal(err)
	}
	defer shared.Close()
	root := t.TempDir()
	abs, _ := filepath.Abs(data)
	dirs := []string{data, root, engine.RuntimeRoot(abs, true)}
	before := countLeaks(t, dirs, nil)
	mgr := sandbox.NewManager(&enginebox.Provider{Shared: shared}, sandbox.ManagerOptions{DataDir: root, IdleTimeout: -1, Warm: 1, Logger: slog.New(slog.DiscardHandler)})
	closed := false
	defer func() {
		if !closed {
			mgr.Close(ctx)
		}
	}()
	for deadline := time.Now().Add(wait); mgr.Warm() != 1; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no warm sandbox made")
		}
	}
	warmDirs, _ := filepath.Glob(filepath.Join(root, "sandboxes", "sb-w*"))
	if len(warmDirs) != 1 {
		t.Fatalf("warm directories %v, want one", warmDirs)
	}
	warm := filepath.Base(warmDirs[0])

	sb, err := mgr.GetOrCreateWith(ctx, "learner", "ada", sandbox.CreateOptions{Env: []string{"LABD_USER=ada-1234", "QUOTED=it's $HOME"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := "lab-" + warm[:12]; sb.Hostname() != want {
		t.Errorf("hostname %q, want the warm sandbox's %q", sb.Hostname(), want)
	}
	scr := watch(sb.Terminal())
	scr.waitFor(t, regexp.MustCompile(`root@`+regexp.QuoteMeta(sb.Hostname())+`:~# $`))
	sb.Terminal().Write([]byte("echo \"u=$LABD_USER q=$QUOTED\"; echo x > /etc/labd/env; echo w=$?\n"))
	scr.waitFor(t, regexp.MustCompile(`u=ada-1234 q=it's \$HOME\r\n(.|\r|\n)*w=1\r\n`))
	if out, code := shellExec(t, sb, `echo "$LABD_USER"; cd /root && printf 'FROM busybox\nCMD ["echo","built-warm"]\n' > Dockerfile && docker build -q -t warm . >/dev/null && docker run --rm warm`); code != 0 || out != "ada-1234\nbuilt-warm\n" {
		t.Errorf("the warm sandbox's engine: exit %d, %q", code, out)
	}
	// The learner's files are under their id as well.
	if _, err := os.Stat(filepath.Join(mgr.WorkspaceDir("learner"), "Dockerfile")); err != nil {
		t.Errorf("the learner's Dockerfile by its id: %v", err)
	}
	out, _ := shellExec(t, sb, "docker ps -aq --no-trunc")
	names := append([]string{"shell-" + warm, warm}, strings.Fields(out)...)
	if err := mgr.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
	closed = true
	var after leakCount
	for deadline := time.Now().Add(wait); ; time.Sleep(100 * time.Millisecond) {
		if after = countLeaks(t, dirs, names); after == before || time.Now().After(deadline) {
			break
		}
	}
	if after != before {
		t.Errorf("leaks: before %+v, after %+v", before, after)
	}
	left, _ := filepath.Glob(filepath.Join(root, "sandboxes", "sb-w*"))
	if len(left) != 1 || left[0] != warmDirs[0] {
		t.Errorf("after Close: %v, want only the learner's (the pool's refill removed)", left)
	}
}

// BenchmarkWarmSandboxToPrompt times what a learner waits for with a warm
// sandbox: Adopt (the learner's environment written, the held shell
// released) until the first prompt; Prepare, made ahead in labd, is not
// timed. BenchmarkShellSandboxToPrompt is the same without the pool.
func BenchmarkWarmSandboxToPrompt(b *testing.B) {
	data := sandboxImageData(b)
	ctx := context.Background()
	shared, err := engine.OpenShared(data, engine.SharedOptions{UserNS: &engine.UserNSOptions{}})
	if err != nil {
		b.Fatal(err)
	}
	defer shared.Close()
	p := &enginebox.Provider{Shared: shared}
	root := b.TempDir()
	var prepTotal time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		ws := filepath.Join(root, fmt.Sprint(i), "workspace")
		os.MkdirAll(ws, 0o700)
		t0 := time.Now()
		w, err := p.Prepare(ctx, sandbox.Spec{ID: fmt.Sprintf("sb-wbench%d", i), Hostname: "lab-bench", Workspace: ws})
		if err != nil {
			b.Fatal(err)
		}
		prepTotal += time.Since(t0)
		b.StartTimer()
		sb, err := w.Adopt(ctx, sandbox.Spec{Env: []string{"LABD_USER=bench"}})
		if err != nil {
			b.Fatal(err)
		}
		buf := make([]byte, 4096)
		var seen []byte
		for !bytes.Contains(seen, []byte("root@lab-bench:~# ")) {
			n, err := sb.Terminal().Read(buf)
			if err != nil {
				b.Fatalf("terminal: %v after %q", err, seen)
			}
			seen = append(seen, buf[:n]...)
		}
		b.StopTimer()
		go io.Copy(io.Discard, sb.Terminal())
		sb.Destroy(ctx)
		b.StartTimer()
	}
	b.ReportMetric(float64(prepTotal.Milliseconds())/float64(b.N), "prepare-ms/op")
}

// TestResetSandbox: "Reset my sandbox" leaves a fresh engine (no images
// of the learner's, no containers, no volumes) over the same files, or
// over none; a warm-born sandbox is found again by its id after a reset
// that kept the files, and a reset that did not gives a new warm one.
func TestResetSandbox(t *testing.T) {
	data := sandboxImageData(t)
	ctx := context.Background()
	shared, err := engine.OpenShared(data, engine.SharedOptions{UserNS: &engine.UserNSOptions{}})
	if err != nil {
		t.Fatal(err)
	}
	defer shared.Close()
	root := t.TempDir()
	mgr := sandbox.NewManager(&enginebox.Provider{Shared: shared}, sandbox.ManagerOptions{DataDir: root, IdleTimeout: -1, Warm: 1, Logger: slog.New(slog.DiscardHandler)})
	defer mgr.Close(ctx)
	waitWarmEngine(t, mgr)
	sb, err := mgr.GetOrCreate(ctx, "learner", "ada")
	if err != nil {
		t.Fatal(err)
	}
	first := mgr.Instance("learner")
	setup := `cd /root && echo kept > mine.txt && printf 'FROM busybox\nCMD ["true"]\n' > Dockerfile && docker build -q -t mine . >/dev/null &&
docker volume create vol >/dev/null && docker create --name c1 -v vol:/v mine >/dev/null && echo set-up`
	if out, code := shellExec(t, sb, setup); code != 0 || !strings.Contains(out, "set-up") {
		t.Fatalf("setup: exit %d, %q", code, out)
	}
	state := `docker images --format '{{.Repository}}' | sort | tr '\n' ' '; echo; docker ps -aq | wc -l; docker volume ls -q | wc -l; cat /root/mine.txt 2>&1`
	if err := mgr.Reset(ctx, "learner", true); err != nil {
		t.Fatal(err)
	}
	sb, err = mgr.GetOrCreate(ctx, "learner", "ada")
	if err != nil {
		t.Fatal(err)
	}
	if mgr.Instance("learner") != first {
		t.Errorf("after a reset keeping files: instance %s, want %s", mgr.Instance("learner"), first)
	}
	out, _ := shellExec(t, sb, state)
	if strings.Contains(out, "mine ") || !strings.Contains(out, "\n0\n0\nkept") {
		t.Errorf("after a reset keeping files:\n%s\nwant no image of the learner's, no container, no volume, the file kept", out)
	}
	if err := mgr.Reset(ctx, "learner", false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "sandboxes", first)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the reset sandbox's directory is still there: %v", err)
	}
	waitWarmEngine(t, mgr)
	sb, err = mgr.GetOrCreate(ctx, "learner", "ada")
	if err != nil {
		t.Fatal(err)
	}
	if in := mgr.Instance("learner"); in == first || !strings.HasPrefix(in, "sb-w") {
		t.Errorf("after a reset deleting files: instance %s, want a new warm one", in)
	}
	out, _ = shellExec(t, sb, state)
	if strings.Contains(out, "mine ") || !strings.Contains(out, "\n0\n0\ncat: /root/mine.txt: No such file") {
		t.Errorf("after a reset deleting files:\n%s", out)
	}
}

func waitWarmEngine(t *testing.T, mgr *sandbox.Manager) {
	t.Helper()
	for deadline := time.Now().Add(wait); mgr.Warm() < 1; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no warm sandbox made")
		}
	}
}
