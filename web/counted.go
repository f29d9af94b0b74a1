package web

import (
	"bufio"
	"net"
	"net/http"
)

// counted counts each request by the route pattern it matched and the
// status it got (labd_http_requests_total). It sits right around the mux,
// which sets r.Pattern on the request it is handed.
func (s *server) counted(next http.Handler) http.Handler {
	m := s.opts.Metrics
	if m == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		code := sw.code
		switch {
		case sw.hijacked:
			code = http.StatusSwitchingProtocols
		case code == 0:
			code = http.StatusOK
		}
		m.Request(r.Pattern, code)
	})
}

// statusWriter notes the status written; a websocket takes the
// connection over (Hijack), a stream flushes.
type statusWriter struct {
	http.ResponseWriter
	code     int
	hijacked bool
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		w.hijacked = true
	}
	return c, rw, err
}

// Unwrap lets http.ResponseController reach the connection's own writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// metricsAccess lets a scraper on this machine (a loopback peer, not a
// forwarded address) or one with the instructor token (Authorization:
// Bearer) read /metrics: how many learners a class has is the operator's
// business, not the internet's.
func (s *server) metricsAccess(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		ip := net.ParseIP(host)
		if ok, bearer := s.isInstructor(r); (ok && bearer) || ip != nil && ip.IsLoopback() && r.Header.Get("X-Forwarded-For") == "" {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="labd metrics"`)
		http.Error(w, "metrics: scrape from this machine, or send the instructor token as Authorization: Bearer", http.StatusUnauthorized)
	})
}
