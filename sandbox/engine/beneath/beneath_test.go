package beneath

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/labd/labd/internal/testenv"
	"github.com/labd/labd/sandbox/engine/userns"
	"golang.org/x/sys/unix"
)

// tree makes a root with a file, a directory, and links pointing out of
// it in every way, and an outside directory with a secret.
func tree(t *testing.T) (root, outside string) {
	t.Helper()
	base := t.TempDir()
	root, outside = filepath.Join(base, "root"), filepath.Join(base, "outside")
	for _, d := range []string{root + "/dir/sub", outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for p, body := range map[string]string{root + "/dir/file": "inside\n", outside + "/secret": "outside\n", root + "/secret": "root-secret\n"} {
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		"abs":      "/",                         // the host's root, from the root's point of view the root itself
		"dotdot":   "../../../../../../..",      // climbs, stays at the root
		"out":      outside,                     // an absolute path outside
		"rel-out":  "../outside",                // a relative way out
		"dir/back": "../dir",                    // inside, fine
		"magic":    "/proc/self/root" + outside, // a magic link out
	} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	return root, outside
}

// read reads what an O_PATH handle names, reopened through /proc.
func read(t *testing.T, f *os.File) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/fd/" + strconv.Itoa(int(f.Fd())))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestOpen(t *testing.T) {
	root, _ := tree(t)
	for _, tc := range []struct {
		rel, want string // want: file content, or "ERR"
	}{
		{"dir/file", "inside\n"},
		{"/dir/file", "inside\n"},
		{"dir/back/file", "inside\n"},
		{"abs/secret", "root-secret\n"},    // / is the root
		{"dotdot/secret", "root-secret\n"}, // .. stops at the root
		{"../../secret", "root-secret\n"},  // so does a .. in rel
		{"out/secret", "ERR"},              // the outside path does not exist inside
		{"rel-out/secret", "ERR"},          // ../outside from the root is the root's outside: absent
		{"magic/secret", "ERR"},            // no magic links
		{"dir/missing", "ERR"},
	} {
		f, err := Open(root, tc.rel)
		if tc.want == "ERR" {
			if err == nil {
				t.Errorf("Open(%q) = %s, want an error", tc.rel, read(t, f))
				f.Close()
			}
			continue
		}
		if err != nil {
			t.Errorf("Open(%q): %v", tc.rel, err)
			continue
		}
		if got := read(t, f); got != tc.want {
			t.Errorf("Open(%q) reads %q, want %q", tc.rel, got, tc.want)
		}
		f.Close()
	}
}

func TestMkdirAll(t *testing.T) {
	root, outside := tree(t)
	for _, rel := range []string{"new/a/b", "abs/x/y", "dotdot/z"} {
		if err := MkdirAll(root, rel); err != nil {
			t.Errorf("MkdirAll(%q): %v", rel, err)
		}
	}
	// A symlink to a path the root does not have: refused, not created
	// outside.
	if err := MkdirAll(root, "out/created"); err == nil {
		t.Errorf("MkdirAll through a dangling symlink succeeded")
	}
	for _, p := range []string{"new/a/b", "x/y", "z"} {
		if st, err := os.Stat(filepath.Join(root, p)); err != nil || !st.IsDir() {
			t.Errorf("%s not created inside the root: %v", p, err)
		}
	}
	// "out" is an absolute symlink: inside the root it names <root>/<outside>.
	if _, err := os.Stat(filepath.Join(outside, "created")); err == nil {
		t.Errorf("MkdirAll followed a symlink out of the root")
	}
	if err := MkdirAll(root, "dir/file/below"); err == nil {
		t.Errorf("MkdirAll through a regular file succeeded")
	}
}

func TestPin(t *testing.T) {
	testenv.Root(t, "mounts")
	root, outside := tree(t)
	base := t.TempDir()
	// Pin the directory, then swap it for a symlink to / and to the
	// outside: the pinned mount still shows the original directory.
	target := filepath.Join(base, "pinned")
	if err := Pin(root, "dir", target); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Unpin(target) })
	if err := os.Rename(filepath.Join(root, "dir"), filepath.Join(root, "dir.old")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "dir")); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(target, "file")); err != nil || string(b) != "inside\n" {
		t.Errorf("pinned dir after the swap reads %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(target, "secret")); err == nil {
		t.Errorf("the pinned dir shows the outside after the swap")
	}
	// Pinning the swapped path now resolves the symlink inside the root:
	// <root>/<outside path> does not exist.
	if err := Pin(root, "dir", filepath.Join(base, "pinned2")); err == nil {
		Unpin(filepath.Join(base, "pinned2"))
		t.Errorf("pinning a symlink to an outside path succeeded")
	}
	// A file pins onto a file.
	ft := filepath.Join(base, "file")
	if err := Pin(root, "dir.old/file", ft); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(ft); string(b) != "inside\n" {
		t.Errorf("pinned file reads %q", b)
	}
	if err := Unpin(ft); err != nil {
		t.Error(err)
	}
	// Devices and FIFOs are not pinned.
	if err := unix.Mkfifo(filepath.Join(root, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(filepath.Join(root, "zero"), unix.S_IFCHR|0o644, int(unix.Mkdev(1, 5))); err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{"fifo", "zero"} {
		if err := Pin(root, rel, filepath.Join(base, rel)); err == nil || !strings.Contains(err.Error(), "not a directory or a regular file") {
			Unpin(filepath.Join(base, rel))
			t.Errorf("Pin(%s) = %v, want a refusal", rel, err)
		}
	}
	if err := Unpin(target); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(target); err == nil {
		t.Errorf("Unpin left %s", target)
	}
}

func TestPinIDMapped(t *testing.T) {
	testenv.Root(t, "mounts")
	base := t.TempDir()
	ids := userns.Range{Base: 300000000, Size: 65536}
	nsPath := filepath.Join(base, "userns")
	if err := userns.Create(context.Background(), ids, nsPath, ""); err != nil {
		t.Fatal(err)
	}
	defer userns.Unpin(nsPath)
	ns, err := userns.Open(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()

	root := filepath.Join(base, "root")
	if err := os.MkdirAll(filepath.Join(root, "ws"), 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(root, "ws", "by1000")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(file, 1000, 1000); err != nil {
		t.Fatal(err)
	}
	owner := func(p string) [2]uint32 {
		t.Helper()
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		return [2]uint32{st.Uid, st.Gid}
	}
	tests := []struct {
		name, rel string
		opts      PinOptions
		want      map[string][2]uint32 // path below the target -> owner seen through the pin
	}{
		{"plain", "ws", PinOptions{}, map[string][2]uint32{"": {0, 0}, "by1000": {1000, 1000}}},
		{"idmapped dir", "ws", PinOptions{IDMap: ns}, map[string][2]uint32{"": {ids.Base, ids.Base}, "by1000": {ids.Base + 1000, ids.Base + 1000}}},
		{"idmapped file", "ws/by1000", PinOptions{IDMap: ns}, map[string][2]uint32{"": {ids.Base + 1000, ids.Base + 1000}}},
	}
	for _, tc := range tests {
		target := filepath.Join(base, "pinned-"+strings.ReplaceAll(tc.name, " ", "-"))
		if err := PinWith(root, tc.rel, target, tc.opts); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		for rel, want := range tc.want {
			if got := owner(filepath.Join(target, rel)); got != want {
				t.Errorf("%s: owner of %q through the pin = %v, want %v", tc.name, rel, got, want)
			}
		}
		if err := Unpin(target); err != nil {
			t.Error(err)
		}
	}
	// On disk nothing changed.
	if got := owner(file); got != [2]uint32{1000, 1000} {
		t.Errorf("on-disk owner changed to %v", got)
	}

	// A filesystem without idmapped mounts, at the top or below: refused,
	// and nothing is left at the target.
	sub := filepath.Join(root, "withproc", "proc")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("proc", sub, "proc", 0, ""); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(sub, unix.MNT_DETACH)
	for _, tc := range []struct{ root, rel string }{{"/proc", "sys"}, {root, "withproc"}} {
		target := filepath.Join(base, "refused")
		err := PinWith(tc.root, tc.rel, target, PinOptions{IDMap: ns})
		if err == nil || !strings.Contains(err.Error(), "does not support idmapped mounts") {
			t.Errorf("PinWith(%s, %s) with IDMap = %v, want a refusal", tc.root, tc.rel, err)
		}
		if _, err := os.Lstat(target); err == nil {
			t.Errorf("refused PinWith left %s", target)
			Unpin(target)
		}
	}
}
