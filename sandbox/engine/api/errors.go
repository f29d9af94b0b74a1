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
)

// StatusCode returns the HTTP status dockerd would use for err.
func StatusCode(err error) int {
	switch {
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
