package terminal

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// maxCtrl bounds queued control messages (pongs); a client pinging faster
// than it reads loses pongs, not server memory.
const maxCtrl = 16

// errDetached ends a reader whose client is closing for another reason.
var errDetached = errors.New("client detached")

// closeReq says why and how a client is being detached.
type closeReq struct {
	code   int    // close code to send; 0: the connection is already gone
	reason string // close reason and notice message
	flush  bool   // send queued output before the notice
	err    error  // what Attach returns
}

// client is one attached connection. The hub's reader fills q; the
// client's writer goroutine drains it; its reader goroutine handles input.
type client struct {
	h    *Hub
	conn *Conn

	mu      sync.Mutex
	q       *ring
	ctrl    []Message // control messages, sent before queued output
	paused  bool
	closing *closeReq // set once

	wake     chan struct{} // to the writer: something to do
	space    chan struct{} // to the hub reader: q has room
	gone     chan struct{} // closed with closing set
	detached chan struct{} // closed when Attach returns
}

func newClient(h *Hub, conn *Conn) *client {
	return &client{
		h:        h,
		conn:     conn,
		q:        newRing(h.opts.QueueBytes),
		wake:     make(chan struct{}, 1),
		space:    make(chan struct{}, 1),
		gone:     make(chan struct{}),
		detached: make(chan struct{}),
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// setClosing records why the client ends; the first reason wins. It
// reports whether r was the first.
func (c *client) setClosing(r *closeReq) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing != nil {
		return false
	}
	c.closing = r
	close(c.gone)
	signal(c.wake)
	return true
}

// enqueue queues p for sending, waiting for room until deadline. It
// returns false if the queue stayed full until the deadline. The wait is
// what pushes back on the shell: the hub reader does not read the pty
// while it waits.
func (c *client) enqueue(p []byte, deadline time.Time) bool {
	var t *time.Timer
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	for {
		c.mu.Lock()
		if c.closing != nil {
			c.mu.Unlock()
			return true
		}
		if c.q.Free() >= len(p) {
			c.q.Push(p)
			c.mu.Unlock()
			signal(c.wake)
			return true
		}
		c.mu.Unlock()
		if t == nil {
			d := time.Until(deadline)
			if d <= 0 {
				return false
			}
			t = time.NewTimer(d)
		}
		select {
		case <-c.space:
		case <-c.gone:
			return true
		case <-t.C:
			return false
		}
	}
}

func (c *client) send(m Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.ctrl) < maxCtrl {
		c.ctrl = append(c.ctrl, m)
		signal(c.wake)
	}
}

func (c *client) setPaused(p bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.paused = p
	signal(c.wake)
}

func (c *client) write(m Message) error {
	if err := c.conn.ws.SetWriteDeadline(time.Now().Add(c.h.opts.StallTimeout)); err != nil {
		return err
	}
	return c.conn.WriteMessage(m)
}

// writeLoop sends control messages, then queued output (unless paused),
// and pings; once closing is set (and, if asked, the queue is flushed) it
// sends a closing Notice and the close frame and returns nil.
func (c *client) writeLoop() error {
	ping := time.NewTicker(c.h.opts.PingInterval)
	defer ping.Stop()
	frame := make([]byte, c.h.opts.MaxFrame)
	for {
		// Checked on every turn, not only when idle: during a flood the
		// client may send nothing, and its pongs keep it alive.
		select {
		case <-ping.C:
			if err := c.ping(); err != nil {
				return err
			}
		default:
		}

		c.mu.Lock()
		cl := c.closing
		if cl != nil && cl.code == 0 {
			c.mu.Unlock()
			return nil // the connection is gone; nothing to say
		}
		if len(c.ctrl) > 0 {
			m := c.ctrl[0]
			c.ctrl[0] = nil
			c.ctrl = c.ctrl[1:]
			c.mu.Unlock()
			if err := c.write(m); err != nil {
				return err
			}
			continue
		}
		if cl != nil && (!cl.flush || c.q.Len() == 0) {
			c.mu.Unlock()
			// Errors are moot here: the connection is ending either way.
			_ = c.write(Notice{Kind: NoticeClosing, Code: cl.code, Message: cl.reason})
			_ = c.conn.writeClose(cl.code, cl.reason, time.Now().Add(closeGrace))
			return nil
		}
		if c.q.Len() > 0 && (!c.paused || cl != nil) {
			n := c.q.Pop(frame)
			c.mu.Unlock()
			signal(c.space)
			if err := c.write(Output(frame[:n])); err != nil {
				return err
			}
			continue
		}
		c.mu.Unlock()

		select {
		case <-c.wake:
		case <-ping.C:
			if err := c.ping(); err != nil {
				return err
			}
		}
	}
}

func (c *client) ping() error {
	return c.conn.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.h.opts.StallTimeout))
}

// readLoop handles the client's messages until an error.
func (c *client) readLoop() error {
	ws := c.conn.ws
	alive := func() { _ = ws.SetReadDeadline(time.Now().Add(2 * c.h.opts.PingInterval)) }
	alive()
	ws.SetPongHandler(func(string) error { alive(); return nil })
	for {
		m, err := c.conn.ReadMessage()
		if err != nil {
			return err
		}
		alive()
		switch m := m.(type) {
		case Input, Resize:
			if _, ok := m.(Input); ok {
				c.h.lastInput.Store(time.Now().UnixNano())
			}
			select {
			case c.h.in <- m: // whole, in order; inputs of tabs never interleave
			case <-c.gone:
				return errDetached
			}
		case Ping:
			c.send(Pong(m))
		case Pause:
			c.setPaused(true)
		case Resume:
			c.setPaused(false)
		default:
			return protoErr(CloseUnsupported, "%v is a server message", m.Type())
		}
		alive() // input may have waited for a busy pty
	}
}

// readerEnded turns the reader's error into the client's close reason.
func (c *client) readerEnded(err error) {
	var pe *ProtocolError
	var ce *websocket.CloseError
	var ne net.Error
	switch {
	case errors.Is(err, errDetached):
		// Already closing; the writer sends the close frame.
	case errors.As(err, &pe):
		c.setClosing(&closeReq{code: pe.Code, reason: pe.Reason, err: pe})
	case errors.As(err, &ce) && ce.Code != websocket.CloseAbnormalClosure:
		// The peer closed; gorilla has already answered its close frame.
		// (1006 is gorilla's name for a connection lost without one.)
		c.setClosing(&closeReq{})
	case errors.As(err, &ne) && ne.Timeout():
		c.setClosing(&closeReq{code: CloseKeepAlive, reason: "no keep-alive response",
			err: fmt.Errorf("client keep-alive: %w", err)})
	default:
		if c.setClosing(&closeReq{err: fmt.Errorf("read from client: %w", err)}) {
			c.conn.Close() // unblock a writer stuck on the dead peer
		}
	}
}

// writerEnded handles the writer's return.
func (c *client) writerEnded(err error) {
	if err == nil {
		return
	}
	if c.setClosing(&closeReq{err: fmt.Errorf("write to client: %w", err)}) {
		c.conn.Close()
	}
}
