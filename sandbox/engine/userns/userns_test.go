package userns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/labd/labd/internal/testenv"
)

// testRange is well away from any range labd hands out by default.
var testRange = Range{Base: 200000000 + uint32(os.Getpid()%1000)*65536, Size: 65536}

func TestRangeValidate(t *testing.T) {
	for _, tc := range []struct {
		r    Range
		want string // "" = valid
	}{
		{Range{Base: 100000000, Size: 65536}, ""},
		{Range{Base: 1, Size: 1}, ""},
		{Range{Base: 1<<32 - 65537, Size: 65536}, ""},
		{Range{Base: 100000000, Size: 0}, "size is 0"},
		{Range{Base: 0, Size: 65536}, "container root would be host root"},
		{Range{Base: 1<<32 - 65536, Size: 65536}, "ends past the largest id"},
		{Range{Base: 1<<32 - 1, Size: 1}, "ends past the largest id"},
	} {
		err := tc.r.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v.Validate() = %v, want %q", tc.r, err, tc.want)
		}
	}
	r := Range{Base: 1000, Size: 10}
	for h, want := range map[uint32]bool{999: false, 1000: true, 1009: true, 1010: false, 0: false} {
		if got := r.Contains(h); got != want {
			t.Errorf("%v.Contains(%d) = %v", r, h, got)
		}
	}
	if got := r.String(); got != "0 1000 10" {
		t.Errorf("String() = %q", got)
	}
}

// leaks is what a test may leave behind: pins under its directory and
// helper processes.
type leaks struct{ mounts, children int }

func countLeaks(dir string) leaks {
	var l leaks
	b, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, dir) {
			l.mounts++
		}
	}
	self := strconv.Itoa(os.Getpid())
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(st)
		if i := strings.LastIndexByte(s, ')'); i >= 0 {
			if f := strings.Fields(s[i+1:]); len(f) > 1 && f[1] == self {
				l.children++
			}
		}
	}
	return l
}

// testDir returns a directory for pins and checks at the end of the test
// that nothing is mounted in it and no helper runs.
func testDir(t *testing.T) string {
	t.Helper()
	testenv.Root(t, "user namespaces")
	dir := t.TempDir()
	before := countLeaks(dir)
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for countLeaks(dir) != before && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if after := countLeaks(dir); after != before {
			t.Errorf("leaked: before %+v, after %+v", before, after)
		}
	})
	return dir
}

func unpin(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if err := Unpin(p); err != nil {
			t.Error(err)
		}
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Unpin left %s: %v", p, err)
		}
	}
}

// idmappedOwners idmaps dir with the user namespace at userns and returns
// the owners its files show through that mount: what the namespace's
// mapping makes of them.
func idmappedOwners(t *testing.T, userns, dir string, names ...string) []uint32 {
	t.Helper()
	u, err := Open(userns)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	tree, err := unix.OpenTree(unix.AT_FDCWD, dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(tree)
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(u.Fd())}); err != nil {
		t.Fatalf("mount_setattr(MOUNT_ATTR_IDMAP): %v", err)
	}
	var out []uint32
	for _, n := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(tree, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			t.Fatal(err)
		}
		out = append(out, st.Uid, st.Gid)
	}
	return out
}

func TestCreate(t *testing.T) {
	dir := testDir(t)
	user, bridge := filepath.Join(dir, "userns"), filepath.Join(dir, "bridge")
	if err := Create(context.Background(), testRange, user, bridge); err != nil {
		t.Fatal(err)
	}
	defer unpin(t, user, bridge)

	// The mapping: on-disk 0 is Base, Size-1 is the range's last id, Size
	// and above are not mapped (the overflow id).
	files := t.TempDir()
	for name, id := range map[string]int{"zero": 0, "last": int(testRange.Size) - 1, "above": int(testRange.Size)} {
		p := filepath.Join(files, name)
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(p, id, id); err != nil {
			t.Fatal(err)
		}
	}
	got := idmappedOwners(t, user, files, "zero", "last", "above")
	last := testRange.Base + testRange.Size - 1
	if want := []uint32{testRange.Base, testRange.Base, last, last, 65534, 65534}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("owners through the idmapped mount: %v, want %v", got, want)
	}

	if err := CheckOwner(bridge, user); err != nil {
		t.Errorf("bridge netns: %v", err)
	}
	for _, tc := range []struct{ ns, owner, want string }{
		{"/proc/self/ns/net", user, "is not owned by the user namespace"},
		{bridge, "/proc/self/ns/user", "is not owned by the user namespace"},
		{bridge, bridge, "is not a user namespace"},
		{bridge, filepath.Join(dir, "missing"), "no such file"},
	} {
		if err := CheckOwner(tc.ns, tc.owner); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CheckOwner(%s, %s) = %v, want %q", tc.ns, tc.owner, err, tc.want)
		}
	}

	// A second sandbox gets a different namespace.
	other := filepath.Join(dir, "userns2")
	if err := Create(context.Background(), Range{Base: testRange.Base + testRange.Size, Size: 65536}, other, ""); err != nil {
		t.Fatal(err)
	}
	defer unpin(t, other)
	if nsID(t, other) == nsID(t, user) {
		t.Errorf("two Creates pinned the same namespace")
	}
	if err := CheckOwner(bridge, other); err == nil {
		t.Errorf("the bridge netns is owned by the other sandbox's namespace")
	}
}

func nsID(t *testing.T, path string) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

func TestCreateRefusals(t *testing.T) {
	dir := testDir(t)
	existing := filepath.Join(dir, "existing")
	if err := os.WriteFile(existing, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	fresh := filepath.Join(dir, "fresh")
	for _, tc := range []struct {
		name          string
		r             Range
		user, net     string
		want          string
		freshLeftover bool
	}{
		{"invalid range", Range{Base: 0, Size: 65536}, fresh, "", "container root would be host root", false},
		{"user pin exists", testRange, existing, "", "file exists", false},
		// The user pin made first is released again.
		{"net pin exists", testRange, fresh, existing, "file exists", false},
		{"no directory", testRange, filepath.Join(dir, "no/such/dir"), "", "no such file", false},
	} {
		err := Create(context.Background(), tc.r, tc.user, tc.net)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Create = %v, want %q", tc.name, err, tc.want)
		}
		if _, err := os.Lstat(fresh); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: left %s behind", tc.name, fresh)
			unpin(t, fresh)
		}
	}
	if b, err := os.ReadFile(existing); err != nil || string(b) != "keep" {
		t.Errorf("existing file changed: %q, %v", b, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Create(ctx, testRange, fresh, ""); !errors.Is(err, context.Canceled) {
		t.Errorf("Create with a cancelled context = %v", err)
	}
}

func TestNewNetNS(t *testing.T) {
	dir := testDir(t)
	user, bridge := filepath.Join(dir, "userns"), filepath.Join(dir, "bridge")
	if err := Create(context.Background(), testRange, user, bridge); err != nil {
		t.Fatal(err)
	}
	defer unpin(t, user, bridge)
	ctr := filepath.Join(dir, "ctr")
	if err := NewNetNS(context.Background(), user, ctr); err != nil {
		t.Fatal(err)
	}
	defer unpin(t, ctr)
	if err := CheckOwner(ctr, user); err != nil {
		t.Error(err)
	}
	if nsID(t, ctr) == nsID(t, bridge) {
		t.Error("NewNetNS pinned the bridge namespace again")
	}

	for _, tc := range []struct{ name, user, path, want string }{
		{"not a user namespace", bridge, filepath.Join(dir, "x"), "is not a user namespace"},
		{"missing user namespace", filepath.Join(dir, "missing"), filepath.Join(dir, "x"), "no such file"},
		{"pin exists", user, ctr, "file exists"},
	} {
		if err := NewNetNS(context.Background(), tc.user, tc.path); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: NewNetNS = %v, want %q", tc.name, err, tc.want)
		}
	}
	if _, err := os.Lstat(filepath.Join(dir, "x")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused NewNetNS left its pin")
	}
	if err := CheckOwner(ctr, user); err != nil {
		t.Errorf("the refused NewNetNS changed the existing pin: %v", err)
	}
}

// TestHostConfiguresOwnedNetNS does from the host what package network
// does for a sandbox: a bridge in the sandbox's namespace, a veth pair to a
// container's namespace, addresses, a sysctl, and traffic between them.
func TestHostConfiguresOwnedNetNS(t *testing.T) {
	dir := testDir(t)
	user, bridge, ctr := filepath.Join(dir, "userns"), filepath.Join(dir, "bridge"), filepath.Join(dir, "ctr")
	if err := Create(context.Background(), testRange, user, bridge); err != nil {
		t.Fatal(err)
	}
	defer unpin(t, user, bridge)
	if err := NewNetNS(context.Background(), user, ctr); err != nil {
		t.Fatal(err)
	}
	defer unpin(t, ctr)

	bns, err := netns.GetFromPath(bridge)
	if err != nil {
		t.Fatal(err)
	}
	defer bns.Close()
	cns, err := netns.GetFromPath(ctr)
	if err != nil {
		t.Fatal(err)
	}
	defer cns.Close()
	bnl, err := netlink.NewHandleAt(bns)
	if err != nil {
		t.Fatal(err)
	}
	defer bnl.Close()
	cnl, err := netlink.NewHandleAt(cns)
	if err != nil {
		t.Fatal(err)
	}
	defer cnl.Close()

	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br-test"}}
	if err := bnl.LinkAdd(br); err != nil {
		t.Fatalf("add bridge: %v", err)
	}
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	brLink, err := bnl.LinkByName("br-test")
	must("find bridge", err)
	must("address bridge", bnl.AddrAdd(brLink, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(172, 30, 99, 1), Mask: net.CIDRMask(24, 32)}}))
	must("bridge up", bnl.LinkSetUp(brLink))
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: "veth-test", MasterIndex: brLink.Attrs().Index},
		PeerName:      "eth0",
		PeerNamespace: netlink.NsFd(int(cns)),
	}
	must("add veth", bnl.LinkAdd(veth))
	must("veth up", bnl.LinkSetUp(veth))
	for _, name := range []string{"lo", "eth0"} {
		l, err := cnl.LinkByName(name)
		must("find "+name, err)
		if name == "eth0" {
			must("address eth0", cnl.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(172, 30, 99, 2), Mask: net.CIDRMask(24, 32)}}))
		}
		must(name+" up", cnl.LinkSetUp(l))
	}
	// What network.New writes in the bridge namespace.
	must("ip_forward", inNetNS(bns, func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("0\n"), 0o644)
	}))

	var ln net.Listener
	must("listen in the bridge namespace", inNetNS(bns, func() (err error) {
		ln, err = net.Listen("tcp4", "172.30.99.1:0")
		return err
	}))
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte("hello from the bridge"))
			c.Close()
		}
	}()
	var got []byte
	must("connect from the container namespace", inNetNS(cns, func() error {
		c, err := net.DialTimeout("tcp4", ln.Addr().String(), 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		got = make([]byte, 64)
		n, err := c.Read(got)
		got = got[:n]
		return err
	}))
	if string(got) != "hello from the bridge" {
		t.Errorf("read %q", got)
	}
}

// inNetNS runs fn on a thread in ns; the thread is discarded afterwards.
func inNetNS(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		goruntime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := netns.Set(ns); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

func BenchmarkCreate(b *testing.B) {
	testenv.Root(b, "user namespaces")
	dir := b.TempDir()
	for b.Loop() {
		user, bridge := filepath.Join(dir, "userns"), filepath.Join(dir, "bridge")
		if err := Create(context.Background(), testRange, user, bridge); err != nil {
			b.Fatal(err)
		}
		if err := errors.Join(Unpin(user), Unpin(bridge)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNewNetNS(b *testing.B) {
	testenv.Root(b, "user namespaces")
	dir := b.TempDir()
	user := filepath.Join(dir, "userns")
	if err := Create(context.Background(), testRange, user, ""); err != nil {
		b.Fatal(err)
	}
	defer Unpin(user)
	for b.Loop() {
		p := filepath.Join(dir, "ctr")
		if err := NewNetNS(context.Background(), user, p); err != nil {
			b.Fatal(err)
		}
		if err := Unpin(p); err != nil {
			b.Fatal(err)
		}
	}
}
