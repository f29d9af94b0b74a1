package terminal

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

// FuzzDecodeFrame feeds arbitrary frames to the decoder a client's every
// websocket frame goes through. Whatever it accepts must re-encode to a
// frame that decodes to the same message; what it refuses must be a
// *ProtocolError with a close code the server can send.
func FuzzDecodeFrame(f *testing.F) {
	for _, m := range []Message{
		Input("ls -l\r"), Input{}, Output("héllo \x1b[31mred\x1b[0m"), Ping("12345"), Pong("x"),
		Pause{}, Resume{}, Resize{Cols: 120, Rows: 40}, Resize{Cols: MaxSize, Rows: MinSize},
		Hello{Protocol: ProtocolVersion, Scrollback: 42, MaxFrame: 32768, MaxMessage: 65536, PingMS: 20000},
		Notice{Kind: NoticeClosing, Code: CloseDestroyed, Message: "sandbox destroyed"},
	} {
		var b bytes.Buffer
		if err := Encode(&b, m); err != nil {
			f.Fatal(err)
		}
		f.Add(b.Bytes())
	}
	for _, s := range []string{
		"", "\x00", "\x7fabc", "\x04x", "\x02{", "\x02{\"cols\":1,\"rows\":1}{}",
		"\x02{\"cols\":80}", "\x02{\"cols\":0,\"rows\":1}", "\x02{\"cols\":1001,\"rows\":1}",
		"\x02{\"cols\":80,\"rows\":24}\n",
		"\x02{\"cols\":1e2,\"rows\":24}", "\x02{\"cols\":-1,\"rows\":24}", "\x02{\"cols\":99999999999999999999,\"rows\":1}",
		"\x02 null", "\x02[]", "\x81{\"protocol\":1}", "\x84{\"kind\":\"info\",\"message\":\"\\ud800\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		orig := bytes.Clone(frame)
		m, err := DecodeFrame(frame)
		if !bytes.Equal(frame, orig) {
			t.Fatalf("DecodeFrame changed its input")
		}
		if err != nil {
			var pe *ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("DecodeFrame error %v (%T) is not a *ProtocolError", err, err)
			}
			if pe.Code != CloseUnsupported && pe.Code != CloseInvalidPayload {
				t.Fatalf("DecodeFrame error with close code %d", pe.Code)
			}
			if m != nil {
				t.Fatalf("DecodeFrame returned %#v with error %v", m, err)
			}
			return
		}
		if m == nil {
			t.Fatal("DecodeFrame returned neither message nor error")
		}
		if Type(frame[0]) != m.Type() {
			t.Fatalf("frame type 0x%02x decoded as %v", frame[0], m.Type())
		}
		var enc bytes.Buffer
		if err := Encode(&enc, m); err != nil {
			t.Fatalf("Encode(%#v): %v", m, err)
		}
		switch m := m.(type) {
		case Input, Output, Ping, Pong:
			// Byte payloads pass through unchanged, never more than given.
			if !bytes.Equal(enc.Bytes(), frame) {
				t.Fatalf("%v re-encodes to %q, want %q", m.Type(), enc.Bytes(), frame)
			}
		case Pause, Resume:
			if len(frame) != 1 {
				t.Fatalf("%v accepted with a payload %q", m.Type(), frame[1:])
			}
		case Resize:
			if !inSize(int(m.Cols)) || !inSize(int(m.Rows)) {
				t.Fatalf("resize %dx%d out of bounds accepted", m.Cols, m.Rows)
			}
		}
		switch m.Type() {
		case TypeResize, TypeHello, TypeNotice:
			// JSON payloads: exactly one JSON value, as the protocol says.
			if !json.Valid(frame[1:]) {
				t.Fatalf("%v accepted a payload that is not one JSON value: %q", m.Type(), frame[1:])
			}
		}
		again, err := DecodeFrame(enc.Bytes())
		if err != nil {
			t.Fatalf("re-encoded %#v does not decode: %v", m, err)
		}
		if !reflect.DeepEqual(again, m) {
			t.Fatalf("round trip: %#v became %#v", m, again)
		}
	})
}
