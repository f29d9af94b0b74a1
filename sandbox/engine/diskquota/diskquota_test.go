package diskquota

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labd/labd/internal/testenv"
	"github.com/labd/labd/sandbox/engine/mountinfo"
	"golang.org/x/sys/unix"
)

// TestMountFillsAndFrees mounts a 64 MiB disk with a workspace bound from
// it, fills it (ENOSPC, the host untouched), frees it, remounts it (as a
// restart after kill -9 does, over what is still mounted) and unmounts:
// no mount and no loop device is left.
func TestMountFillsAndFrees(t *testing.T) {
	testenv.Root(t, "to mount loop file systems")
	if err := Available(); err != nil {
		testenv.Missing(t, "loop file systems: %v", err)
	}
	ctx := context.Background()
	base := t.TempDir()
	img, dir, ws := filepath.Join(base, "disk.ext4"), filepath.Join(base, "disk"), filepath.Join(base, "workspace")
	t.Cleanup(func() { Unmount(ws); Unmount(dir) })
	if err := os.MkdirAll(ws, 0o700); err != nil {
		t.Fatal(err)
	}
	// A workspace from before quotas moves onto the disk.
	if err := os.WriteFile(filepath.Join(ws, "kept"), []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := Mount(ctx, img, dir, ws, MinSize)
	if err != nil {
		t.Fatal(err)
	}
	if err := BindWorkspace(ctx, filepath.Join(dir, "workspace"), ws); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(ws, "kept")); err != nil || string(b) != "hello" {
		t.Fatalf("workspace file after the move: %q, %v", b, err)
	}
	_, total, err := d.Usage()
	if err != nil || total > MinSize || total < MinSize*7/10 {
		t.Fatalf("disk size %d (%v), want about %d", total, err, MinSize)
	}
	// fallocate beyond the quota, then fill it with writes.
	f, err := os.Create(filepath.Join(ws, "big"))
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Fallocate(int(f.Fd()), 0, 0, 1<<30); !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("fallocate 1 GiB on a 64 MiB disk: %v, want ENOSPC", err)
	}
	buf := make([]byte, 1<<20)
	for i := 0; ; i++ {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, unix.ENOSPC) || !strings.Contains(err.Error(), "no space left on device") {
				t.Fatalf("write beyond the quota: %v", err)
			}
			break
		}
		if i > 128 {
			t.Fatal("128 MiB written to a 64 MiB disk")
		}
	}
	f.Close()
	if err := os.Remove(filepath.Join(ws, "big")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ws, "after"), buf, 0o600); err != nil {
		t.Fatalf("write after rm: %v", err)
	}
	// Mounting again over the live mounts reuses the image.
	d, err = Mount(ctx, img, dir, ws, 2*MinSize)
	if err != nil {
		t.Fatal(err)
	}
	if err := BindWorkspace(ctx, filepath.Join(dir, "workspace"), ws); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(ws, "after")); err != nil {
		t.Fatalf("workspace after a remount: %v", err)
	}
	if _, total, _ := d.Usage(); total <= MinSize {
		t.Fatalf("disk not grown to %d: %d", 2*MinSize, total)
	}
	// A process that unshared its mount namespace while the disk was
	// mounted holds a copy of it, and so the loop device: mounting again
	// uses that same device (one file system), not a second one.
	holder := exec.Command("unshare", "-m", "sleep", "60")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = holder.Process.Kill(); _ = holder.Wait() }()
	// Wait until it runs sleep in its own namespace.
	self, _ := os.Readlink("/proc/self/ns/mnt")
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", holder.Process.Pid))
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", holder.Process.Pid))
		if ns != "" && ns != self && strings.TrimSpace(string(comm)) == "sleep" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("unshare -m sleep did not start")
		}
	}
	Unmount(ws)
	d.Close()
	held := attached(img)
	if held == "" {
		t.Fatal("no loop device held by the unshared process")
	}
	if d, err = Mount(ctx, img, dir, ws, 2*MinSize); err != nil {
		t.Fatal(err)
	}
	if src, _ := mountinfo.Source(dir); src != held {
		t.Errorf("mounted %s, want the held device %s", src, held)
	}
	_ = holder.Process.Kill()
	_ = holder.Wait()
	Unmount(ws)
	d.Close()
	if m := mountinfo.Under(base); len(m) > 0 {
		t.Fatalf("left mounted: %v", m)
	}
	// Autoclear releases the device a moment after the last unmount.
	for deadline := time.Now().Add(time.Minute); attached(img) != ""; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("loop device %s still attached to the image after the last unmount", attached(img))
		}
	}
}
