package userns

// #cgo CFLAGS: -Wall
import "C"

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	goruntime "runtime"
	"strings"
	"syscall"
)

// helperEnv selects the helper's mode in helper.c's constructor.
const helperEnv = "_LABD_USERNS_HELPER"

// helper is a running namespace helper: a re-executed copy of this binary
// whose namespaces are in place and which waits for release.
type helper struct {
	cmd  *exec.Cmd
	hold *os.File // write end of its stdin: closing it lets it exit
	out  *os.File
}

// startHelper runs the helper in mode and waits until its namespaces are
// set up. attr adds clone flags and id maps (mode "hold"); extra is its
// fd 3 (mode "netns": the user namespace to join).
func startHelper(ctx context.Context, mode string, attr *syscall.SysProcAttr, extra *os.File) (_ *helper, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	if attr == nil {
		attr = &syscall.SysProcAttr{}
	}
	// The helper must not outlive labd. Pdeathsig follows the thread that
	// forked, so that thread stays ours until the helper has been reaped.
	attr.Pdeathsig = syscall.SIGKILL
	cmd := &exec.Cmd{
		Path:        "/proc/self/exe",
		Args:        []string{"labd-userns-helper", mode},
		Env:         []string{helperEnv + "=" + mode},
		Stdin:       inR,
		Stdout:      outW,
		Stderr:      nil,
		SysProcAttr: attr,
	}
	if extra != nil {
		cmd.ExtraFiles = []*os.File{extra}
	}
	goruntime.LockOSThread()
	err = cmd.Start()
	// The helper has its own copies; ours would keep its answer from ever
	// reaching EOF.
	inR.Close()
	outW.Close()
	if err != nil {
		goruntime.UnlockOSThread()
		inW.Close()
		outR.Close()
		return nil, fmt.Errorf("start namespace helper: %w", err)
	}
	h := &helper{cmd: cmd, hold: inW, out: outR}
	defer func() {
		if err != nil {
			h.kill()
		}
	}()
	// The answer is one short line; a helper that never answers is killed
	// when ctx ends.
	type answer struct {
		line string
		err  error
	}
	ch := make(chan answer, 1)
	go func() {
		line, err := bufio.NewReader(outR).ReadString('\n')
		ch <- answer{line, err}
	}()
	var a answer
	select {
	case a = <-ch:
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-ch
		return h, ctx.Err()
	}
	line := strings.TrimSpace(a.line)
	switch {
	case line == "ok":
		return h, nil
	case strings.HasPrefix(line, "error: "):
		return h, errors.New(strings.TrimPrefix(line, "error: "))
	case errors.Is(a.err, io.EOF):
		return h, errors.New("namespace helper exited without answering (is the helper linked into this binary?)")
	default:
		return h, fmt.Errorf("namespace helper: unexpected answer %q (%v)", line, a.err)
	}
}

// nsPath is the helper's namespace file of the given kind ("user", "net").
func (h *helper) nsPath(kind string) string {
	return fmt.Sprintf("/proc/%d/ns/%s", h.cmd.Process.Pid, kind)
}

// release lets the helper exit and reaps it.
func (h *helper) release() error {
	h.hold.Close()
	err := h.cmd.Wait()
	h.out.Close()
	goruntime.UnlockOSThread()
	if err != nil {
		return fmt.Errorf("namespace helper: %w", err)
	}
	return nil
}

// kill ends a helper that failed.
func (h *helper) kill() {
	_ = h.cmd.Process.Kill()
	h.hold.Close()
	_ = h.cmd.Wait()
	h.out.Close()
	goruntime.UnlockOSThread()
}
