package terminal

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// PTY is the terminal end the hub serves: the pty master of the learner's
// login shell. Read returns shell output and fails when the shell has gone.
// The hub's goroutines end only when Read and Write return, so closing the
// PTY must interrupt them: an *os.File master must stay non-blocking
// (poller-backed; calling its Fd method makes it blocking).
type PTY interface {
	io.ReadWriter
	Resize(cols, rows uint16) error
}

// Defaults for HubOptions.
const (
	DefaultScrollback   = 256 << 10
	DefaultQueueBytes   = 1 << 20
	DefaultStallTimeout = 30 * time.Second
	DefaultPingInterval = 20 * time.Second
	defaultMaxFrame     = 32 << 10
)

// closeGrace is how long a closing connection waits for the peer's close
// frame before the network connection is cut.
const closeGrace = 2 * time.Second

// ErrTooSlow is returned by Attach for a client dropped with CloseTooSlow.
var ErrTooSlow = errors.New("client too slow: output queue stayed full")

// HubOptions configure a Hub. Zero fields take the defaults.
type HubOptions struct {
	// Scrollback is the size of the replay ring (default 256 KiB).
	Scrollback int
	// QueueBytes bounds each client's queue of unsent output (default
	// 1 MiB; never less than Scrollback, since the replay is queued whole).
	QueueBytes int
	// MaxFrame is the largest Output payload; small pty reads are coalesced
	// up to it (default 32 KiB).
	MaxFrame int
	// StallTimeout is how long the shell waits for a client whose queue is
	// full, and how long one frame write may take, before that client is
	// dropped with CloseTooSlow (default 30 s).
	StallTimeout time.Duration
	// PingInterval is the websocket ping period; a client that sends
	// nothing (pongs included) for two periods is dropped with
	// CloseKeepAlive (default 20 s).
	PingInterval time.Duration
}

func (o HubOptions) withDefaults() HubOptions {
	if o.Scrollback <= 0 {
		o.Scrollback = DefaultScrollback
	}
	if o.QueueBytes <= 0 {
		o.QueueBytes = DefaultQueueBytes
	}
	o.QueueBytes = max(o.QueueBytes, o.Scrollback)
	if o.MaxFrame <= 0 {
		o.MaxFrame = defaultMaxFrame
	}
	if o.StallTimeout <= 0 {
		o.StallTimeout = DefaultStallTimeout
	}
	if o.PingInterval <= 0 {
		o.PingInterval = DefaultPingInterval
	}
	return o
}

// Hub bridges one PTY to any number of attached clients: every client sees
// all output and may type; the last resize wins.
type Hub struct {
	pty  PTY
	opts HubOptions

	mu        sync.Mutex
	ring      *ring
	wrapped   bool // the ring has dropped old output
	clients   map[*client]struct{}
	end       *closeReq // why the hub ended (Close or shell exit); nil while live
	readBytes int64
	tooSlow   int
	targets   []*client // scratch for broadcast, used only by the reader
	notice    *Notice   // the standing notice (Notify), sent to every new client

	in        chan Message // Input and Resize, to inputLoop
	lastInput atomic.Int64
	done      chan struct{}
}

// NewHub starts reading p. The hub does not own p: closing it (or the
// shell ending) stops the reader, closes Done and detaches every client
// with CloseShellExited.
func NewHub(p PTY, opts HubOptions) *Hub {
	opts = opts.withDefaults()
	h := &Hub{
		pty:     p,
		opts:    opts,
		ring:    newRing(opts.Scrollback),
		clients: make(map[*client]struct{}),
		in:      make(chan Message, 64),
		done:    make(chan struct{}),
	}
	h.lastInput.Store(time.Now().UnixNano())
	go h.readLoop()
	go h.inputLoop()
	return h
}

// Done is closed when the pty's Read fails: the shell has exited.
func (h *Hub) Done() <-chan struct{} { return h.done }

// LastInput is when a client last sent input (or when the hub started).
func (h *Hub) LastInput() time.Time { return time.Unix(0, h.lastInput.Load()) }

// Stats is a snapshot of the hub's buffers.
type Stats struct {
	Scrollback int   // bytes in the replay ring (<= HubOptions.Scrollback)
	Queued     []int // unsent bytes per attached client (each <= QueueBytes)
	ReadBytes  int64 // total bytes read from the pty
	TooSlow    int   // clients dropped with CloseTooSlow
}

// Stats reports the hub's buffer use.
func (h *Hub) Stats() Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := Stats{Scrollback: h.ring.Len(), ReadBytes: h.readBytes, TooSlow: h.tooSlow}
	for c := range h.clients {
		c.mu.Lock()
		s.Queued = append(s.Queued, c.q.Len())
		c.mu.Unlock()
	}
	return s
}

func (h *Hub) readLoop() {
	buf := make([]byte, h.opts.MaxFrame)
	for {
		n, err := h.pty.Read(buf)
		if n > 0 {
			h.broadcast(buf[:n])
		}
		if err != nil {
			h.finish(&closeReq{code: CloseShellExited, reason: "shell exited", flush: true})
			close(h.done)
			return
		}
	}
}

// broadcast appends p to the ring and to every client's queue. Ring write
// and client list are taken under one lock, and Attach snapshots the ring
// and registers under the same lock, so a client gets each byte exactly
// once: in its replay or live.
func (h *Hub) broadcast(p []byte) {
	h.mu.Lock()
	if h.ring.Len()+len(p) > h.opts.Scrollback {
		h.wrapped = true
	}
	h.ring.Write(p)
	h.readBytes += int64(len(p))
	targets := h.targets[:0]
	for c := range h.clients {
		targets = append(targets, c)
	}
	h.targets = targets
	h.mu.Unlock()

	// One deadline for the whole chunk, so N stuck clients stall the shell
	// for one StallTimeout, not N.
	deadline := time.Now().Add(h.opts.StallTimeout)
	for i, c := range targets {
		if !c.enqueue(p, deadline) {
			h.mu.Lock()
			h.tooSlow++
			delete(h.clients, c)
			h.mu.Unlock()
			c.setClosing(&closeReq{code: CloseTooSlow, reason: "too slow: output not read for " + h.opts.StallTimeout.String(), err: ErrTooSlow})
		}
		targets[i] = nil
	}
}

// finish ends the hub with end (unless it already ended) and closes every
// client, returning their detached channels.
func (h *Hub) finish(end *closeReq) []<-chan struct{} {
	h.mu.Lock()
	if h.end == nil {
		h.end = end
	}
	cs := h.clients
	h.clients = make(map[*client]struct{})
	h.mu.Unlock()
	var waits []<-chan struct{}
	for c := range cs {
		r := *end
		c.setClosing(&r)
		waits = append(waits, c.detached)
	}
	return waits
}

// Close sends every client a closing Notice and a close frame with code and
// reason, and waits until they are detached (bounded by StallTimeout plus a
// short grace). Later Attach calls get the same notice and close at once.
// Close does not touch the pty. Typical codes: CloseIdle, CloseDestroyed,
// CloseShutdown.
func (h *Hub) Close(code int, reason string) {
	for _, w := range h.finish(&closeReq{code: code, reason: reason}) {
		<-w
	}
}

// inputLoop applies input and resizes in arrival order. It runs apart
// from the clients' readers because a pty write blocks while the shell is
// not reading its input, and a blocked client must still be closable.
// Write errors are dropped: they mean the shell is gone, which the pty
// reader reports as CloseShellExited.
func (h *Hub) inputLoop() {
	for {
		select {
		case m := <-h.in:
			switch m := m.(type) {
			case Input:
				_, _ = h.pty.Write(m)
			case Resize:
				_ = h.pty.Resize(m.Cols, m.Rows)
			}
		case <-h.done:
			return
		}
	}
}

// Attach serves one client until it leaves, breaks the protocol, is too
// slow, ctx ends (close CloseShutdown) or the hub ends. It first sends
// Hello and the scrollback replay, then live output. It returns nil when
// the client closed normally or the server ended the session (Close, shell
// exit, ctx); otherwise an error saying why the client was dropped (a
// *ProtocolError, ErrTooSlow, a keep-alive timeout or a network error).
// Attach always closes conn.
// Notify sends n to every attached client and keeps it as the standing
// notice every client attaching later gets too (a tab opened after an
// idle warning sees it), until the next Notify; a Notice without a
// Message withdraws it (the page hides what it showed).
func (h *Hub) Notify(n Notice) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.end != nil {
		return
	}
	h.notice = &n
	if n.Message == "" {
		h.notice = nil
	}
	for c := range h.clients {
		c.send(n)
	}
}

func (h *Hub) Attach(ctx context.Context, conn *Conn) error {
	c := newClient(h, conn)
	defer close(c.detached)

	h.mu.Lock()
	snap := h.ring.Snapshot(h.wrapped)
	c.ctrl = append(c.ctrl, Hello{
		Protocol:   ProtocolVersion,
		Scrollback: len(snap),
		MaxFrame:   h.opts.MaxFrame,
		MaxMessage: int(conn.readLimit),
		PingMS:     int(h.opts.PingInterval / time.Millisecond),
	})
	if h.notice != nil {
		c.ctrl = append(c.ctrl, *h.notice)
	}
	c.q.Push(snap)
	if end := h.end; end != nil {
		r := *end
		r.flush = r.code == CloseShellExited // let a late tab see how it ended
		c.setClosing(&r)
	} else {
		h.clients[c] = struct{}{}
	}
	h.mu.Unlock()

	readerDone := make(chan error, 1)
	writerDone := make(chan error, 1)
	go func() { readerDone <- c.readLoop() }()
	go func() { writerDone <- c.writeLoop() }()

	readerOut, writerOut := false, false
	select {
	case err := <-readerDone:
		readerOut = true
		c.readerEnded(err)
	case err := <-writerDone:
		writerOut = true
		c.writerEnded(err)
	case <-ctx.Done():
		c.setClosing(&closeReq{code: CloseShutdown, reason: "server shutting down"})
	case <-c.gone:
	}
	h.mu.Lock()
	delete(h.clients, c)
	h.mu.Unlock()

	if !writerOut {
		// The writer sends notice and close frame and returns; a write
		// stuck on a dead peer ends at its deadline.
		c.writerEnded(<-writerDone)
	}
	if !readerOut {
		// Give the peer a moment to answer our close frame.
		t := time.NewTimer(closeGrace)
		select {
		case err := <-readerDone:
			readerOut = true
			c.readerEnded(err)
		case <-t.C:
		}
		t.Stop()
	}
	conn.Close()
	if !readerOut {
		<-readerDone
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing.err
}
