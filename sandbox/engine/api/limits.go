package api

import (
	"fmt"
	"io"

	"github.com/docker/go-units"
)

// Default request size limits (Options). dockerd sets none; an engine
// one learner of a class talks to must, or one request fills labd's disk
// or memory for everyone.
const (
	// DefaultMaxRequestBody bounds every body that is not a stream of its
	// own (JSON of create, exec, auth, volumes): the docker CLI's largest
	// are a few KiB.
	DefaultMaxRequestBody int64 = 1 << 20
	// DefaultMaxLoadSize bounds one `docker load` archive (uncompressed
	// python:3.11-slim is about 150 MB).
	DefaultMaxLoadSize int64 = 1 << 30
	// DefaultMaxCopySize bounds one `docker cp` into a container.
	DefaultMaxCopySize int64 = 1 << 30
)

// bodyKind says which limit a route's request body is under.
type bodyKind int

const (
	bodyJSON    bodyKind = iota // MaxRequestBody
	bodyContext                 // the build context: MaxContextSize (spooled, routes_build.go)
	bodyLoad                    // docker load: MaxLoadSize
	bodyCopy                    // docker cp into a container: MaxCopySize
)

// bodyTooLarge is a request body past one of the engine's limits: a 413
// naming the limit, its value and the option that sets it.
type bodyTooLarge struct {
	what   string // "build context", …
	limit  int64
	option string // the labd option that sets it
	hint   string // what the learner can do, "" for nothing
}

func (e *bodyTooLarge) Error() string {
	msg := fmt.Sprintf("%s is too large: this engine accepts at most %s (%s)", e.what, units.BytesSize(float64(e.limit)), e.option)
	if e.hint != "" {
		msg += "; " + e.hint
	}
	return msg
}

func (*bodyTooLarge) RequestTooLarge() {}

// bodyLimit is the limit of kind k.
func (s *server) bodyLimit(k bodyKind) *bodyTooLarge {
	switch k {
	case bodyContext:
		return &bodyTooLarge{what: "build context", limit: s.opts.MaxContextSize, option: "--max-context",
			hint: "leave large files out of it with a .dockerignore"}
	case bodyLoad:
		return &bodyTooLarge{what: "image archive", limit: s.opts.MaxLoadSize, option: "--max-load"}
	case bodyCopy:
		return &bodyTooLarge{what: "archive copied into the container", limit: s.opts.MaxCopySize, option: "--max-copy"}
	}
	return &bodyTooLarge{what: "request body", limit: s.opts.MaxRequestBody, option: "--max-request-body"}
}

// limitedBody passes at most limit bytes of a request body; a byte more
// is the limit's error, for whoever reads it. hit stays set, so a handler
// whose reader turned that error into another one (an archive reader's
// "unexpected EOF") still answers with the limit.
type limitedBody struct {
	rc   io.ReadCloser
	left int64
	err  *bodyTooLarge
	hit  bool
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.hit {
		return 0, b.err
	}
	if b.left <= 0 {
		// At the limit: only a further byte makes the body too large.
		var one [1]byte
		n, err := b.rc.Read(one[:])
		if n > 0 {
			b.hit = true
			return 0, b.err
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }

// overLimit is the limit's error when body (a request's, as ServeHTTP
// wrapped it) went past it, else err.
func overLimit(body io.Reader, err error) error {
	if b, ok := body.(*limitedBody); ok && b.hit {
		return b.err
	}
	return err
}
