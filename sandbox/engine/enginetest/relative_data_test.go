package enginetest

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRelativeDataDir runs `labd engine --data ./data` as the README's
// `make run` does (a relative path): a container on the bridge network
// starts, which needs the engine to hand the runtime absolute paths (its
// init opens the container's network namespace from another directory).
func TestRelativeDataDir(t *testing.T) {
	bin, err := LabdBinary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bootstrap := exec.Command(bin, "images", "bootstrap", "busybox", "--data", "./data")
	bootstrap.Dir = dir
	if out, err := bootstrap.CombinedOutput(); err != nil {
		t.Fatalf("bootstrap with a relative --data: %v\n%s", err, out)
	}
	e := &Engine{Name: "labd", Socket: filepath.Join(dir, "engine.sock")}
	cmd := exec.Command(bin, "engine", "--socket", "engine.sock", "--data", "./data", "--registry-addr", "off")
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}()
	if err := waitSocket(e.Socket, done, 60*time.Second); err != nil {
		t.Fatalf("engine did not start: %v\n%s", err, logs.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r := e.Docker(ctx, DockerCLI20, "", nil, "run", "--rm", "busybox", "sh", "-c", "ip -o -4 addr show eth0 >/dev/null && echo networked")
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != "networked" {
		t.Fatalf("docker run on an engine with a relative --data: exit %d\nstdout %q\nstderr %q", r.Code, r.Stdout, r.Stderr)
	}
}
