package image

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// LockFile is the file in a store's directory whose lock every process
// that opens the store with Open holds: a Store must not be shared by two
// processes, and Open removes staging files (tmp/) it takes for a killed
// process's leftovers. `labd serve` and `labd engine` hold it for their
// whole life, `labd images bootstrap|import` while they run. Readers of
// another process's store (labd test --data) use OpenReadOnly instead,
// which needs no lock.
const LockFile = "images.lock"

// ErrLocked reports a store held by another process.
var ErrLocked = errors.New("image store in use")

// LockedError names the process holding the lock.
type LockedError struct {
	Dir    string
	Holder string // "pid 123: labd serve", as the holder wrote it; may be empty
}

func (e *LockedError) Error() string {
	h := e.Holder
	if h == "" {
		h = "another process"
	}
	return fmt.Sprintf("the image store %s is in use by %s", e.Dir, h)
}

func (e *LockedError) Unwrap() error { return ErrLocked }

// LockStore takes the exclusive lock of the store in dir (creating dir),
// without waiting: a held lock gives a *LockedError. who ("labd serve")
// goes into the lock file for that message. The lock is an flock, so it
// goes with the process however it ends; release drops it earlier.
func LockStore(dir, who string) (release func(), err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("lock image store: %w", err)
	}
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock image store: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			b, _ := os.ReadFile(path)
			return nil, &LockedError{Dir: dir, Holder: strings.TrimSpace(string(b))}
		}
		return nil, fmt.Errorf("lock image store %s: %w", path, err)
	}
	// Only for the message of whoever finds the lock taken.
	if err := f.Truncate(0); err == nil {
		fmt.Fprintf(f, "pid %d: %s\n", os.Getpid(), who)
	}
	return func() {
		f.Truncate(0)
		unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}, nil
}
