package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
)

// Error classes, recognised by method like github.com/docker/docker/errdefs
// so that errors made with errdefs (or any type with these methods) map to
// Docker's status codes.
type (
	notFound         interface{ NotFound() }
	invalidParameter interface{ InvalidParameter() }
	conflict         interface{ Conflict() }
	unauthorized     interface{ Unauthorized() }
	unavailable      interface{ Unavailable() }
	forbidden        interface{ Forbidden() }
	notModified      interface{ NotModified() }
	notImplemented   interface{ NotImplemented() }
	tooLarge         interface{ RequestTooLarge() }
	tooMany          interface{ TooManyRequests() }
)

// StatusCode returns the HTTP status dockerd would use for err.
func StatusCode(err error) int {
	switch {
	// labd's limits first: a body cut at its limit surfaces as whatever
	// its reader made of it ("invalid JSON: ..."), which is not the cause.
	case errors.As(err, new(tooLarge)):
		return http.StatusRequestEntityTooLarge
	case errors.As(err, new(tooMany)):
		return http.StatusTooManyRequests
	case errors.As(err, new(notFound)):
		return http.StatusNotFound
	case errors.As(err, new(invalidParameter)):
		return http.StatusBadRequest
	case errors.As(err, new(conflict)):
		return http.StatusConflict
	case errors.As(err, new(unauthorized)):
		return http.StatusUnauthorized
	case errors.As(err, new(unavailable)):
		return http.StatusServiceUnavailable
	case errors.As(err, new(forbidden)):
		return http.StatusForbidden
	case errors.As(err, new(notModified)):
		return http.StatusNotModified
	case errors.As(err, new(notImplemented)):
		return http.StatusNotImplemented
	}
	return http.StatusInternalServerError
}

// NotFoundError marks err as a 404.
func NotFoundError(err error) error { return notFoundErr{err} }

// InvalidParameterError marks err as a 400.
func InvalidParameterError(err error) error { return invalidErr{err} }

// ConflictError marks err as a 409.
func ConflictError(err error) error { return conflictErr{err} }

// RequestTooLargeError marks err as a 413: a request over one of the
// engine's size limits.
func RequestTooLargeError(err error) error { return tooLargeErr{err} }

// TooManyRequestsError marks err as a 429: more at once than one of the
// engine's limits allows.
func TooManyRequestsError(err error) error { return tooManyErr{err} }

type tooLargeErr struct{ error }

func (tooLargeErr) RequestTooLarge() {}
func (e tooLargeErr) Unwrap() error  { return e.error }

type tooManyErr struct{ error }

func (tooManyErr) TooManyRequests() {}
func (e tooManyErr) Unwrap() error  { return e.error }

type notFoundErr struct{ error }

func (notFoundErr) NotFound()       {}
func (e notFoundErr) Unwrap() error { return e.error }

type invalidErr struct{ error }

func (invalidErr) InvalidParameter() {}
func (e invalidErr) Unwrap() error   { return e.error }

type conflictErr struct{ error }

func (conflictErr) Conflict()       {}
func (e conflictErr) Unwrap() error { return e.error }

// writeError answers like dockerd's makeErrorHandler: the status from the
// error's class and a {"message"} body typed exactly application/json (the
// CLI prints any other body raw).
func writeError(w http.ResponseWriter, err error) {
	code := StatusCode(err)
	if code == http.StatusNotModified {
		w.WriteHeader(code)
		return
	}
	msg := err.Error()
	var big tooLarge
	if errors.As(err, &big) {
		// The limit's own words, not a decoder's wrapping of them.
		if e, ok := big.(error); ok {
			msg = e.Error()
		}
	}
	if code == http.StatusBadRequest && strings.HasPrefix(msg, "invalid filter '") {
		// The filters package of dockerd 20.10 capitalised its errors
		// ("Invalid filter 'x'"); the newer one labd links does not, and
		// every Validate and GetBoolOrDefault of the engine ends here.
		msg = "I" + msg[1:]
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(struct {
		Message string `json:"message"`
	}{msg})
}
