// Package safefile reads regular files out of trees that someone else
// controls: a learner's workspace, a build context, a container's root
// filesystem.
//
// labd is root on the host and the learner is root in the sandbox, so such
// a tree holds whatever the learner made: symlinks to anywhere on the
// host, FIFOs that block the reader forever, device nodes that are the
// host's devices once labd opens them (mknod works in a container; only
// opening is denied there). Reading a learner's "Dockerfile" that is the
// character device 1,5 reads the host's /dev/zero until labd is killed.
//
// So a name is resolved with one openat2 call that cannot leave the root
// (RESOLVE_BENEATH or RESOLVE_IN_ROOT, no /proc magic links, no other
// mount) and opened O_PATH, which opens nothing for real; fstat decides,
// and only a regular file is then opened for reading, through that
// descriptor (/proc/self/fd), so a learner who swaps the name meanwhile
// changes nothing. Nothing here blocks on a FIFO, opens a device or reads
// more than the caller's bound.
package safefile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Scope says how a name is resolved in its root.
type Scope int

const (
	// Beneath refuses any way out of the root (ErrOutside): "..",
	// absolute names and symlinks that leave it. For a workspace, where
	// an absolute symlink means the learner's container paths, not ours.
	Beneath Scope = iota
	// InRoot resolves as if the root were "/": ".." stops at it and an
	// absolute symlink starts from it, as inside a container whose root
	// filesystem it is (an image's /etc/passwd, a build context).
	InRoot
)

var (
	// ErrNotRegular matches a *NotRegularError.
	ErrNotRegular = errors.New("not a regular file")
	// ErrTooLarge matches a *TooLargeError.
	ErrTooLarge = errors.New("file too large")
	// ErrOutside is a name that leads out of its root (Beneath only).
	ErrOutside = errors.New("a symbolic link or “..” leads out of the directory")
)

// NotRegularError is a name that exists but is not a regular file.
type NotRegularError struct {
	Type string // "directory", "FIFO", "character device", ...
}

func (e *NotRegularError) Error() string { return "not a regular file (" + e.Type + ")" }

// Is makes errors.Is(err, ErrNotRegular) true.
func (e *NotRegularError) Is(target error) bool { return target == ErrNotRegular }

// TooLargeError is a file larger than the caller reads.
type TooLargeError struct {
	Limit int64
}

func (e *TooLargeError) Error() string { return "file exceeds " + Size(e.Limit) }

// Is makes errors.Is(err, ErrTooLarge) true.
func (e *TooLargeError) Is(target error) bool { return target == ErrTooLarge }

// Size writes a byte count as people read it in docs: "1 MiB", "512 KiB",
// or bytes.
func Size(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + " MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + " KiB"
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

// TypeName names the file type in a stat mode.
func TypeName(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "regular file"
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFLNK:
		return "symbolic link"
	case unix.S_IFIFO:
		return "FIFO"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFCHR:
		return "character device"
	case unix.S_IFBLK:
		return "block device"
	}
	return "special file"
}

// Open opens the regular file name in root for reading. Errors are
// *fs.PathError naming name as given: fs.ErrNotExist, ErrOutside,
// ErrNotRegular (nothing else was opened), or the system's error.
func Open(root, name string, scope Scope) (*os.File, error) {
	rootFD, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", root, err)
	}
	defer unix.Close(rootFD)
	return OpenAt(rootFD, name, scope)
}

// OpenAt is Open with the root as a directory descriptor.
func OpenAt(rootFD int, name string, scope Scope) (*os.File, error) {
	rel, err := relName(name, scope)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	pathFD, st, err := openPath(rootFD, rel, scope)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	defer unix.Close(pathFD)
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, &fs.PathError{Op: "open", Path: name, Err: &NotRegularError{Type: TypeName(st.Mode)}}
	}
	f, err := reopen(pathFD, st, name)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	return f, nil
}

// OpenNoFollow opens the regular file at p, a path already resolved in
// its tree by the caller (a walk's entry): a final symlink is refused,
// not followed (O_NOFOLLOW), and anything but a regular file is refused
// unopened, whatever was swapped in since the caller looked.
func OpenNoFollow(p string) (*os.File, error) {
	fd, err := unix.Open(p, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: p, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, &fs.PathError{Op: "open", Path: p, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, &fs.PathError{Op: "open", Path: p, Err: &NotRegularError{Type: TypeName(st.Mode)}}
	}
	f, err := reopen(fd, &st, p)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: p, Err: err}
	}
	return f, nil
}

// ReadFile reads the regular file name in root, refusing one larger than
// max bytes (*TooLargeError) before reading any of it.
func ReadFile(root, name string, scope Scope, max int64) ([]byte, error) {
	f, err := Open(root, name, scope)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadAll(f, name, max)
}

// ReadAll reads a file from Open, refusing more than max bytes: by its
// size first, and while reading should it grow meanwhile.
func ReadAll(f *os.File, name string, max int64) ([]byte, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: name, Err: err}
	}
	if st.Size() > max {
		return nil, &fs.PathError{Op: "read", Path: name, Err: &TooLargeError{Limit: max}}
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: name, Err: err}
	}
	if int64(len(b)) > max {
		return nil, &fs.PathError{Op: "read", Path: name, Err: &TooLargeError{Limit: max}}
	}
	return b, nil
}

// relName is name as openat2 takes it in the scope: InRoot accepts
// absolute names (they start at the root), Beneath refuses them.
func relName(name string, scope Scope) (string, error) {
	if name == "" || strings.ContainsRune(name, 0) {
		return "", fs.ErrInvalid
	}
	if scope == InRoot {
		rel := strings.TrimLeft(path.Clean("/"+name), "/")
		if rel == "" {
			rel = "."
		}
		return rel, nil
	}
	if path.IsAbs(name) {
		return "", ErrOutside
	}
	return name, nil
}

// resolveFlags keep a lookup in its root, off /proc magic links and on
// the root's own filesystem.
func resolveFlags(scope Scope) uint64 {
	r := uint64(unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV)
	if scope == InRoot {
		return r | unix.RESOLVE_IN_ROOT
	}
	return r | unix.RESOLVE_BENEATH
}

// openPath resolves rel under rootFD and returns an O_PATH descriptor of
// what it names (a final symlink followed, still inside the root) and its
// stat. O_PATH opens no device and waits for no FIFO writer.
func openPath(rootFD int, rel string, scope Scope) (int, *unix.Stat_t, error) {
	how := unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: resolveFlags(scope)}
	var fd int
	var err error
	for range 64 {
		// EAGAIN: a rename or mount raced the lookup; the kernel asks to
		// retry rather than risk a wrong answer.
		if fd, err = unix.Openat2(rootFD, rel, &how); err != unix.EAGAIN && err != unix.EINTR {
			break
		}
	}
	switch {
	case err == unix.EXDEV:
		// RESOLVE_BENEATH's answer to a way out, and RESOLVE_NO_XDEV's to
		// another mount: neither is this root's file.
		return -1, nil, ErrOutside
	case err == unix.ENOENT:
		return -1, nil, fs.ErrNotExist
	case err == unix.ENOSYS:
		return -1, nil, errors.New("openat2 is not available (Linux 5.6 or newer is needed)")
	case err != nil:
		return -1, nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, nil, err
	}
	return fd, &st, nil
}

// reopen opens the regular file behind an O_PATH descriptor for reading:
// through /proc/self/fd, so it is the inode already checked, whatever the
// name means by now. O_NONBLOCK and O_NOCTTY are belt and braces should
// that ever not hold; the inode is checked again.
func reopen(pathFD int, want *unix.Stat_t, name string) (*os.File, error) {
	p := "/proc/self/fd/" + strconv.Itoa(pathFD)
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("reopen: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Dev != want.Dev || st.Ino != want.Ino {
		unix.Close(fd)
		return nil, &NotRegularError{Type: TypeName(st.Mode)}
	}
	// Reads of a regular file never block; without O_NONBLOCK Go's poller
	// keeps out of it.
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), name), nil
}
