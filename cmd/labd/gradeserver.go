package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// gradeSocketName is labd serve's instructor socket in the data directory:
// `labd grade` asks the running server to grade a live sandbox through it
// (web.GradePath), since only the server can run script and http checks
// inside the sandbox.
const gradeSocketName = "grade.sock"

// maxUnixPath is the kernel's limit for a socket path (sun_path less NUL).
const maxUnixPath = 107

// startGradeServer serves h on DATA/grade.sock, mode 0600, to the same user
// as labd serve (or root) only. A failure to start is logged, not fatal:
// the web UI works without it and labd grade then grades alone.
func startGradeServer(data string, h http.Handler, log *slog.Logger) (stop func()) {
	path := filepath.Join(data, gradeSocketName)
	ln, err := listenGradeSocket(path)
	if err != nil {
		log.Warn("labd grade cannot reach this server (script and http checks need it)", "socket", path, "err", err)
		return func() {}
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	go srv.Serve(ln)
	log.Info("grading socket for labd grade", "socket", path)
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			srv.Close()
		}
		os.Remove(path)
	}
}

func listenGradeSocket(path string) (net.Listener, error) {
	if len(path) > maxUnixPath {
		return nil, fmt.Errorf("socket path is longer than %d bytes: use a shorter --data", maxUnixPath)
	}
	// A socket left by a killed labd serve answers nobody; one that
	// answers belongs to another labd serve on the same data directory.
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, errors.New("another labd serve already serves this data directory")
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	// Bound under a temporary name, made 0600, then renamed into place, so
	// the socket is never reachable with looser permissions (a process-wide
	// umask change would race with other goroutines creating files).
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	os.Remove(tmp)
	ln, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, err
	}
	ul := ln.(*net.UnixListener)
	ul.SetUnlinkOnClose(false) // the name is path after the rename
	if err := os.Chmod(tmp, 0o600); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, err
	}
	return peerListener{ul}, nil
}

// peerListener accepts only peers running as labd's own user or root
// (SO_PEERCRED), in case the socket's directory is opened up.
type peerListener struct{ *net.UnixListener }

func (l peerListener) Accept() (net.Conn, error) {
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			return nil, err
		}
		if peerAllowed(c) {
			return c, nil
		}
		c.Close()
	}
}

func peerAllowed(c *net.UnixConn) bool {
	raw, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) { cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) }); err != nil || cerr != nil {
		return false
	}
	return cred.Uid == 0 || int(cred.Uid) == os.Getuid()
}
