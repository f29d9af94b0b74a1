package api

import (
	"encoding/json"
	"io"
	"net/http"
	"sync"

	"github.com/docker/docker/pkg/jsonmessage"
)

// jsonStream writes dockerd's JSON message stream: one object per line,
// "\r\n"-terminated, flushed after each so the CLI shows progress live.
type jsonStream struct {
	mu      sync.Mutex
	w       io.Writer
	flusher http.Flusher
	flushed bool
}

func newJSONStream(w http.ResponseWriter) *jsonStream {
	s := &jsonStream{w: w}
	if f, ok := w.(http.Flusher); ok {
		s.flusher = f
	}
	return s
}

func (s *jsonStream) send(m *jsonmessage.JSONMessage) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return s.raw(append(b, '\r', '\n'))
}

func (s *jsonStream) raw(b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := s.w.Write(b)
	if s.flusher != nil {
		s.flusher.Flush()
	}
	s.flushed = true
	return err
}

// started reports whether anything went out: after that an error can only
// travel inside the stream, since the 200 status is gone.
func (s *jsonStream) started() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flushed
}

// sendError writes the error message dockerd's streamformatter.FormatError
// writes; a *jsonmessage.JSONError keeps its code.
func (s *jsonStream) sendError(err error) error {
	je, ok := err.(*jsonmessage.JSONError)
	if !ok {
		je = &jsonmessage.JSONError{Message: err.Error()}
	}
	return s.send(&jsonmessage.JSONMessage{Error: je, ErrorMessage: err.Error()})
}

func (s *jsonStream) aux(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	raw := json.RawMessage(b)
	return s.send(&jsonmessage.JSONMessage{Aux: &raw})
}

// streamWriter turns each Write into one {"stream": ...} message.
type streamWriter struct {
	s      *jsonStream
	stderr bool
}

func (w streamWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	text := string(p)
	if w.stderr {
		// dockerd colours RUN's stderr red in the build output.
		text = "\033[91m" + text + "\033[0m"
	}
	if err := w.s.send(&jsonmessage.JSONMessage{Stream: text}); err != nil {
		return 0, err
	}
	return len(p), nil
}

// writeJSON answers like dockerd's httputils.WriteJSON.
func writeJSON(w http.ResponseWriter, code int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}
