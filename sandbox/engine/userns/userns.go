package userns

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Range is a sandbox's slice of host ids: container uid (and gid) i is
// host id Base+i, for i < Size. Docker's userns-remap gives 65536 ids.
type Range struct {
	Base, Size uint32
}

// maxID is the largest id a range may reach: (uid_t)-1 means "no id".
const maxID = 1<<32 - 2

// Validate refuses a range that isolates nothing (container root as host
// root) or does not fit in 32-bit ids.
func (r Range) Validate() error {
	switch {
	case r.Size == 0:
		return fmt.Errorf("user namespace range %s: size is 0", r)
	case r.Base == 0:
		return fmt.Errorf("user namespace range %s: container root would be host root", r)
	case uint64(r.Base)+uint64(r.Size)-1 > maxID:
		return fmt.Errorf("user namespace range %s: ends past the largest id %d", r, uint32(maxID))
	}
	return nil
}

// String is the range as one line of /proc/PID/uid_map: "0 Base Size".
func (r Range) String() string { return fmt.Sprintf("0 %d %d", r.Base, r.Size) }

// Contains reports whether host id h is in the range.
func (r Range) Contains(h uint32) bool { return h >= r.Base && h-r.Base < r.Size }

func (r Range) sysMaps() []syscall.SysProcIDMap {
	return []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(r.Base), Size: int(r.Size)}}
}

// Create makes a user namespace whose uid and gid maps are r and pins it
// at path (a file Create makes there, which must not exist, with the
// namespace bind-mounted onto it, as `ip netns add` does for network
// namespaces). setgroups(2) is allowed in it: processes in containers call
// it (runc, su, sshd), and "deny" would be permanent.
//
// With netPath, a network namespace owned by the new user namespace is
// made in the same step and pinned there: the sandbox's bridge namespace,
// in which container root has CAP_NET_ADMIN, can mount sysfs and open raw
// sockets.
//
// The namespaces live as long as a pin, an open descriptor or a process
// refers to them; Unpin releases the pins. No process is left running.
func Create(ctx context.Context, r Range, path, netPath string) (err error) {
	if err := r.Validate(); err != nil {
		return err
	}
	flags := uintptr(unix.CLONE_NEWUSER)
	if netPath != "" {
		flags |= unix.CLONE_NEWNET
	}
	h, err := startHelper(ctx, "hold", &syscall.SysProcAttr{
		Cloneflags:                 flags,
		UidMappings:                r.sysMaps(),
		GidMappings:                r.sysMaps(),
		GidMappingsEnableSetgroups: true,
	}, nil)
	if err != nil {
		return fmt.Errorf("create user namespace %s: %w", r, err)
	}
	var pinned []string
	defer func() {
		if rerr := h.release(); rerr != nil && err == nil {
			err = fmt.Errorf("create user namespace %s: %w", r, rerr)
		}
		if err != nil {
			for _, p := range pinned {
				_ = Unpin(p)
			}
		}
	}()
	for _, p := range []struct{ kind, path string }{{"user", path}, {"net", netPath}} {
		if p.path == "" {
			continue
		}
		if err := pin(h.nsPath(p.kind), p.path); err != nil {
			return fmt.Errorf("create user namespace %s: %w", r, err)
		}
		pinned = append(pinned, p.path)
	}
	return nil
}

// NewNetNS makes a network namespace owned by the user namespace pinned
// at userns (see Create) and pins it at path, which must not exist.
// Processes of the host (labd's netlink handles, through setns from a
// host thread) configure it as any other; container root in that user
// namespace administers it too.
func NewNetNS(ctx context.Context, userns, path string) (err error) {
	u, err := Open(userns)
	if err != nil {
		return fmt.Errorf("new network namespace: %w", err)
	}
	defer u.Close()
	h, err := startHelper(ctx, "netns", nil, u)
	if err != nil {
		return fmt.Errorf("new network namespace in %s: %w", userns, err)
	}
	defer func() {
		if rerr := h.release(); rerr != nil && err == nil {
			err = fmt.Errorf("new network namespace in %s: %w", userns, rerr)
			_ = Unpin(path)
		}
	}()
	if err := pin(h.nsPath("net"), path); err != nil {
		return fmt.Errorf("new network namespace in %s: %w", userns, err)
	}
	return nil
}

// pin bind-mounts the namespace file src onto a new file at path.
func pin(src, path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return fmt.Errorf("pin namespace: %w", err)
	}
	f.Close()
	if err := unix.Mount(src, path, "", unix.MS_BIND, ""); err != nil {
		os.Remove(path)
		return fmt.Errorf("pin namespace at %s: %w", path, err)
	}
	return nil
}

// Unpin detaches a pin made by Create or NewNetNS and removes its file.
// A path that is not pinned is just removed; a missing one is no error.
func Unpin(path string) error {
	err := unix.Unmount(path, unix.MNT_DETACH)
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unpin namespace %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("unpin namespace %s: %w", path, err)
	}
	return nil
}

// ioctls of namespace files (linux/nsfs.h).
const (
	nsGetUserNS = 0xb701 // _IO(0xb7, 0x1): the owning user namespace
	nsGetNSType = 0xb703 // _IO(0xb7, 0x3): CLONE_NEW* of the namespace
)

// Open opens the user namespace at path (a pin, or /proc/PID/ns/user) for
// setns(2) or mount_setattr(2), refusing anything else.
func Open(path string) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open user namespace: %w", err)
	}
	t, err := unix.IoctlRetInt(int(f.Fd()), nsGetNSType)
	if err != nil || t != unix.CLONE_NEWUSER {
		f.Close()
		return nil, fmt.Errorf("open user namespace: %s is not a user namespace", path)
	}
	return f, nil
}

// CheckOwner returns nil when the namespace at nsPath (of any type other
// than user) is owned by the user namespace at userns: the one whose root
// has capabilities over it.
func CheckOwner(nsPath, userns string) error {
	u, err := Open(userns)
	if err != nil {
		return err
	}
	defer u.Close()
	n, err := os.Open(nsPath)
	if err != nil {
		return fmt.Errorf("open namespace: %w", err)
	}
	defer n.Close()
	ofd, err := unix.IoctlRetInt(int(n.Fd()), nsGetUserNS)
	if err != nil {
		return fmt.Errorf("owner of namespace %s: %w", nsPath, err)
	}
	defer unix.Close(ofd)
	var a, b unix.Stat_t
	if err := unix.Fstat(ofd, &a); err != nil {
		return fmt.Errorf("owner of namespace %s: %w", nsPath, err)
	}
	if err := unix.Fstat(int(u.Fd()), &b); err != nil {
		return fmt.Errorf("user namespace %s: %w", userns, err)
	}
	if a.Dev != b.Dev || a.Ino != b.Ino {
		return fmt.Errorf("namespace %s is not owned by the user namespace %s", nsPath, userns)
	}
	return nil
}
