package terminal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Subprotocol is the websocket subprotocol name of this protocol version.
// [Upgrade] refuses clients that do not offer it.
const Subprotocol = "labd.term.v1"

// ProtocolVersion is sent in [Hello].
const ProtocolVersion = 1

// Type is the first byte of every frame.
type Type byte

// Client → server message types.
const (
	TypeInput  Type = 0x01 // payload: raw bytes for the pty
	TypeResize Type = 0x02 // payload: JSON {"cols":N,"rows":N}
	TypePing   Type = 0x03 // payload: opaque, echoed in a pong
	TypePause  Type = 0x04 // no payload: stop sending output
	TypeResume Type = 0x05 // no payload: send output again
)

// Server → client message types.
const (
	TypeHello  Type = 0x81 // payload: JSON, see Hello; always the first frame
	TypeOutput Type = 0x82 // payload: raw bytes from the pty
	TypePong   Type = 0x83 // payload: the ping's payload
	TypeNotice Type = 0x84 // payload: JSON, see Notice
)

// Close codes the server uses; docs/terminal-protocol.md explains each.
const (
	CloseNormal         = 1000 // client left (sent by the client)
	CloseGoingAway      = 1001
	CloseUnsupported    = 1003 // text frame, unknown or misdirected message type
	CloseInvalidPayload = 1007 // empty frame, bad resize JSON or bounds, payload on pause/resume
	ClosePolicy         = 1008
	CloseTooBig         = 1009 // frame larger than the read limit
	CloseIdle           = 4000 // learner idle: the sandbox was reaped
	CloseDestroyed      = 4001 // sandbox destroyed
	CloseShutdown       = 4002 // server shutting down
	CloseShellExited    = 4003 // the login shell ended
	CloseTooSlow        = 4004 // the client's output queue stayed full too long
	CloseKeepAlive      = 4005 // no pong or message within two ping intervals
	CloseLifetime       = 4006 // the sandbox reached the server's maximum lifetime
	CloseStopped        = 4007 // an instructor stopped the sandbox
)

// Resize bounds, inclusive.
const (
	MinSize = 1
	MaxSize = 1000
)

// Message is one protocol message. The concrete types are the ones in this
// file; Message is sealed.
type Message interface {
	Type() Type
	encodePayload(w io.Writer) error
}

// Input is keyboard input for the pty.
type Input []byte

// Output is a chunk of pty output. Chunks may split UTF-8 sequences;
// clients decode them as a stream.
type Output []byte

// Ping asks for a Pong with the same payload.
type Ping []byte

// Pong answers a Ping.
type Pong []byte

// Pause asks the server to stop sending Output to this client.
type Pause struct{}

// Resume undoes Pause.
type Resume struct{}

// Resize sets the terminal size. The last resize from any client wins.
type Resize struct {
	Cols uint16 `json:"cols"`
	Rows uint16 `json:"rows"`
}

// Hello is the first message the server sends on a connection.
type Hello struct {
	Protocol   int `json:"protocol"`   // ProtocolVersion
	Scrollback int `json:"scrollback"` // bytes of replay that follow (Output frames)
	MaxFrame   int `json:"maxFrame"`   // largest Output payload
	MaxMessage int `json:"maxMessage"` // largest frame the server accepts
	PingMS     int `json:"pingMs"`     // server ping interval, milliseconds
}

// Notice kinds.
const (
	NoticeInfo    = "info"
	NoticeWarning = "warning"
	NoticeClosing = "closing" // a close frame with Code follows
)

// Notice tells the page something worth showing; kind "closing" announces
// the close frame that follows and why.
type Notice struct {
	Kind    string `json:"kind"`
	Code    int    `json:"code,omitempty"`
	Message string `json:"message"`
	// Ends is when the sandbox ends (unix milliseconds) for a warning
	// of its idle or lifetime end; the page counts down to it.
	Ends int64 `json:"ends,omitempty"`
	// Action names what the page offers with it: "still-here" (the
	// idle warning's button).
	Action string `json:"action,omitempty"`
}

func (Input) Type() Type  { return TypeInput }
func (Output) Type() Type { return TypeOutput }
func (Ping) Type() Type   { return TypePing }
func (Pong) Type() Type   { return TypePong }
func (Pause) Type() Type  { return TypePause }
func (Resume) Type() Type { return TypeResume }
func (Resize) Type() Type { return TypeResize }
func (Hello) Type() Type  { return TypeHello }
func (Notice) Type() Type { return TypeNotice }

func writeBytes(w io.Writer, p []byte) error { _, err := w.Write(p); return err }
func writeJSON(w io.Writer, v any) error     { return json.NewEncoder(w).Encode(v) }

func (m Input) encodePayload(w io.Writer) error  { return writeBytes(w, m) }
func (m Output) encodePayload(w io.Writer) error { return writeBytes(w, m) }
func (m Ping) encodePayload(w io.Writer) error   { return writeBytes(w, m) }
func (m Pong) encodePayload(w io.Writer) error   { return writeBytes(w, m) }
func (Pause) encodePayload(io.Writer) error      { return nil }
func (Resume) encodePayload(io.Writer) error     { return nil }
func (m Resize) encodePayload(w io.Writer) error { return writeJSON(w, m) }
func (m Hello) encodePayload(w io.Writer) error  { return writeJSON(w, m) }
func (m Notice) encodePayload(w io.Writer) error { return writeJSON(w, m) }

// Encode writes m as one frame: its type byte, then its payload. w is
// typically a websocket message writer; one call is one frame.
func Encode(w io.Writer, m Message) error {
	if err := writeBytes(w, []byte{byte(m.Type())}); err != nil {
		return fmt.Errorf("encode %v: %w", m.Type(), err)
	}
	if err := m.encodePayload(w); err != nil {
		return fmt.Errorf("encode %v: %w", m.Type(), err)
	}
	return nil
}

// ProtocolError is a frame that breaks the protocol. Code is the websocket
// close code to answer it with.
type ProtocolError struct {
	Code   int
	Reason string
}

func (e *ProtocolError) Error() string {
	return fmt.Sprintf("terminal protocol: %s (close %d)", e.Reason, e.Code)
}

func protoErr(code int, format string, args ...any) *ProtocolError {
	return &ProtocolError{Code: code, Reason: fmt.Sprintf(format, args...)}
}

var errEmptyFrame = protoErr(CloseInvalidPayload, "empty frame")

// Decode reads one whole frame from r and returns its message. Frames that
// break the protocol give a *ProtocolError; read errors are returned wrapped.
// Decode knows both directions' types; the receiver checks direction.
func Decode(r io.Reader) (Message, error) {
	frame, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read frame: %w", err)
	}
	return DecodeFrame(frame)
}

// DecodeFrame decodes one frame held in memory. Byte payloads alias frame.
func DecodeFrame(frame []byte) (Message, error) {
	if len(frame) == 0 {
		return nil, errEmptyFrame
	}
	t, p := Type(frame[0]), frame[1:]
	switch t {
	case TypeInput:
		return Input(p), nil
	case TypeOutput:
		return Output(p), nil
	case TypePing:
		return Ping(p), nil
	case TypePong:
		return Pong(p), nil
	case TypePause, TypeResume:
		if len(p) != 0 {
			return nil, protoErr(CloseInvalidPayload, "%v takes no payload", t)
		}
		if t == TypePause {
			return Pause{}, nil
		}
		return Resume{}, nil
	case TypeResize:
		var m struct{ Cols, Rows *int }
		if err := strictJSON(p, &m); err != nil {
			return nil, protoErr(CloseInvalidPayload, "resize: %v", err)
		}
		if m.Cols == nil || m.Rows == nil {
			return nil, protoErr(CloseInvalidPayload, "resize: cols and rows are required")
		}
		if !inSize(*m.Cols) || !inSize(*m.Rows) {
			return nil, protoErr(CloseInvalidPayload, "resize: %dx%d out of bounds %d..%d", *m.Cols, *m.Rows, MinSize, MaxSize)
		}
		return Resize{Cols: uint16(*m.Cols), Rows: uint16(*m.Rows)}, nil
	case TypeHello:
		var m Hello
		if err := strictJSON(p, &m); err != nil {
			return nil, protoErr(CloseInvalidPayload, "hello: %v", err)
		}
		return m, nil
	case TypeNotice:
		var m Notice
		if err := strictJSON(p, &m); err != nil {
			return nil, protoErr(CloseInvalidPayload, "notice: %v", err)
		}
		return m, nil
	}
	return nil, protoErr(CloseUnsupported, "unknown message type 0x%02x", byte(t))
}

func inSize(n int) bool { return n >= MinSize && n <= MaxSize }

// strictJSON decodes exactly one JSON value. Unknown fields are allowed so
// that later versions can add some.
func strictJSON(p []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(p))
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("invalid JSON: %w", err)
	}
	// More would let a stray "}" or "]" through: it reports whether an
	// array or object continues, not whether the input does.
	if _, err := d.Token(); err != io.EOF {
		return errors.New("invalid JSON: trailing data")
	}
	return nil
}

func (t Type) String() string {
	switch t {
	case TypeInput:
		return "input"
	case TypeResize:
		return "resize"
	case TypePing:
		return "ping"
	case TypePause:
		return "pause"
	case TypeResume:
		return "resume"
	case TypeHello:
		return "hello"
	case TypeOutput:
		return "output"
	case TypePong:
		return "pong"
	case TypeNotice:
		return "notice"
	}
	return fmt.Sprintf("type(0x%02x)", byte(t))
}

// fromClient reports whether t is a client → server type.
func (t Type) fromClient() bool { return t >= TypeInput && t <= TypeResume }
