package terminal

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// DefaultReadLimit is the largest frame a client may send.
const DefaultReadLimit = 64 << 10

// Errors from Upgrade. The HTTP response has already been written when
// Upgrade returns one of them.
var (
	ErrOriginNotAllowed = errors.New("websocket origin not allowed")
	ErrNoSubprotocol    = errors.New("websocket subprotocol " + Subprotocol + " not offered")
)

// UpgradeOptions configure Upgrade.
type UpgradeOptions struct {
	// CheckOrigin decides whether the request's Origin may open a
	// terminal: the caller's Origin policy (package web has labd's one).
	// nil refuses every request that has an Origin header, i.e. every
	// browser.
	CheckOrigin func(r *http.Request) bool
	// ReadLimit is the largest frame accepted from the client; larger ones
	// close the connection with 1009. Default DefaultReadLimit.
	ReadLimit int64
	// OnClose hears the code of each close frame labd sends on the
	// connection (an operator's count of why terminals end); nil: none.
	OnClose func(code int)
}

// writeBufferPool shares write buffers between connections, so an idle tab
// holds no 64 KiB buffer.
var writeBufferPool sync.Pool

// Upgrade checks the request's Origin (opts.CheckOrigin) and subprotocol,
// then upgrades it to a websocket. It refuses a foreign Origin with HTTP
// 403 and a missing subprotocol with HTTP 400, without upgrading. On error
// the response has been written.
func Upgrade(w http.ResponseWriter, r *http.Request, opts UpgradeOptions) (*Conn, error) {
	originOK := opts.CheckOrigin
	if originOK == nil {
		originOK = func(r *http.Request) bool { return r.Header.Get("Origin") == "" }
	}
	if !originOK(r) {
		http.Error(w, "websocket origin not allowed", http.StatusForbidden)
		return nil, fmt.Errorf("upgrade from %q: %w", r.Header.Get("Origin"), ErrOriginNotAllowed)
	}
	if !slices.Contains(websocket.Subprotocols(r), Subprotocol) {
		http.Error(w, "websocket subprotocol "+Subprotocol+" required", http.StatusBadRequest)
		return nil, fmt.Errorf("upgrade: %w", ErrNoSubprotocol)
	}
	u := websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		ReadBufferSize:   4 << 10,
		// Big enough for a whole Output frame, so it goes out as one
		// websocket frame.
		WriteBufferSize: defaultMaxFrame + 1024,
		WriteBufferPool: &writeBufferPool,
		Subprotocols:    []string{Subprotocol},
		CheckOrigin:     originOK,
	}
	ws, err := u.Upgrade(w, r, nil)
	if err != nil {
		return nil, fmt.Errorf("upgrade: %w", err)
	}
	limit := opts.ReadLimit
	if limit <= 0 {
		limit = DefaultReadLimit
	}
	ws.SetReadLimit(limit)
	return &Conn{ws: ws, readLimit: limit, onClose: opts.OnClose}, nil
}

// Conn is one websocket connection speaking the terminal protocol. It is
// the thin adapter between typed messages and websocket frames: one message
// per binary frame. Like the websocket under it, it allows one concurrent
// reader and one concurrent writer; Close may be called at any time.
type Conn struct {
	ws        *websocket.Conn
	readLimit int64          // 0: unknown (not from Upgrade)
	onClose   func(code int) // UpgradeOptions.OnClose
}

// NewConn wraps an established websocket connection (server or client side).
func NewConn(ws *websocket.Conn) *Conn { return &Conn{ws: ws} }

// ReadMessage reads the next message. A frame that breaks the protocol (a
// text frame, an unknown type, a bad payload, a frame over the read limit)
// gives a *ProtocolError. A close frame from the peer gives a
// *websocket.CloseError.
func (c *Conn) ReadMessage() (Message, error) {
	mt, r, err := c.ws.NextReader()
	if err != nil {
		return nil, mapReadErr(err)
	}
	if mt != websocket.BinaryMessage {
		return nil, protoErr(CloseUnsupported, "text frame; frames must be binary")
	}
	m, err := Decode(r)
	if err != nil {
		return nil, mapReadErr(err)
	}
	return m, nil
}

func mapReadErr(err error) error {
	if errors.Is(err, websocket.ErrReadLimit) {
		return protoErr(CloseTooBig, "frame too large")
	}
	return err
}

// WriteMessage writes m as one binary frame.
func (c *Conn) WriteMessage(m Message) error {
	w, err := c.ws.NextWriter(websocket.BinaryMessage)
	if err != nil {
		return fmt.Errorf("write %v: %w", m.Type(), err)
	}
	if err := Encode(w, m); err != nil {
		w.Close()
		return err
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("write %v: %w", m.Type(), err)
	}
	return nil
}

// writeClose sends a close frame with code and reason (cut to fit).
func (c *Conn) writeClose(code int, reason string, deadline time.Time) error {
	const maxReason = 123 // control frame payload is 125 bytes, 2 for the code
	if len(reason) > maxReason {
		reason = strings.ToValidUTF8(reason[:maxReason], "")
	}
	if c.onClose != nil {
		c.onClose(code)
	}
	return c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), deadline)
}

// Close closes the underlying network connection without a close frame.
func (c *Conn) Close() error { return c.ws.Close() }
