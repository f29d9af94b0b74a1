// Package diskquota gives a sandbox a file system of its own, of a fixed
// size: a sparse file formatted as ext4 and loop-mounted. Whatever the
// sandbox writes there (its workspace, its containers' writable layers and
// logs, its volumes, its build scratch) fills that file system and no
// other, and a write beyond it is the kernel's own ENOSPC, "No space left
// on device", in the learner's shell as on any full disk.
//
// Why a loop file system and not project quotas: project quotas need the
// data dir's file system mounted with prjquota (ext4) or pquota (XFS),
// which is a host setting labd cannot make (this machine's ext4 has
// neither), while loop devices and mkfs.ext4 (e2fsprogs is in every Debian
// install) are there wherever labd runs as root on the host. A loop file
// system also makes cleaning up after a kill -9 a matter of unmounting one
// directory. Where there are no loop devices (labd's own container image
// gets no devices), Available says why and the engine falls back to
// accounting (sandbox/engine/quota.go).
package diskquota

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/labd/labd/sandbox/engine/mountinfo"
	"golang.org/x/sys/unix"
)

// Available says whether this process can make loop file systems: nil, or
// why not.
func Available() error {
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		return fmt.Errorf("no mkfs.ext4 (apt-get install e2fsprogs): %w", err)
	}
	f, err := os.OpenFile("/dev/loop-control", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("no loop devices: %w", err)
	}
	f.Close()
	return nil
}

// Disk is a mounted sandbox file system.
type Disk struct {
	Image string // the sparse file
	Dir   string // where it is mounted
	Size  int64  // bytes of the file system (the quota)
}

// Mount mounts the file system in image at dir, making image (sparse, of
// size bytes) and formatting it first if it does not exist, and growing it
// if it is smaller than size. Whatever a killed process left mounted at
// dir, or at workspace (the bind of its workspace: BindWorkspace), is
// detached first. The loop device goes with the last unmount.
func Mount(ctx context.Context, image, dir, workspace string, size int64) (*Disk, error) {
	if size < MinSize {
		return nil, fmt.Errorf("disk quota %d bytes is below the minimum %d", size, MinSize)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("disk mount point: %w", err)
	}
	if workspace != "" {
		Unmount(workspace)
	}
	Unmount(dir)
	// Two loop devices on one ext4 image would corrupt it. A device is
	// still attached when another mount namespace holds a copy of the
	// mount (a process that unshared while the disk was mounted), or for
	// a moment after the last unmount (autoclear is asynchronous): wait a
	// little, then mount that same device, which is the same file system.
	for i := 0; i < 50 && attached(image) != ""; i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if dev := attached(image); dev != "" {
		if err := unix.Mount(dev, dir, "ext4", unix.MS_NOSUID|unix.MS_NODEV, "errors=remount-ro"); err != nil {
			return nil, fmt.Errorf("mount %s (%s, still attached) at %s: %w", dev, image, dir, err)
		}
		return &Disk{Image: image, Dir: dir, Size: size}, nil
	}
	fresh := false
	fi, err := os.Stat(image)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := mkfs(ctx, image, size); err != nil {
			return nil, err
		}
		fresh = true
	case err != nil:
		return nil, fmt.Errorf("disk image: %w", err)
	case fi.Size() < size:
		// A lab (or the server) now allows more: grow the file and the
		// file system in it, offline (ext4's online resize is refused on
		// some kernels' loop devices).
		if err := grow(ctx, image, size); err != nil {
			return nil, err
		}
	}
	if err := loopMount(image, dir); err != nil {
		if fresh {
			_ = os.Remove(image)
		}
		return nil, err
	}
	return &Disk{Image: image, Dir: dir, Size: size}, nil
}

func grow(ctx context.Context, image string, size int64) error {
	if err := os.Truncate(image, size); err != nil {
		return fmt.Errorf("grow disk image: %w", err)
	}
	// resize2fs wants a checked file system; e2fsck's exit status 1 is
	// "errors corrected".
	out, err := exec.CommandContext(ctx, "e2fsck", "-f", "-p", image).CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 1) {
		return fmt.Errorf("grow disk: e2fsck: %v: %s", err, strings.TrimSpace(string(out)))
	}
	if out, err := exec.CommandContext(ctx, "resize2fs", image).CombinedOutput(); err != nil {
		return fmt.Errorf("grow disk: resize2fs: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// MinSize is the smallest file system Mount makes: ext4's own metadata
// takes a few MiB.
const MinSize = 64 << 20

// mkfs makes image as a sparse file of size bytes and formats it: no
// reserved blocks (the quota is what the learner gets), a small journal (a
// kill -9 of labd leaves it consistent), root-owned root directory.
func mkfs(ctx context.Context, image string, size int64) error {
	tmp := image + ".new"
	_ = os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_EXCL|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("disk image: %w", err)
	}
	err = f.Truncate(size)
	f.Close()
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("disk image: %w", err)
	}
	cmd := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-m", "0", "-J", "size=8",
		"-E", "lazy_itable_init=1,lazy_journal_init=1,root_owner=0:0,nodiscard", tmp)
	if out, err := cmd.CombinedOutput(); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("mkfs.ext4: %v: %s", err, strings.TrimSpace(string(out)))
	}
	if err := os.Rename(tmp, image); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("disk image: %w", err)
	}
	return nil
}

// loopMount attaches image to a free loop device (autoclear: the device is
// released when the file system is unmounted) and mounts it at dir.
func loopMount(image, dir string) error {
	img, err := os.OpenFile(image, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("disk image: %w", err)
	}
	defer img.Close()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("loop devices: %w", err)
	}
	defer ctl.Close()
	// Another process may take the free device between the two calls:
	// try the next one.
	for try := 0; try < 16; try++ {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return fmt.Errorf("free loop device: %w", err)
		}
		dev := fmt.Sprintf("/dev/loop%d", n)
		lf, err := os.OpenFile(dev, os.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("loop device: %w", err)
		}
		cfg := unix.LoopConfig{Fd: uint32(img.Fd())}
		cfg.Info.Flags = unix.LO_FLAGS_AUTOCLEAR
		copy(cfg.Info.File_name[:], image)
		err = unix.IoctlLoopConfigure(int(lf.Fd()), &cfg)
		if errors.Is(err, unix.EBUSY) {
			lf.Close()
			continue
		}
		if err != nil {
			lf.Close()
			return fmt.Errorf("configure %s: %w", dev, err)
		}
		err = unix.Mount(dev, dir, "ext4", unix.MS_NOSUID|unix.MS_NODEV, "errors=remount-ro")
		// Closing the device after the mount (or after a failed one) lets
		// autoclear release it once nothing holds it.
		lf.Close()
		if err != nil {
			return fmt.Errorf("mount %s at %s: %w", dev, dir, err)
		}
		return nil
	}
	return errors.New("no free loop device after 16 tries")
}

// attached names a loop device backed by image ("" if none).
func attached(image string) string {
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err == nil && strings.TrimSpace(string(b)) == image {
			return "/dev/" + filepath.Base(filepath.Dir(filepath.Dir(f)))
		}
	}
	return ""
}

// Unmount detaches whatever is mounted at or below dir, deepest first. The
// loop device of a detached file system is released when its last user
// (a container still ending) lets go.
func Unmount(dir string) {
	mountinfo.UnmountUnder(dir)
	for i := 0; i < 8 && mountinfo.IsMount(dir); i++ {
		if err := unix.Unmount(dir, 0); err != nil {
			_ = unix.Unmount(dir, unix.MNT_DETACH)
		}
	}
}

// Close unmounts d.
func (d *Disk) Close() { Unmount(d.Dir) }

// Usage is how much of d is used and how big it is, in bytes.
func (d *Disk) Usage() (used, total int64, err error) { return Usage(d.Dir) }

// Usage reports the file system at dir: bytes used and its size.
func Usage(dir string) (used, total int64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	total = int64(st.Blocks) * st.Bsize
	used = total - int64(st.Bfree)*st.Bsize
	return used, total, nil
}

// BindWorkspace bind-mounts sub (a directory of a mounted Disk) at
// workspace, moving what workspace held into sub first (a workspace from
// before quotas, or from a server without them): nothing a learner had is
// lost, and if it does not fit, the copy is undone and the error says so.
func BindWorkspace(ctx context.Context, sub, workspace string) error {
	if err := os.MkdirAll(sub, 0o700); err != nil {
		return fmt.Errorf("workspace on disk: %w", err)
	}
	if err := os.MkdirAll(workspace, 0o700); err != nil {
		return fmt.Errorf("workspace: %w", err)
	}
	Unmount(workspace)
	if err := MoveInto(ctx, workspace, sub); err != nil {
		return fmt.Errorf("move the workspace onto the sandbox's disk: %w", err)
	}
	if err := unix.Mount(sub, workspace, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind workspace: %w", err)
	}
	return nil
}

// MoveInto moves what directory from holds into to (on another file
// system): copied with owners, modes and links, then removed from from.
// A copy that fails (to is full) is undone and from keeps everything.
func MoveInto(ctx context.Context, from, to string) error {
	ents, err := os.ReadDir(from)
	if errors.Is(err, os.ErrNotExist) || (err == nil && len(ents) == 0) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := os.MkdirAll(to, 0o700); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, "cp", "-a", "--", from+"/.", to+"/").CombinedOutput(); err != nil {
		clearDir(to)
		return fmt.Errorf("cp: %v: %s", err, strings.TrimSpace(string(out)))
	}
	clearDir(from)
	return nil
}

func clearDir(dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		_ = os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}
