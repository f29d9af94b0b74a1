package enginebox_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/labd/labd/sandbox"
	"github.com/labd/labd/sandbox/engine/api"
	"github.com/labd/labd/sandbox/engine/mountinfo"
	"github.com/labd/labd/sandbox/enginebox"
)

// TestSandboxDiskQuota fills a 256 MiB sandbox disk every way a learner
// can: the workspace (fallocate, dd), the shell's own writable layer, a
// container's writable layer, a volume and a build's RUN step. Each gets
// "No space left on device"; the other sandbox writes on; after rm the
// learner writes again; the workspace is kept after Destroy, and when the
// engine closes no mount is left.
func TestSandboxDiskQuota(t *testing.T) {
	var data string
	t.Cleanup(func() {
		// After limitedSandboxes' cleanup (Manager and Shared closed).
		if m := mountinfo.Under(data); data != "" && len(m) > 0 {
			t.Errorf("left mounted after the engine closed: %v", m)
		}
	})
	mgr := limitedSandboxes(t, enginebox.Limits{Disk: 256 << 20}, api.Options{})
	ctx := context.Background()
	a, err := mgr.GetOrCreate(ctx, "disk-a", "alice")
	if err != nil {
		t.Fatal(err)
	}
	b, err := mgr.GetOrCreateWith(ctx, "disk-b", "bob", sandbox.CreateOptions{Resources: sandbox.Resources{Disk: 512 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	data = filepath.Dir(filepath.Dir(a.Workspace()))
	if n := len(mountinfo.Under(data)); n != 4 {
		t.Errorf("%d mounts under the sandboxes' dir, want 4 (a disk and its workspace each): %v", n, mountinfo.Under(data))
	}
	const enospc = "No space left on device"
	fills := []struct{ name, script string }{
		{"fallocate in the workspace", "fallocate -l 30G ~/big 2>&1; rm -f ~/big"},
		{"dd in the workspace", "dd if=/dev/zero of=$HOME/fill bs=1M 2>&1; rm -f ~/fill"},
		{"dd in the shell's /var/tmp", "dd if=/dev/zero of=/var/tmp/fill bs=1M 2>&1; rm -f /var/tmp/fill"},
		{"container's writable layer", "docker run --rm busybox dd if=/dev/zero of=/fill bs=1M 2>&1"},
		{"volume", "docker run --rm -v big:/v busybox dd if=/dev/zero of=/v/fill bs=1M 2>&1; docker volume rm big >/dev/null"},
		{"build step", "mkdir -p ~/b && printf 'FROM busybox\\nRUN dd if=/dev/zero of=/fill bs=1M count=400\\n' > ~/b/Dockerfile && docker build -q ~/b 2>&1; rm -rf ~/b"},
	}
	for _, f := range fills {
		out, _ := run(t, a, f.script)
		if !strings.Contains(out, enospc) {
			t.Errorf("%s: %q, want %q", f.name, out, enospc)
		}
		if out, code := run(t, a, "head -c 1048576 /dev/zero > ~/after && rm ~/after && echo ok"); code != 0 || !strings.Contains(out, "ok") {
			t.Errorf("after %s and rm: %q, want to write again", f.name, out)
		}
	}
	if out, code := run(t, a, "echo kept > ~/kept.txt"); code != 0 {
		t.Fatalf("write kept.txt: %q", out)
	}
	if out, code := run(t, b, "dd if=/dev/zero of=$HOME/f bs=1M count=300 2>/dev/null && df -m ~ | tail -1"); code != 0 {
		t.Errorf("the other sandbox (512 MiB) writes 300 MiB: exit %d, %q", code, out)
	}
	for _, id := range []string{"disk-a", "disk-b"} {
		if err := mgr.Destroy(ctx, id, sandbox.ReasonAdmin); err != nil {
			t.Fatal(err)
		}
	}
	// Ended, the sandboxes hold no mount; their workspaces are read by
	// mounting their disks for the while (the instructor's Files view).
	if n := len(mountinfo.Under(data)); n != 0 {
		t.Errorf("%d mounts under the sandboxes' dir after Destroy, want 0: %v", n, mountinfo.Under(data))
	}
	dir, release, err := mgr.OpenWorkspace(ctx, "disk-a")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "kept.txt")); err != nil || string(b) != "kept\n" {
		t.Errorf("workspace after Destroy: %q, %v", b, err)
	}
	release()
	if n := len(mountinfo.Under(data)); n != 0 {
		t.Errorf("%d mounts under the sandboxes' dir after reading a kept workspace, want 0: %v", n, mountinfo.Under(data))
	}
	// The sandbox made again finds its workspace on its disk.
	a, err = mgr.GetOrCreate(ctx, "disk-a", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if out, _ := run(t, a, "cat ~/kept.txt; df -m ~ | tail -1"); !strings.Contains(out, "kept") {
		t.Errorf("workspace of the sandbox made again: %q", out)
	}
	if n := len(mountinfo.Under(data)); n != 2 {
		t.Errorf("%d mounts under the sandboxes' dir after a re-create, want its disk and workspace: %v", n, mountinfo.Under(data))
	}
}
