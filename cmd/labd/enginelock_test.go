package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/labd/labd/sandbox/engine/image"
)

// The test binary doubles as a standalone `labd engine` process for
// TestEngineLockKill: with these set, it runs the engine and exits
// before any test runs.
const (
	childEngineData   = "LABD_TEST_CHILD_ENGINE_DATA"
	childEngineSocket = "LABD_TEST_CHILD_ENGINE_SOCKET"
)

func init() {
	data := os.Getenv(childEngineData)
	if data == "" {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := runEngine(ctx, engineArgs(data, os.Getenv(childEngineSocket)), os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "labd engine:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func engineArgs(data, socket string) []string {
	return []string{"--data", data, "--socket", socket, "--no-runtime", "--registry-addr", "off"}
}

// stagingFiles puts what a running labd has in flight into data's store:
// a blob and a layer being staged, a build's scratch directory. It
// returns their paths.
func stagingFiles(t *testing.T, data string) []string {
	t.Helper()
	eng := filepath.Join(data, "engine")
	f, err := os.CreateTemp(filepath.Join(eng, "tmp"), "blob-")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	paths := []string{f.Name(), filepath.Join(eng, "tmp", "layer-77", "usr"), filepath.Join(eng, "build", "ctx-77")}
	for _, p := range paths[1:] {
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return paths
}

func wantPresent(t *testing.T, what string, paths []string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s: the running labd's %s is gone: %v", what, p, err)
		}
	}
}

// refusedEngine runs a `labd engine` expected to be refused at once; one
// that serves instead (the lock ignored) is stopped after waitTimeout and
// returns nil, failing the caller's check rather than hanging the test.
func refusedEngine(t *testing.T, data, socket string, stderr io.Writer) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	return runEngine(ctx, engineArgs(data, socket), io.Discard, stderr)
}

// A minimal lab for labd test: one step, one script check.
func lockTestContent(t *testing.T) string {
	t.Helper()
	content := t.TempDir()
	lab := filepath.Join(content, "done")
	if err := os.Mkdir(lab, 0o755); err != nil {
		t.Fatal(err)
	}
	md := "---\ntitle: Done\nsummary: S\nduration: 5 min\nlevel: beginner\n---\nIntro.\n\n## Make a file\n\nText.\n\n" +
		"```bash\ntouch done.txt\n```\n\n" +
		"```check\nkind: script\nid: done-file\ntitle: done.txt exists\nrun: |\n  test -f done.txt || { echo \"FAIL: no done.txt\"; exit 1; }\nhint: Run touch done.txt.\n```\n"
	sol := "#!/usr/bin/env bash\nset -euo pipefail\n\n# step: Make a file\ntouch done.txt\n"
	if err := os.WriteFile(filepath.Join(lab, "lab.md"), []byte(md), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(lab, "solution.sh"), []byte(sol), 0o755); err != nil {
		t.Fatal(err)
	}
	return content
}

// labd serve holds its data directory: `labd engine` on it is refused
// before touching anything, while `labd test --data` and `labd images
// ls` read its base images beside it without removing serve's staging
// files.
func TestEngineLockedByServe(t *testing.T) {
	data := t.TempDir()
	if out, err := runImagesCLI(t, "bootstrap", "busybox", "--data", data); err != nil {
		t.Fatalf("labd images bootstrap busybox: %v\n%s", err, out)
	}
	_, logs, stop := bootServe(t, data, "--bootstrap", "none")
	staging := stagingFiles(t, data)

	socket := filepath.Join(t.TempDir(), "engine.sock")
	var errOut bytes.Buffer
	err := refusedEngine(t, data, socket, &errOut)
	want := fmt.Sprintf("the image store %s is in use by pid %d: labd serve: stop it first, or use another --data", filepath.Join(data, "engine"), os.Getpid())
	if err == nil || err.Error() != want || !errors.Is(err, image.ErrLocked) {
		t.Errorf("labd engine beside labd serve = %v\nwant %s", err, want)
	}
	if _, err := os.Stat(socket); err == nil {
		t.Errorf("the refused engine created its socket")
	}
	wantPresent(t, "after labd engine", staging)

	staging = stagingFiles(t, data)
	var out bytes.Buffer
	errOut.Reset()
	if err := runTest(context.Background(), []string{"--data", data, lockTestContent(t)}, &out, &errOut); err != nil {
		t.Errorf("labd test --data beside labd serve: %v\n%s\n%s", err, out.String(), errOut.String())
	}
	t.Logf("labd test --data %s:\n%s%s", data, out.String(), errOut.String())
	if !strings.Contains(errOut.String(), "labd test: 1 base images from "+data) {
		t.Errorf("labd test did not copy busybox from %s:\n%s", data, errOut.String())
	}
	wantPresent(t, "after labd test --data", staging)

	staging = stagingFiles(t, data)
	if ls, err := runImagesCLI(t, "ls", "--data", data); err != nil || !strings.Contains(ls, "busybox:latest") {
		t.Errorf("labd images ls beside labd serve: %v\n%s", err, ls)
	}
	wantPresent(t, "after labd images ls", staging)

	if err := stop(); err != nil {
		t.Errorf("labd serve: %v\n%s", err, logs)
	}
	release, err := image.LockStore(filepath.Join(data, "engine"), "test")
	if err != nil {
		t.Fatalf("store still locked after serve stopped: %v", err)
	}
	release()
}

// Two `labd engine` on one data directory: the second is refused,
// naming the first (another process); once the first is killed with
// SIGKILL the lock is gone with it, and the second runs, then releases
// the lock when it stops.
func TestEngineLockKill(t *testing.T) {
	data := t.TempDir()
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEngineData+"="+data, childEngineSocket+"="+filepath.Join(dir, "first.sock"))
	var childOut syncBuffer
	cmd.Stdout, cmd.Stderr = &childOut, &childOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	// Serving: it holds the lock and has opened the store.
	holder := fmt.Sprintf("pid %d: labd engine\n", cmd.Process.Pid)
	deadline := time.Now().Add(waitTimeout)
	for {
		b, _ := os.ReadFile(filepath.Join(data, "engine", image.LockFile))
		if _, err := os.Stat(filepath.Join(dir, "first.sock")); err == nil && string(b) == holder {
			break
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("the first labd engine ended: %v\n%s", err, childOut.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the first labd engine did not serve within %v:\n%s", waitTimeout, childOut.String())
		}
	}
	staging := stagingFiles(t, data)

	second := filepath.Join(dir, "second.sock")
	err := refusedEngine(t, data, second, io.Discard)
	want := fmt.Sprintf("is in use by pid %d: labd engine: stop it first, or use another --data", cmd.Process.Pid)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("second labd engine = %v, want …%s", err, want)
	}
	if _, err := os.Stat(second); err == nil {
		t.Errorf("the refused engine created its socket")
	}
	wantPresent(t, "after the second labd engine", staging)

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := <-exited; err == nil {
		t.Errorf("the killed engine exited 0")
	}
	exited <- nil // for the cleanup

	// The lock went with the process: the second engine now starts.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runEngine(ctx, engineArgs(data, second), io.Discard, io.Discard) }()
	deadline = time.Now().Add(waitTimeout)
	for {
		if _, err := os.Stat(second); err == nil {
			break
		}
		select {
		case err := <-done:
			cancel()
			t.Fatalf("labd engine after the first was killed: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("labd engine after the first was killed did not serve within %v", waitTimeout)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(data, "engine", image.LockFile)); string(b) != fmt.Sprintf("pid %d: labd engine\n", os.Getpid()) {
		t.Errorf("lock file = %q, want this process", b)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("labd engine: %v", err)
	}
	release, err := image.LockStore(filepath.Join(data, "engine"), "test")
	if err != nil {
		t.Fatalf("store still locked after labd engine stopped: %v", err)
	}
	release()
}
