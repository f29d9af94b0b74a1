package api

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"

	"github.com/docker/docker/api/types/versions"
	"github.com/docker/docker/pkg/stdcopy"
)

// hijack takes over the connection of an attach or exec start the way
// dockerd does: "101 UPGRADED" when the client asked for an upgrade (both
// CLIs and the SDK do, and fail without it), else a plain 200, then raw
// bytes (TTY) or 8-byte framed stdout/stderr.
func hijack(ctx context.Context, w http.ResponseWriter, r *http.Request, tty, stdin, stdout, stderr bool) (*Streams, error) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		return nil, errors.New("connection cannot be hijacked")
	}
	conn, buf, err := hj.Hijack()
	if err != nil {
		return nil, err
	}
	ct := "application/vnd.docker.raw-stream"
	if !tty && versions.GreaterThanOrEqualTo(apiVersion(ctx), "1.42") {
		ct = "application/vnd.docker.multiplexed-stream"
	}
	head := "HTTP/1.1 200 OK\r\nContent-Type: " + ct + "\r\n\r\n"
	if r.Header.Get("Upgrade") != "" {
		head = "HTTP/1.1 101 UPGRADED\r\nContent-Type: " + ct + "\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
	}
	if _, err := conn.Write([]byte(head)); err != nil {
		conn.Close()
		return nil, err
	}
	hc := &hijacked{conn: conn, r: buf.Reader}
	s := &Streams{Close: hc.Close}
	if stdin {
		s.Stdin = io.NopCloser(hc)
	}
	var out io.Writer = hc
	if tty {
		if stdout {
			s.Stdout = out
		}
		if stderr {
			s.Stderr = out
		}
		return s, nil
	}
	if stdout {
		s.Stdout = stdcopy.NewStdWriter(out, stdcopy.Stdout)
	}
	if stderr {
		s.Stderr = stdcopy.NewStdWriter(out, stdcopy.Stderr)
	}
	return s, nil
}

// hijacked is the taken-over connection: reads go through the server's
// buffered reader (it may hold bytes the client sent right after its
// request), writes are serialised.
type hijacked struct {
	conn net.Conn
	r    *bufio.Reader
	mu   sync.Mutex
	once sync.Once
}

func (h *hijacked) Read(p []byte) (int, error) { return h.r.Read(p) }

func (h *hijacked) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.conn.Write(p)
}

func (h *hijacked) Close() error {
	var err error
	h.once.Do(func() { err = h.conn.Close() })
	return err
}
