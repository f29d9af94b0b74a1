package terminal

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
)

// TestRoundTrip encodes every message type into an io.Pipe and decodes it
// on the other side: the codec needs no websocket.
func TestRoundTrip(t *testing.T) {
	msgs := []Message{
		Input("ls -l\r"),
		Input{},
		Output("héllo \x1b[31mred\x1b[0m"),
		Ping("12345"),
		Pong("12345"),
		Pause{},
		Resume{},
		Resize{Cols: 120, Rows: 40},
		Resize{Cols: MaxSize, Rows: MinSize},
		Hello{Protocol: ProtocolVersion, Scrollback: 42, MaxFrame: 32768, MaxMessage: 65536, PingMS: 20000},
		Notice{Kind: NoticeClosing, Code: CloseDestroyed, Message: "sandbox destroyed"},
	}
	for _, m := range msgs {
		t.Run(m.Type().String(), func(t *testing.T) {
			pr, pw := io.Pipe()
			go func() { pw.CloseWithError(Encode(pw, m)) }()
			got, err := Decode(pr)
			if err != nil {
				t.Fatalf("Decode() error = %v", err)
			}
			if got.Type() != m.Type() {
				t.Fatalf("Decode() type = %v, want %v", got.Type(), m.Type())
			}
			// nil and empty byte payloads are the same on the wire.
			if b, ok := got.(Input); ok && len(b) == 0 {
				return
			}
			if !reflect.DeepEqual(got, m) {
				t.Errorf("Decode() = %#v, want %#v", got, m)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name  string
		frame string
		code  int
	}{
		{"empty", "", CloseInvalidPayload},
		{"unknown type", "\x7fabc", CloseUnsupported},
		{"zero type", "\x00", CloseUnsupported},
		{"resize not JSON", "\x02{", CloseInvalidPayload},
		{"resize trailing", "\x02{\"cols\":1,\"rows\":1}{}", CloseInvalidPayload},
		{"resize missing rows", "\x02{\"cols\":80}", CloseInvalidPayload},
		{"resize zero", "\x02{\"cols\":0,\"rows\":24}", CloseInvalidPayload},
		{"resize too big", "\x02{\"cols\":80,\"rows\":1001}", CloseInvalidPayload},
		{"resize negative", "\x02{\"cols\":-1,\"rows\":24}", CloseInvalidPayload},
		{"resize fraction", "\x02{\"cols\":80.5,\"rows\":24}", CloseInvalidPayload},
		{"resize string", "\x02{\"cols\":\"80\",\"rows\":24}", CloseInvalidPayload},
		{"pause payload", "\x04x", CloseInvalidPayload},
		{"resume payload", "\x05x", CloseInvalidPayload},
		{"notice not JSON", "\x84x", CloseInvalidPayload},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := DecodeFrame([]byte(tt.frame))
			var pe *ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("DecodeFrame(%q) = %v, %v; want *ProtocolError", tt.frame, m, err)
			}
			if pe.Code != tt.code {
				t.Errorf("DecodeFrame(%q) code = %d, want %d (%v)", tt.frame, pe.Code, tt.code, pe)
			}
		})
	}
}

func TestDecodeResizeExtraFields(t *testing.T) {
	got, err := DecodeFrame([]byte("\x02{\"cols\":100,\"rows\":30,\"px\":true}"))
	if err != nil {
		t.Fatalf("DecodeFrame() error = %v", err)
	}
	if want := (Resize{Cols: 100, Rows: 30}); got != want {
		t.Errorf("DecodeFrame() = %v, want %v", got, want)
	}
}

// TestEncodeWire pins the wire format documented in docs/terminal-protocol.md.
func TestEncodeWire(t *testing.T) {
	tests := []struct {
		m    Message
		want string
	}{
		{Input("a"), "\x01a"},
		{Resize{Cols: 80, Rows: 24}, "\x02{\"cols\":80,\"rows\":24}\n"},
		{Ping("t"), "\x03t"},
		{Pause{}, "\x04"},
		{Resume{}, "\x05"},
		{Output("o"), "\x82o"},
		{Pong("t"), "\x83t"},
		{Notice{Kind: NoticeInfo, Message: "hi"}, "\x84{\"kind\":\"info\",\"message\":\"hi\"}\n"},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		if err := Encode(&b, tt.m); err != nil {
			t.Fatalf("Encode(%v) error = %v", tt.m, err)
		}
		if b.String() != tt.want {
			t.Errorf("Encode(%#v) = %q, want %q", tt.m, b.String(), tt.want)
		}
	}
}

func TestDecodeReadError(t *testing.T) {
	pr, pw := io.Pipe()
	boom := errors.New("boom")
	pw.CloseWithError(boom)
	if _, err := Decode(pr); !errors.Is(err, boom) {
		t.Errorf("Decode() error = %v, want %v", err, boom)
	}
}
