package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/docker/docker/api/types/events"
	timetypes "github.com/docker/docker/api/types/time"
	"github.com/labd/labd/sandbox/engine/api"
	"github.com/moby/term"
)

// logRecord is one line of the json-file log, as dockerd's json-file
// driver writes it: {"log":"out\n","stream":"stdout","time":"…"}.
type logRecord struct {
	Log    string    `json:"log"`
	Stream string    `json:"stream"`
	Time   time.Time `json:"time"`
}

// timestampFormat is dockerd's RFC3339NanoFixed (`docker logs -t`).
const timestampFormat = "2006-01-02T15:04:05.000000000Z07:00"

// openContainerLog opens the log of c's next run with the rotation its
// --log-opt asks for, within the engine's cap.
func (e *Engine) openContainerLog(c *ctr) (*logFile, error) {
	pol, err := logPolicyOf(c.hc.LogConfig, e.limits.Logs)
	if err != nil {
		return nil, err
	}
	return openLogFile(c.logPath(), pol)
}

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

// output is one run's stdout and stderr: into the log file, to attached
// clients and to `logs -f` followers.
type output struct {
	mu        sync.Mutex
	log       *logFile
	hub       *attachHub
	partial   map[string][]byte
	followers map[chan logRecord]struct{}
	closed    bool
}

func newOutput(log *logFile, hub *attachHub) *output {
	return &output{log: log, hub: hub, partial: map[string][]byte{}, followers: map[chan logRecord]struct{}{}}
}

type streamWriter struct {
	o      *output
	stream string
}

func (w streamWriter) Write(p []byte) (int, error) {
	// The hub's lock is held across the log write too, so a client joining
	// with logs (addAfterLog) sees each byte in exactly one of the two.
	w.o.hub.mu.Lock()
	defer w.o.hub.mu.Unlock()
	w.o.hub.writeLocked(w.stream, p)
	w.o.mu.Lock()
	defer w.o.mu.Unlock()
	if w.o.closed {
		return len(p), nil
	}
	buf := append(w.o.partial[w.stream], p...)
	now := time.Now().UTC()
	for {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			break
		}
		w.o.recordLocked(logRecord{Log: string(buf[:i+1]), Stream: w.stream, Time: now})
		buf = buf[i+1:]
	}
	// dockerd's copier cuts lines at 16 KiB.
	for len(buf) >= 16<<10 {
		w.o.recordLocked(logRecord{Log: string(buf[:16<<10]), Stream: w.stream, Time: now})
		buf = buf[16<<10:]
	}
	w.o.partial[w.stream] = append([]byte(nil), buf...)
	return len(p), nil
}

func (o *output) writer(stream string) io.Writer { return streamWriter{o: o, stream: stream} }

// snapshot is the log as written so far.
func (o *output) snapshot() *logSnapshot {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return snapshotLog(o.log.path, -1)
	}
	return snapshotLog(o.log.path, o.log.size)
}

func (o *output) recordLocked(r logRecord) {
	b, err := json.Marshal(r)
	if err != nil {
		return
	}
	o.log.write(append(b, '\n'))
	for ch := range o.followers {
		select {
		case ch <- r:
		default:
			// A follower too slow for the output loses it rather than
			// stalling the container.
		}
	}
}

// follow registers a follower; records written from now on (the snapshot
// holds everything before) go to the channel until the run ends.
func (o *output) follow() (ch chan logRecord, snap *logSnapshot, cancel func()) {
	o.mu.Lock()
	defer o.mu.Unlock()
	ch = make(chan logRecord, 1024)
	snap = snapshotLog(o.log.path, o.log.size)
	if o.closed {
		close(ch)
		return ch, snap, func() {}
	}
	o.followers[ch] = struct{}{}
	return ch, snap, func() {
		o.mu.Lock()
		defer o.mu.Unlock()
		if _, ok := o.followers[ch]; ok {
			delete(o.followers, ch)
			close(ch)
		}
	}
}

// close flushes partial lines (without a newline, as dockerd's partial
// messages), closes the log and ends followers and attachments.
func (o *output) close() {
	o.mu.Lock()
	if !o.closed {
		now := time.Now().UTC()
		for _, s := range []string{"stdout", "stderr"} {
			if p := o.partial[s]; len(p) > 0 {
				o.recordLocked(logRecord{Log: string(p), Stream: s, Time: now})
			}
		}
		o.closed = true
		o.log.close()
		for ch := range o.followers {
			close(ch)
		}
		o.followers = map[chan logRecord]struct{}{}
	}
	o.mu.Unlock()
	o.hub.endAll()
}

func parseLogTime(v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	s, n, err := timetypes.ParseTimestamps(v, 0)
	if err != nil {
		return time.Time{}, api.InvalidParameterError(err)
	}
	return time.Unix(s, n), nil
}

// ContainerLogs implements api.ContainerBackend.
func (e *Engine) ContainerLogs(ctx context.Context, name string, cfg api.LogsConfig) error {
	c, err := e.ctrs.get(name)
	if err != nil {
		return err
	}
	since, err := parseLogTime(cfg.Since)
	if err != nil {
		return err
	}
	until, err := parseLogTime(cfg.Until)
	if err != nil {
		return err
	}
	tail := -1
	if cfg.Tail != "" && cfg.Tail != "all" {
		n, err := strconv.Atoi(cfg.Tail)
		if err == nil && n >= 0 {
			tail = n
		}
	}
	c.mu.Lock()
	tty := c.meta.Config.Tty
	out := c.out
	path := c.logPath()
	logType := c.hc.LogConfig.Type
	c.mu.Unlock()
	if logType == "none" {
		return api.InvalidParameterError(errors.New("configured logging driver does not support reading"))
	}

	var live chan logRecord
	var snap *logSnapshot
	switch {
	case cfg.Follow && out != nil:
		var cancel func()
		live, snap, cancel = out.follow()
		defer cancel()
	case out != nil:
		snap = out.snapshot()
	default:
		snap = snapshotLog(path, -1)
	}
	stdout, stderr := cfg.Start(tty)
	recs, err := snap.records()
	if err != nil {
		return err
	}
	if tail >= 0 && len(recs) > tail {
		recs = recs[len(recs)-tail:]
	}
	emit := func(r logRecord) error {
		if !since.IsZero() && r.Time.Before(since) {
			return nil
		}
		var w io.Writer
		switch {
		case r.Stream == "stdout" && cfg.ShowStdout:
			w = stdout
		case r.Stream == "stderr" && cfg.ShowStderr:
			w = stderr
		default:
			return nil
		}
		line := r.Log
		if cfg.Timestamps {
			line = r.Time.Format(timestampFormat) + " " + line
		}
		_, err := io.WriteString(w, line)
		return err
	}
	for _, r := range recs {
		if !until.IsZero() && r.Time.After(until) {
			return nil
		}
		if err := emit(r); err != nil {
			return err
		}
	}
	if live == nil {
		return nil
	}
	var untilC <-chan time.Time
	if !until.IsZero() {
		t := time.NewTimer(time.Until(until))
		defer t.Stop()
		untilC = t.C
	}
	for {
		select {
		case r, ok := <-live:
			if !ok {
				return nil
			}
			if !until.IsZero() && r.Time.After(until) {
				return nil
			}
			if err := emit(r); err != nil {
				return err
			}
		case <-untilC:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}

// ContainerAttach implements api.ContainerBackend.
func (e *Engine) ContainerAttach(ctx context.Context, name string, cfg api.AttachConfig) error {
	c, err := e.ctrs.get(name)
	if err != nil {
		return err
	}
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
		return noSuchContainer(name)
	}
	tty := c.meta.Config.Tty
	openStdin := c.meta.Config.OpenStdin
	stdinOnce := c.meta.Config.StdinOnce
	path := c.logPath()
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
		e.containerEvent(c, events.ActionAttach, nil)
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
			err := e.copyStdin(c, in)
			var esc term.EscapeError
			if errors.As(err, &esc) {
				close(detached)
				return
			}
			if stdinOnce && !tty {
				e.closeStdin(c)
			} else if stdinOnce && tty && err == nil {
				e.closeStdin(c)
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
func (e *Engine) runningStdin(c *ctr) io.WriteCloser {
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
func (e *Engine) copyStdin(c *ctr, in io.Reader) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := in.Read(buf)
		if n > 0 {
			w := e.runningStdin(c)
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

func (e *Engine) closeStdin(c *ctr) {
	if w := e.runningStdin(c); w != nil {
		_ = w.Close()
	}
}
