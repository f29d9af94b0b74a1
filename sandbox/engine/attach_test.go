package engine_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/labd/labd/sandbox/engine"
	"github.com/labd/labd/sandbox/engine/api"
	"github.com/labd/labd/sandbox/engine/image"
)

// lockedBuffer is an io.Writer safe for the engine's copy goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// wait bounds every wait on a container; generous for a loaded machine.
const wait = 60 * time.Second

// busyboxEngine is an engine (no network) over a fresh data directory
// holding busybox.
func busyboxEngine(t *testing.T) *engine.Engine {
	t.Helper()
	if os.Getuid() != 0 {
		t.Fatal("needs root (containers); CI runs as root")
	}
	shared, err := engine.OpenShared(t.TempDir(), engine.SharedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := image.BootstrapBusybox(context.Background(), shared.Store); err != nil {
		t.Fatal(err)
	}
	e, err := shared.Engine("attach")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close(context.Background()) })
	return e
}

// slowAttach is an attach whose hijack (writing the response header the
// CLI waits for before it starts the container) is held until release is
// closed, or fails then with failErr.
type slowAttach struct {
	hijacking, release chan struct{}
	stdout, stderr     lockedBuffer
	done               chan error
}

func startSlowAttach(e *engine.Engine, id string, cfg api.AttachConfig, failErr error) *slowAttach {
	a := &slowAttach{hijacking: make(chan struct{}), release: make(chan struct{}), done: make(chan error, 1)}
	cfg.Hijack = func(tty bool) (*api.Streams, error) {
		close(a.hijacking)
		<-a.release
		if failErr != nil {
			return nil, failErr
		}
		st := &api.Streams{Stdout: &a.stdout, Stderr: &a.stderr, Close: func() error { return nil }}
		if cfg.Stdin {
			st.Stdin = io.NopCloser(strings.NewReader("go\n"))
		}
		if tty {
			st.Stderr = &a.stdout
		}
		return st, nil
	}
	go func() { a.done <- e.ContainerAttach(context.Background(), id, cfg) }()
	return a
}

func (a *slowAttach) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-a.done:
		return err
	case <-time.After(wait):
		t.Fatalf("attach still open %v after the container exited; got stdout %q, stderr %q", wait, a.stdout.String(), a.stderr.String())
		return nil
	}
}

func waitResult(t *testing.T, ch <-chan container.WaitResponse) int64 {
	t.Helper()
	select {
	case r, ok := <-ch:
		if !ok {
			t.Fatal("wait ended without a result")
		}
		return r.StatusCode
	case <-time.After(wait):
		t.Fatalf("container did not exit within %v", wait)
		return 0
	}
}

// TestAttachOutputBeforeHijackCompletes forces the interleaving of a loaded
// machine: the CLI's `docker run` (and `docker start -a`) attaches, and
// starts the container once it has the hijack's response header; here the
// whole run, exit and --rm removal included, happens before the attach
// handler gets past the hijack. Every byte must still reach the client and
// the attach must end (before the fix the output was lost and the attach
// waited forever).
func TestAttachOutputBeforeHijackCompletes(t *testing.T) {
	e := busyboxEngine(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name                 string
		tty, rm, startBefore bool
		cmd                  []string
		stdout, stderr       string
	}{
		{name: "run", cmd: []string{"sh", "-c", "echo out; echo err >&2"}, stdout: "out\n", stderr: "err\n"},
		{name: "run --rm", rm: true, cmd: []string{"sh", "-c", "echo out; echo err >&2"}, stdout: "out\n", stderr: "err\n"},
		{name: "run -t", tty: true, cmd: []string{"sh", "-c", "echo out; echo err >&2"}, stdout: "out\r\nerr\r\n"},
		{name: "run -t --rm", tty: true, rm: true, cmd: []string{"sh", "-c", "printf 'no newline'"}, stdout: "no newline"},
		{name: "start -a", startBefore: true, cmd: []string{"cat", "/etc/hostname", "/nonexistent"}, stdout: "HOST\n", stderr: "cat: can't open '/nonexistent': No such file or directory\n"},
		// More than the engine queues for a client not yet connected: the
		// container's output waits for the client.
		{name: "big output", rm: true, cmd: []string{"head", "-c", "3000000", "/dev/zero"}, stdout: strings.Repeat("\x00", 3000000)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := e.ContainerCreate(ctx, "", &container.Config{Image: "busybox", Cmd: tc.cmd, Tty: tc.tty, AttachStdout: true, AttachStderr: true},
				&container.HostConfig{AutoRemove: tc.rm}, nil)
			if err != nil {
				t.Fatal(err)
			}
			id := resp.ID
			if !tc.rm {
				defer e.ContainerRemove(ctx, id, true, true)
			}
			if tc.startBefore {
				// A previous run's output is in the log, not in the attach.
				ch, err := e.ContainerWait(ctx, id, container.WaitConditionNextExit)
				if err != nil {
					t.Fatal(err)
				}
				if err := e.ContainerStart(ctx, id); err != nil {
					t.Fatal(err)
				}
				waitResult(t, ch)
			}
			a := startSlowAttach(e, id, api.AttachConfig{Stdout: true, Stderr: true, Stream: true}, nil)
			<-a.hijacking
			cond := container.WaitConditionNextExit
			if tc.rm {
				cond = container.WaitConditionRemoved
			}
			ch, err := e.ContainerWait(ctx, id, cond)
			if err != nil {
				t.Fatal(err)
			}
			if err := e.ContainerStart(ctx, id); err != nil {
				t.Fatal(err)
			}
			if tc.name != "big output" {
				// The run is over (and removed, with --rm) before the
				// client is connected.
				waitResult(t, ch)
				close(a.release)
			} else {
				// It cannot be: its output waits for the client.
				close(a.release)
				waitResult(t, ch)
			}
			if err := a.wait(t); err != nil {
				t.Fatalf("attach: %v", err)
			}
			want := strings.ReplaceAll(tc.stdout, "HOST", id[:12])
			if got := a.stdout.String(); got != want {
				t.Errorf("stdout = %.200q (%d bytes), want %.200q (%d bytes)", got, len(got), want, len(want))
			}
			if got := a.stderr.String(); got != tc.stderr {
				t.Errorf("stderr = %q, want %q", got, tc.stderr)
			}
		})
	}
}

// TestAttachHijackFails: a client that joined but whose connection could
// not be taken over must not hold up the container's output.
func TestAttachHijackFails(t *testing.T) {
	e := busyboxEngine(t)
	ctx := context.Background()
	resp, err := e.ContainerCreate(ctx, "", &container.Config{Image: "busybox", Cmd: []string{"head", "-c", "3000000", "/dev/zero"}},
		&container.HostConfig{AutoRemove: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	hijackErr := errors.New("connection cannot be hijacked")
	a := startSlowAttach(e, resp.ID, api.AttachConfig{Stdout: true, Stderr: true, Stream: true}, hijackErr)
	<-a.hijacking
	ch, err := e.ContainerWait(ctx, resp.ID, container.WaitConditionRemoved)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.ContainerStart(ctx, resp.ID); err != nil {
		t.Fatal(err)
	}
	close(a.release)
	if err := a.wait(t); !errors.Is(err, hijackErr) {
		t.Fatalf("attach returned %v, want %v", err, hijackErr)
	}
	if code := waitResult(t, ch); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
}

// TestAttachLogsAndStream: attach with logs=1&stream=1 to a running
// container shows each line once: the log up to the attach, then the live
// output, an unfinished line included.
func TestAttachLogsAndStream(t *testing.T) {
	e := busyboxEngine(t)
	ctx := context.Background()
	// The container prints a line and half of another, then waits for the
	// attached client's input before it finishes.
	resp, err := e.ContainerCreate(ctx, "", &container.Config{Image: "busybox", OpenStdin: true,
		Cmd: []string{"sh", "-c", "echo first; printf half; read x; echo line; echo last"}}, &container.HostConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	id := resp.ID
	defer e.ContainerRemove(ctx, id, true, true)
	ch, err := e.ContainerWait(ctx, id, container.WaitConditionNextExit)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.ContainerStart(ctx, id); err != nil {
		t.Fatal(err)
	}
	// Wait for "first" in the log (the half line is not in it yet).
	deadline := time.Now().Add(wait)
	for {
		var logs lockedBuffer
		cfg := api.LogsConfig{Start: func(bool) (io.Writer, io.Writer) { return &logs, &logs }}
		cfg.ShowStdout = true
		if err := e.ContainerLogs(ctx, id, cfg); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(logs.String(), "first") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no output within %v", wait)
		}
		time.Sleep(20 * time.Millisecond)
	}
	a := startSlowAttach(e, id, api.AttachConfig{Stdin: true, Stdout: true, Stderr: true, Stream: true, Logs: true}, nil)
	<-a.hijacking
	close(a.release)
	waitResult(t, ch)
	if err := a.wait(t); err != nil {
		t.Fatal(err)
	}
	if got, want := a.stdout.String(), "first\nhalfline\nlast\n"; got != want {
		t.Fatalf("logs+stream = %q, want %q", got, want)
	}
}

// TestDockerRunOutputUnderLoad runs the real CLIs' `docker run` (with and
// without --rm and -t) and `docker start -a` against the engine while every
// core is kept busy; each must print its container's output.
func TestDockerRunOutputUnderLoad(t *testing.T) {
	clis := map[string]string{"20.10": "/usr/bin/docker", "28": "/usr/local/bin/docker"}
	for v, p := range clis {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("docker CLI %s missing at %s (deploy/deps.sh test installs it): %v", v, p, err)
		}
	}
	e := busyboxEngine(t)
	sock := filepath.Join(t.TempDir(), "docker.sock")
	srv, err := api.ServeUnix(sock, api.New(e, api.Options{Version: engine.Version, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close(context.Background())
	env := append(os.Environ(), "DOCKER_HOST=unix://"+sock, "DOCKER_CONFIG="+t.TempDir())
	docker := func(cli string, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		cmd := exec.CommandContext(ctx, cli, args...)
		cmd.Env = env
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return string(out), fmt.Errorf("docker %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return string(out), nil
	}

	stop := make(chan struct{})
	var spinning sync.WaitGroup
	var spins atomic.Int64
	for range goruntime.GOMAXPROCS(0) {
		spinning.Add(1)
		go func() {
			defer spinning.Done()
			for {
				select {
				case <-stop:
					return
				default:
					spins.Add(1)
				}
			}
		}()
	}
	defer func() { close(stop); spinning.Wait() }()

	const runs = 5
	for _, v := range []string{"20.10", "28"} {
		cli := clis[v]
		for _, tc := range []struct {
			name string
			args []string
			want string
		}{
			{"run --rm", []string{"run", "--rm", "busybox", "echo", "hi"}, "hi\n"},
			{"run", []string{"run", "busybox", "cat", "/etc/hostname"}, "HOST\n"},
			{"run -t --rm", []string{"run", "-t", "--rm", "busybox", "echo", "hi"}, "hi\r\n"},
			{"start -a", nil, "hi\n"},
		} {
			t.Run(v+"/"+tc.name, func(t *testing.T) {
				for i := range runs {
					args := tc.args
					var id string
					if args == nil {
						out, err := docker(cli, "create", "busybox", "echo", "hi")
						if err != nil {
							t.Fatal(err)
						}
						id = strings.TrimSpace(out)
						args = []string{"start", "-a", id}
					} else if tc.name == "run" {
						args = append([]string{"run", "--cidfile", filepath.Join(t.TempDir(), "cid")}, args[1:]...)
					}
					out, err := docker(cli, args...)
					if err != nil {
						t.Fatalf("run %d: %v", i, err)
					}
					want := tc.want
					if tc.name == "run" {
						cid, err := os.ReadFile(args[2])
						if err != nil {
							t.Fatal(err)
						}
						id = string(cid)
						want = strings.ReplaceAll(want, "HOST", id[:12])
					}
					if out != want {
						t.Fatalf("run %d of docker %s printed %q, want %q", i, strings.Join(args, " "), out, want)
					}
					if id != "" {
						if _, err := docker(cli, "rm", id); err != nil {
							t.Fatal(err)
						}
					}
				}
			})
		}
	}
	if spins.Load() == 0 {
		t.Fatal("the load goroutines never ran")
	}
}
