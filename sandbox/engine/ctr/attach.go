package ctr

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/docker/docker/api/types/events"
	"github.com/labd/labd/sandbox/engine/api"
	"github.com/moby/term"
)

// attachHub is a container's attached clients; it lives as long as the
// container, so a client attached before start (docker run) sees the
// first byte.
//
// A client joins the hub before its connection is hijacked: the CLI starts
// the container as soon as it has read the hijack's response header, so a
// client that joined after writing it could miss the first output, or the
// whole run of a short command (`docker run --rm busybox echo hi` printing
// nothing), and then wait for an exit that had already happened. Until the
// client is connected its output is queued.
type attachHub struct {
	mu      sync.Mutex
	clients map[*attachClient]struct{}
}

// maxPending bounds what is queued for a client not yet connected; beyond
// it the container's output waits for the client, as it waits for a slow
// connected one.
const maxPending = 1 << 20

type attachClient struct {
	done chan struct{}
	once sync.Once

	mu             sync.Mutex
	stdout, stderr io.Writer     // set by connect
	ready          chan struct{} // closed by connect or abandon
	connected      bool
	failed         bool // abandoned, or a write to the client failed
	pending        []pendingOut
	pendingSize    int
}

type pendingOut struct {
	stderr bool
	p      []byte
}

func newAttachClient() *attachClient {
	return &attachClient{done: make(chan struct{}), ready: make(chan struct{})}
}

func (a *attachClient) end() { a.once.Do(func() { close(a.done) }) }

// connect sends what was queued, then lets output go straight to stdout and
// stderr (either may be nil: that stream is not wanted).
func (a *attachClient) connect(stdout, stderr io.Writer) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stdout, a.stderr = stdout, stderr
	for _, q := range a.pending {
		if err := a.writeLocked(q.stderr, q.p); err != nil {
			a.failed = true
			a.end()
			break
		}
	}
	a.pending, a.pendingSize = nil, 0
	a.connected = true
	close(a.ready)
}

// abandon drops a client whose connection could not be taken over.
func (a *attachClient) abandon() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.connected && !a.failed {
		a.failed = true
		a.pending = nil
		close(a.ready)
	}
	a.end()
}

func (a *attachClient) writeLocked(stderr bool, p []byte) error {
	w := a.stdout
	if stderr {
		w = a.stderr
	}
	if w == nil {
		return nil
	}
	_, err := w.Write(p)
	return err
}

// write sends p to the client, or queues it while the client is not yet
// connected. An error means the client is gone.
func (a *attachClient) write(stderr bool, p []byte) error {
	a.mu.Lock()
	if !a.connected && !a.failed && a.pendingSize+len(p) > maxPending {
		a.mu.Unlock()
		<-a.ready
		a.mu.Lock()
	}
	defer a.mu.Unlock()
	switch {
	case a.failed:
		return io.ErrClosedPipe
	case !a.connected:
		a.pending = append(a.pending, pendingOut{stderr: stderr, p: bytes.Clone(p)})
		a.pendingSize += len(p)
		return nil
	}
	if err := a.writeLocked(stderr, p); err != nil {
		a.failed = true
		return err
	}
	return nil
}

func (h *attachHub) add(a *attachClient) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.addLocked(a)
}

func (h *attachHub) addLocked(a *attachClient) {
	if h.clients == nil {
		h.clients = map[*attachClient]struct{}{}
	}
	h.clients[a] = struct{}{}
}

// addAfterLog adds a to the hub of a running container and returns the
// log as it holds the output a did not get: replaying it, then a's own
// output, shows every byte once. The start of an
// unfinished line went to the clients before a joined but is not in the
// file yet; it is queued for a.
func (h *attachHub) addAfterLog(a *attachClient, o *output) *logSnapshot {
	h.mu.Lock()
	defer h.mu.Unlock()
	o.mu.Lock()
	snap := snapshotLog(o.log.path, o.log.size)
	if !o.closed {
		for _, s := range []string{"stdout", "stderr"} {
			if p := o.partial[s]; len(p) > 0 {
				a.pending = append(a.pending, pendingOut{stderr: s == "stderr", p: bytes.Clone(p)})
				a.pendingSize += len(p)
			}
		}
	}
	o.mu.Unlock()
	h.addLocked(a)
	return snap
}

func (h *attachHub) remove(a *attachClient) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.clients, a)
}

func (h *attachHub) writeLocked(stream string, p []byte) {
	for a := range h.clients {
		if err := a.write(stream == "stderr", p); err != nil {
			delete(h.clients, a)
			a.end()
		}
	}
}

// endAll ends every attachment: the container has exited or is removed.
func (h *attachHub) endAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for a := range h.clients {
		a.end()
	}
	h.clients = nil
}

// Attach joins a client to c's runs (docker attach, docker run): its
// output (with Logs, what the log holds first) and, with OpenStdin, its
// input, until the run ends or the client detaches. ref is how the client
// named c.
func (s *Store) Attach(ctx context.Context, c *Container, ref string, cfg api.AttachConfig) error {
	keys := []byte{16, 17} // ctrl-p,ctrl-q
	if cfg.DetachKeys != "" {
		k, err := term.ToBytes(cfg.DetachKeys)
		if err != nil {
			return api.InvalidParameterError(fmt.Errorf("Invalid detach keys (%s) provided", cfg.DetachKeys))
		}
		keys = k
	}
	// Join the hub before the hijack's header tells the client to go on
	// (see attachHub); with logs, at the point the replay stops.
	c.mu.Lock()
	if c.removed {
		c.mu.Unlock()
		return NoSuchContainer(ref)
	}
	tty := c.Meta.Config.Tty
	openStdin := c.Meta.Config.OpenStdin
	stdinOnce := c.Meta.Config.StdinOnce
	path := c.LogPath()
	var cl *attachClient
	var snap *logSnapshot
	if cfg.Stream {
		cl = newAttachClient()
		switch {
		case cfg.Logs && c.out != nil:
			snap = c.hub.addAfterLog(cl, c.out)
		case cfg.Logs:
			// Not running: the files are complete until the next start,
			// whose output cl gets.
			snap = snapshotLog(path, -1)
			c.hub.add(cl)
		default:
			c.hub.add(cl)
		}
		s.EventLocked(c, events.ActionAttach, nil)
	} else if cfg.Logs {
		// The log so far, without a stream (docker attach --no-stream).
		if c.out != nil {
			snap = c.out.snapshot()
		} else {
			snap = snapshotLog(path, -1)
		}
	}
	c.mu.Unlock()
	if cl != nil {
		defer c.hub.remove(cl)
	}
	st, err := cfg.Hijack(tty)
	if err != nil {
		if cl != nil {
			cl.abandon()
		}
		if snap != nil {
			snap.close()
		}
		return err
	}
	defer st.Close()
	if snap != nil {
		recs, _ := snap.records()
		for _, r := range recs {
			switch {
			case r.Stream == "stdout" && st.Stdout != nil:
				_, _ = io.WriteString(st.Stdout, r.Log)
			case r.Stream == "stderr" && st.Stderr != nil:
				_, _ = io.WriteString(st.Stderr, r.Log)
			}
		}
	}
	if cl == nil {
		return nil
	}
	cl.connect(st.Stdout, st.Stderr)

	detached := make(chan struct{})
	if st.Stdin != nil && openStdin {
		var in io.Reader = st.Stdin
		if tty {
			in = term.NewEscapeProxy(st.Stdin, keys)
		}
		go func() {
			err := c.copyStdin(in)
			var esc term.EscapeError
			if errors.As(err, &esc) {
				close(detached)
				return
			}
			if stdinOnce && !tty {
				c.closeStdin()
			} else if stdinOnce && tty && err == nil {
				c.closeStdin()
			}
		}()
	}
	select {
	case <-cl.done:
	case <-detached:
	}
	return nil
}

// runningStdin waits until c runs and returns its stdin pipe (nil when the
// container has none or ended).
func (c *Container) runningStdin() io.WriteCloser {
	for {
		c.mu.Lock()
		w, removed, ch := c.stdin, c.removed, c.changed
		started := c.rc != nil
		c.mu.Unlock()
		if w != nil {
			return w
		}
		if removed || started {
			return nil
		}
		<-ch
	}
}

// copyStdin copies a client's input into the container's stdin until EOF
// (nil), a detach sequence (term.EscapeError) or another error.
func (c *Container) copyStdin(in io.Reader) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := in.Read(buf)
		if n > 0 {
			w := c.runningStdin()
			if w == nil {
				return io.ErrClosedPipe
			}
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (c *Container) closeStdin() {
	if w := c.runningStdin(); w != nil {
		_ = w.Close()
	}
}
