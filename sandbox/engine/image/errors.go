package image

import (
	"errors"
	"fmt"
)

// Sentinel errors, tested with errors.Is; the API maps them to HTTP
// statuses (404, 400, 409).
var (
	ErrNotFound         = errors.New("not found")
	ErrInvalidReference = errors.New("invalid reference")
	ErrConflict         = errors.New("conflict")
	// ErrReadOnly: a write to a store opened with OpenReadOnly.
	ErrReadOnly = errors.New("image store opened read-only")
)

// notFoundError carries Docker's wording ("No such image: busybox:latest").
type notFoundError struct{ msg string }

func (e *notFoundError) Error() string        { return e.msg }
func (e *notFoundError) Is(target error) bool { return target == ErrNotFound }

func noSuchImage(ref string) error { return &notFoundError{msg: "No such image: " + ref} }

type invalidRefError struct{ err error }

func (e *invalidRefError) Error() string        { return e.err.Error() }
func (e *invalidRefError) Unwrap() error        { return e.err }
func (e *invalidRefError) Is(target error) bool { return target == ErrInvalidReference }

// ConflictError is Docker's image-delete conflict:
// "conflict: unable to delete <id12> (must be forced) - <reason>".
type ConflictError struct {
	Msg  string
	Hard bool // cannot be forced
	Used bool // a container uses the image
}

func (e *ConflictError) Error() string        { return e.Msg }
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

func deleteConflict(id12 string, hard, used bool, reason string) *ConflictError {
	force := "must be forced"
	if hard {
		force = "cannot be forced"
	}
	return &ConflictError{Msg: fmt.Sprintf("conflict: unable to delete %s (%s) - %s", id12, force, reason), Hard: hard, Used: used}
}
