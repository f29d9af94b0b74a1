package api

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// UnixServer serves a handler on a unix socket, as dockerd serves
// /var/run/docker.sock.
type UnixServer struct {
	path string
	srv  *http.Server
	done chan error
}

// ServeUnix listens on path and serves h until Close. A stale socket left by
// a killed process is replaced; a socket another live server answers on is
// refused. The socket is made 0660: only root and the socket's group may
// talk to the engine.
func ServeUnix(path string, h http.Handler) (*UnixServer, error) {
	ln, err := listenUnix(path)
	if err != nil {
		return nil, err
	}
	s := &UnixServer{
		path: path,
		srv:  &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second},
		done: make(chan error, 1),
	}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s, nil
}

// Path is the socket's path.
func (s *UnixServer) Path() string { return s.path }

// Done delivers the error that stopped serving (http.ErrServerClosed after
// Close).
func (s *UnixServer) Done() <-chan error { return s.done }

// Close stops accepting, waits until ctx for requests in flight (a build, a
// held /events stream) and then cuts them, and removes the socket.
func (s *UnixServer) Close(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		err = s.srv.Close()
	}
	if rerr := os.Remove(s.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = errors.Join(err, rerr)
	}
	return err
}

func listenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("socket directory: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s is in use by another engine", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, fmt.Errorf("socket mode: %w", err)
	}
	return ln, nil
}
