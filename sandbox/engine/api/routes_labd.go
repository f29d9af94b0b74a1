package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// RecordsPath is labd's extension of the Engine API: GET RecordsPath
// returns what the engine recorded for graders (docs/engine.md).
const RecordsPath = "/labd/v1/records"

// Call is one API request as recorded for graders.
type Call struct {
	Time   time.Time `json:"time"`
	Method string    `json:"method"`
	Path   string    `json:"path"` // without the /vX.Y prefix
	Query  string    `json:"query,omitempty"`
	Status int       `json:"status"`
}

// RecordsBackend is implemented by backends that keep records for graders
// (labd's engine does; fakes in tests need not). The server records every
// routed request except pings and /labd/ requests (none at all with
// Options.Unrecorded: the grader's own socket), and serves
// GET /labd/v1/records?since=RFC3339Nano from Records.
type RecordsBackend interface {
	RecordCall(c Call)
	// Records returns a JSON-encodable value of everything recorded at or
	// after since (zero: everything kept).
	Records(since time.Time) any
}

// RecordsWaiter is implemented by backends whose records can be waited
// for: GET /labd/v1/records?after=SEQ&wait=DURATION answers once the
// record count is no longer SEQ (or wait has passed), so a grader learns of a
// learner's command at once without polling.
type RecordsWaiter interface {
	// RecordsSeq returns how many records were added so far and a
	// channel closed once more are.
	RecordsSeq() (uint64, <-chan struct{})
}

// maxRecordsWait bounds ?wait=, so a forgotten long poll ends.
const maxRecordsWait = 5 * time.Minute

func (s *server) labdRecords(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	rb, ok := s.b.(RecordsBackend)
	if !ok {
		return pageNotFound{}
	}
	var since time.Time
	if v := r.FormValue("since"); v != "" {
		t, err := parseSince(v)
		if err != nil {
			return InvalidParameterError(err)
		}
		since = t
	}
	if v := r.FormValue("after"); v != "" {
		after, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return InvalidParameterError(errors.New("after: want a record count (seq), got " + strconv.Quote(v)))
		}
		wait := time.Duration(0)
		if v := r.FormValue("wait"); v != "" {
			if wait, err = time.ParseDuration(v); err != nil || wait < 0 {
				return InvalidParameterError(errors.New("wait: want a duration such as 30s, got " + strconv.Quote(v)))
			}
		}
		if rw, ok := s.b.(RecordsWaiter); ok && wait > 0 {
			if !waitRecords(ctx, rw, after, min(wait, maxRecordsWait)) {
				return nil // the client went away
			}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	return json.NewEncoder(w).Encode(rb.Records(since))
}

// waitRecords blocks until rw's record count differs from after (more
// records, or a new engine whose count started over), wait has passed
// (true) or ctx ended (false).
func waitRecords(ctx context.Context, rw RecordsWaiter, after uint64, wait time.Duration) bool {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		seq, grew := rw.RecordsSeq()
		if seq != after {
			return true
		}
		select {
		case <-grew:
		case <-timer.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
}

// parseSince accepts RFC 3339 (with or without fraction) or Unix seconds
// with an optional fraction, as `docker events --since` does.
func parseSince(v string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	sec, frac, _ := strings.Cut(v, ".")
	n, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		return time.Time{}, errors.New("since: want RFC 3339 or Unix seconds, got " + strconv.Quote(v))
	}
	var ns int64
	if frac != "" {
		frac = (frac + "000000000")[:9]
		if ns, err = strconv.ParseInt(frac, 10, 64); err != nil {
			return time.Time{}, errors.New("since: bad fraction in " + strconv.Quote(v))
		}
	}
	return time.Unix(n, ns), nil
}

// recordCall wraps w so the request is recorded as soon as its status is
// known (streams such as logs -f or attach are recorded when they start,
// not when they end). done must be called when the handler returns.
func (s *server) recordCall(w http.ResponseWriter, r *http.Request, path string) (http.ResponseWriter, func()) {
	rb, ok := s.b.(RecordsBackend)
	if !ok || s.opts.Unrecorded || path == "/_ping" || strings.HasPrefix(path, "/labd/") {
		return w, func() {}
	}
	rw := &recordingWriter{ResponseWriter: w, rec: func(status int) {
		rb.RecordCall(Call{Time: time.Now(), Method: r.Method, Path: path, Query: r.URL.RawQuery, Status: status})
	}}
	return rw, func() { rw.record(http.StatusOK) }
}

// recordingWriter notes the first status written. It forwards Flush and
// Hijack, which the streaming and attach routes need.
type recordingWriter struct {
	http.ResponseWriter
	once sync.Once
	rec  func(status int)
}

func (w *recordingWriter) record(status int) { w.once.Do(func() { w.rec(status) }) }

func (w *recordingWriter) WriteHeader(status int) {
	w.record(status)
	w.ResponseWriter.WriteHeader(status)
}

func (w *recordingWriter) Write(b []byte) (int, error) {
	w.record(http.StatusOK)
	return w.ResponseWriter.Write(b)
}

func (w *recordingWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *recordingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("response does not support hijacking")
	}
	w.record(http.StatusSwitchingProtocols)
	return hj.Hijack()
}

func (w *recordingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
