package runtime

import (
	"bytes"
	"errors"
	"io"

	"github.com/labd/labd/internal/safefile"
)

// maxUserFile is Docker's own bound on /etc/passwd and /etc/group
// (moby/sys/user's maxUserFileBytes).
const maxUserFile = 10 << 20

// userFile is /etc/passwd or /etc/group of a container's root filesystem
// for user.GetExecUser, resolved inside it: nil when there is none (no
// entries, as dockerd treats a file it cannot open). One that is not a
// regular file, which a learner's image or running container can make
// with mknod or mkfifo, or one larger than Docker reads, is an error on
// the first read, so GetExecUser words it as dockerd 20.10 words its own
// read errors ("unable to find user nobody: ..."), where dockerd itself
// reads the host's device or waits forever on the FIFO.
func userFile(rootfs, name string) io.Reader {
	b, err := safefile.ReadFile(rootfs, name, safefile.InRoot, maxUserFile)
	switch {
	case err == nil:
		return bytes.NewReader(b)
	case errors.Is(err, safefile.ErrNotRegular), errors.Is(err, safefile.ErrTooLarge):
		return errReader{err}
	}
	return nil
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// UserError is a --user that the container's own files cannot resolve.
// dockerd resolves the user before it creates any task and answers in
// these plain words ("unable to find user nobody: ..."), so the engine
// passes it on unwrapped.
type UserError struct{ Err error }

func (e *UserError) Error() string { return e.Err.Error() }
func (e *UserError) Unwrap() error { return e.Err }
