package distribution

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// RegistryError is one error a registry answered with, printed as
// Docker's errcode does ("denied: requested access to the resource is
// denied").
type RegistryError struct {
	Code    string // DENIED, UNAUTHORIZED, MANIFEST_UNKNOWN...
	Message string
	Status  int // HTTP status
}

func (e *RegistryError) Error() string {
	return strings.ToLower(strings.ReplaceAll(e.Code, "_", " ")) + ": " + e.Message
}

// RegistryErrors are several errors of one answer.
type RegistryErrors []*RegistryError

func (e RegistryErrors) Error() string {
	if len(e) == 1 {
		return e[0].Error()
	}
	var b strings.Builder
	b.WriteString("errors:\n")
	for _, x := range e {
		b.WriteString(x.Error() + "\n")
	}
	return b.String()
}

// Is lets errors.Is(err, &RegistryError{Code: X}) match by code.
func (e *RegistryError) Is(target error) bool {
	t, ok := target.(*RegistryError)
	return ok && t.Code == e.Code
}

// Unwrap exposes the errors for errors.As/Is.
func (e RegistryErrors) Unwrap() []error {
	out := make([]error, len(e))
	for i, x := range e {
		out[i] = x
	}
	return out
}

// errorCode returns the first registry error code in err ("" if none).
func errorCode(err error) string {
	var re *RegistryError
	if errors.As(err, &re) {
		return re.Code
	}
	return ""
}

// Error classes the engine API maps to status codes (by method, like
// moby's errdefs).
type (
	notFoundError     struct{ error }
	unauthorizedError struct{ error }
	invalidError      struct{ error }
)

func (notFoundError) NotFound()           {}
func (e notFoundError) Unwrap() error     { return e.error }
func (unauthorizedError) Unauthorized()   {}
func (e unauthorizedError) Unwrap() error { return e.error }
func (invalidError) InvalidParameter()    {}
func (e invalidError) Unwrap() error      { return e.error }
func errNotFound(err error) error         { return notFoundError{err} }
func errUnauthorized(err error) error     { return unauthorizedError{err} }
func errInvalid(err error) error          { return invalidError{err} }

// errNoBasicAuth is docker's error when a registry asks for Basic
// credentials and none were given.
var errNoBasicAuth = errors.New("no basic auth credentials")

var defaultMessages = map[string]string{
	"UNAUTHORIZED": "authentication required",
	"DENIED":       "requested access to the resource is denied",
}

// responseError turns a failed registry answer into Docker's error (moby's
// vendored distribution client.HandleErrorResponse).
func responseError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	var bearer *RegistryError
	if resp.StatusCode >= 400 && resp.StatusCode < 500 {
		for _, c := range parseChallenges(resp.Header) {
			if c.scheme != "bearer" {
				continue
			}
			var code string
			switch c.params["error"] {
			case "invalid_token":
				code = "UNAUTHORIZED"
			case "insufficient_scope":
				code = "DENIED"
			default:
				continue
			}
			msg := c.params["error_description"]
			if msg == "" {
				msg = defaultMessages[code]
			}
			bearer = &RegistryError{Code: code, Message: msg, Status: resp.StatusCode}
			break
		}
	}
	errs := parseErrorBody(resp.StatusCode, body)
	if bearer != nil {
		return append(RegistryErrors{bearer}, errs...)
	}
	if len(errs) == 1 {
		return errs[0]
	}
	if len(errs) > 1 {
		return errs
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return &RegistryError{Code: "UNAUTHORIZED", Message: "authentication required", Status: resp.StatusCode}
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		return fmt.Errorf("error parsing HTTP %d response body: unexpected end of JSON input: %q", resp.StatusCode, string(body))
	}
	return fmt.Errorf("received unexpected HTTP status: %s", resp.Status)
}

func parseErrorBody(status int, body []byte) RegistryErrors {
	var details struct {
		Details string `json:"details"`
	}
	if json.Unmarshal(body, &details) == nil && details.Details != "" {
		code := "UNKNOWN"
		switch status {
		case http.StatusUnauthorized:
			code = "UNAUTHORIZED"
		case http.StatusTooManyRequests:
			code = "TOOMANYREQUESTS"
		}
		return RegistryErrors{{Code: code, Message: details.Details, Status: status}}
	}
	var env struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &env) != nil {
		return nil
	}
	var out RegistryErrors
	for _, e := range env.Errors {
		msg := e.Message
		if msg == "" {
			msg = defaultMessages[e.Code]
		}
		out = append(out, &RegistryError{Code: e.Code, Message: msg, Status: status})
	}
	return out
}
