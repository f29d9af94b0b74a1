package runtime

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	goruntime "runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/labd/labd/sandbox/engine/layer"
	"github.com/labd/labd/sandbox/engine/userns"
)

// testIDs is this test binary's sandbox range, away from labd's default
// pool and from other test binaries running at the same time.
var testIDs = userns.Range{Base: 400000000 + uint32(os.Getpid()%1000)*65536, Size: 65536}

// ownedLower is a layer above busybox with owners other than root: what
// ls -ln must show unchanged inside, whatever the sandbox's range.
var (
	ownedOnce  sync.Once
	ownedLower string
	ownedErr   error
)

func ownedLayer(t testing.TB) string {
	t.Helper()
	ownedOnce.Do(func() {
		dir, err := os.MkdirTemp("", "runtime-owned-")
		if err != nil {
			ownedErr = err
			return
		}
		ownedLower = dir
		entries := []struct {
			path     string
			dir      bool
			mode     os.FileMode
			uid, gid int
		}{
			{"home", true, 0o755, 0, 0},
			{"home/user", true, 0o755, 1000, 1000},
			{"home/user/file", false, 0o644, 1000, 1000},
			{"srv", true, 0o755, 0, 0},
			{"srv/secret", false, 0o600, 0, 0},
			{"srv/high", false, 0o644, 70000, 70000}, // beyond the range: nobody's
		}
		for _, e := range entries {
			p := filepath.Join(dir, e.path)
			if e.dir {
				err = os.Mkdir(p, e.mode)
			} else {
				err = os.WriteFile(p, []byte(e.path+"\n"), e.mode)
			}
			if err == nil {
				err = os.Chmod(p, e.mode)
			}
			if err == nil {
				err = os.Lchown(p, e.uid, e.gid)
			}
			if err != nil {
				ownedErr = err
				return
			}
		}
	})
	if ownedErr != nil {
		t.Fatal(ownedErr)
	}
	return ownedLower
}

// removeOwnedLayer is called by TestMain once every test has run.
func removeOwnedLayer() {
	if ownedLower != "" {
		os.RemoveAll(ownedLower)
	}
}

// sandbox is what the engine makes per sandbox: a pinned user namespace
// with the sandbox's range and a network namespace owned by it.
type sandbox struct {
	ns     *UserNS
	bridge string // its network namespace
	dir    string
}

// newSandbox pins a user namespace (and its bridge network namespace)
// until the end of the test.
func newSandbox(t testing.TB) sandbox {
	t.Helper()
	needRoot(t)
	dir := t.TempDir()
	sb := sandbox{ns: &UserNS{Path: filepath.Join(dir, "userns"), IDs: testIDs}, bridge: filepath.Join(dir, "bridge"), dir: dir}
	if err := userns.Create(context.Background(), testIDs, sb.ns.Path, sb.bridge); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, p := range []string{sb.ns.Path, sb.bridge} {
			if err := userns.Unpin(p); err != nil {
				t.Error(err)
			}
		}
	})
	return sb
}

// newUserNSRuntime is newTestRuntime with a root container root can
// reach (t.TempDir's are 0700), Docker's seccomp profile when the binary
// supports it, and the same leak check.
func newUserNSRuntime(t testing.TB) *Runtime {
	t.Helper()
	needRoot(t)
	root, err := os.MkdirTemp("", "runtime-userns-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o711); err != nil {
		t.Fatal(err)
	}
	opts := Options{Root: root, CgroupParent: testCgroupParent}
	if SeccompSupported() {
		if opts.Seccomp, err = DefaultSeccompProfile(); err != nil {
			t.Fatal(err)
		}
	}
	r, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	before := countLeaks(r)
	t.Cleanup(func() {
		if t.Failed() {
			return
		}
		assertNoLeaks(t, r, before)
	})
	return r
}

// userSpec is baseSpec in the sandbox's user namespace, with ownedLayer
// above busybox.
func userSpec(t testing.TB, sb sandbox, args ...string) Spec {
	t.Helper()
	s := baseSpec(t, args...)
	s.Lowers = []string{ownedLayer(t), busyboxLower}
	s.UserNS = sb.ns
	return s
}

func owner(t testing.TB, p string) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d:%d", st.Uid, st.Gid)
}

func TestUserNSContainer(t *testing.T) {
	r := newUserNSRuntime(t)
	sb := newSandbox(t)
	base := testIDs.Base
	tests := []struct {
		name   string
		mod    func(*Spec)
		script string
		want   string
	}{
		{"root", nil, `echo $(id -u) $(id -g) $(id -G)`, "0 0 0 10"},
		{"uid_map", nil, `cat /proc/self/uid_map /proc/self/gid_map | tr -s ' ' | sed 's/^ //'`,
			fmt.Sprintf("0 %d 65536\n0 %d 65536", base, base)},
		{"setgroups allowed", nil, `cat /proc/self/setgroups`, "allow"},
		{"user with groups", func(s *Spec) { s.User = "user" }, `echo $(id -u) $(id -g) $(id -G)`, "1000 1000 1000 50"},
		{"image owners", nil, `ls -lnd / /bin/busybox /home/user /home/user/file /srv/secret /srv/high | awk '{print $3, $4, $NF}'`,
			"0 0 /\n0 0 /bin/busybox\n1000 1000 /home/user\n1000 1000 /home/user/file\n65534 65534 /srv/high\n0 0 /srv/secret"},
		{"root reads its 0600 file", nil, `cat /srv/secret`, "srv/secret"},
		{"unmapped owner is read-only", nil, `echo x >> /srv/high 2>/dev/null || echo denied`, "denied"},
		{"chown", nil, `touch /x && chown 1000:1000 /x && stat -c '%u:%g' /x`, "1000:1000"},
		{"su to a user", nil, `su user -c 'id -u; touch /tmp/by-user'; stat -c '%u:%g' /tmp/by-user`, "1000\n1000:1000"},
		{"etc files are root's and writable", nil, `ls -ln /etc/hosts /etc/hostname /etc/resolv.conf | awk '{print $3 $4}' | sort -u; echo 10.1.1.1 x >> /etc/hosts && echo written`, "00\nwritten"},
		{"cwd created for root", func(s *Spec) { s.Cwd = "/new/work dir" }, `pwd; stat -c '%u:%g %a' /new "/new/work dir"`, "/new/work dir\n0:0 755\n0:0 755"},
		{"capabilities", nil, `grep -E '^Cap(Eff|Prm|Bnd)' /proc/self/status | cut -f2 | sort -u`, "00000000a80425fb"},
		{"no new privileges", nil, `grep NoNewPrivs /proc/self/status | cut -f2`, "1"},
		{"seccomp", nil, `grep Seccomp: /proc/self/status | cut -f2`, seccompMode()},
		{"pid 1", nil, `echo $$`, "1"},
		{"sysfs of its own network", nil, `ls /sys/class/net; grep -c ' /sys sysfs ro' /proc/mounts`, "lo\n1"},
		{"ping as root", nil, `ping -c1 -W2 127.0.0.1 >/dev/null && echo up`, "up"},
		// busybox ping opens raw sockets only: TestUserNSNetwork opens
		// the ICMP datagram socket this allows.
		{"ping group range", nil, `cat /proc/sys/net/ipv4/ping_group_range`, "0\t65535"},
		{"bind :80", nil, `nc -l -p 80 & sleep 0.2; netstat -ltn | grep -c ':80 '`, "1"},
		{"read-only /proc/sys", nil, `echo 1 > /proc/sys/kernel/domainname 2>/dev/null || echo ro`, "ro"},
		{"read-only /sys", nil, `touch /sys/x 2>/dev/null || echo ro`, "ro"},
		{"masked keys", nil, `wc -c < /proc/keys`, "0"},
		{"dev", nil, `ls /dev | grep -v '^core$' | tr '\n' ' '; echo x > /dev/null && head -c 4 /dev/urandom | wc -c`, "fd full mqueue null ptmx pts random shm stderr stdin stdout tty urandom zero 4"},
		{"mqueue", nil, `touch /dev/mqueue/q && ls /dev/mqueue`, "q"},
		{"shm", nil, `echo x > /dev/shm/f && cat /dev/shm/f`, "x"},
		// CAP_MKNOD means nothing in a user namespace (Docker's
		// userns-remap neither).
		{"no mknod", nil, `mknod /tmp/null c 1 3 2>/dev/null || echo refused`, "refused"},
		{"no mount", nil, `mount -t tmpfs t /mnt 2>/dev/null || echo refused`, "refused"},
		{"no sethostname", nil, `hostname other 2>/dev/null || echo refused`, "refused"},
		{"hostname", func(s *Spec) { s.Hostname = "builder" }, `hostname; cat /etc/hostname`, "builder\nbuilder"},
		{"stdin", func(s *Spec) { s.Stdin = strings.NewReader("a\nb\n") }, `wc -l`, "2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := userSpec(t, sb, "sh", "-c", tt.script)
			if tt.mod != nil {
				tt.mod(&s)
			}
			out, errOut, code := run(t, r, s)
			if got := strings.TrimRight(out, "\n"); got != tt.want || code != 0 {
				t.Errorf("%s: got %q (exit %d, stderr %q), want %q", tt.script, got, code, errOut, tt.want)
			}
		})
	}
}

func seccompMode() string {
	if SeccompSupported() {
		return "2"
	}
	return "0"
}

// TestUserNSUpper checks what the host finds in the upper directory: the
// container's ids shifted by the range's base (what layer.DiffShifted
// shifts back), whiteouts as the overlay mounter's, and the lowers as they
// were.
func TestUserNSUpper(t *testing.T) {
	r := newUserNSRuntime(t)
	sb := newSandbox(t)
	s := userSpec(t, sb, "sh", "-c", `touch /x && chown 1000:1000 /x && mkdir /d && chown 2000:50 /d &&
		echo new > /home/user/file && chown 3000:3000 /home/user/file && rm /lower.txt && echo root > /root/f &&
		rm -rf /home/user && mkdir -p /home/user && chown 1000:1000 /home/user`)
	s.Cwd = "/made/for/root"
	if _, errOut, code := run(t, r, s); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	b := int(testIDs.Base)
	for p, want := range map[string]string{
		".":             fmt.Sprintf("%d:%d", b, b),
		"x":             fmt.Sprintf("%d:%d", b+1000, b+1000),
		"d":             fmt.Sprintf("%d:%d", b+2000, b+50),
		"root/f":        fmt.Sprintf("%d:%d", b, b),
		"made/for":      fmt.Sprintf("%d:%d", b, b),
		"made/for/root": fmt.Sprintf("%d:%d", b, b),
		"lower.txt":     "0:0", // a whiteout, made with the mounter's credentials
		"home/user":     fmt.Sprintf("%d:%d", b+1000, b+1000),
	} {
		if got := owner(t, filepath.Join(s.Upper, p)); got != want {
			t.Errorf("upper %s owned by %s, want %s", p, got, want)
		}
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(s.Upper, "lower.txt"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("upper lower.txt: mode %o rdev %d, %v; want a whiteout", st.Mode, st.Rdev, err)
	}
	if v, err := lgetxattrString(filepath.Join(s.Upper, "home/user"), "trusted.overlay.opaque"); err != nil || v != "y" {
		t.Errorf("upper home/user opaque = %q, %v; want y", v, err)
	}
	// The shared layers are untouched.
	lower := ownedLayer(t)
	for p, want := range map[string]string{"home/user": "1000:1000", "home/user/file": "1000:1000", "srv/secret": "0:0"} {
		if got := owner(t, filepath.Join(lower, p)); got != want {
			t.Errorf("lower %s owned by %s, want %s", p, got, want)
		}
	}
	if b, err := os.ReadFile(filepath.Join(lower, "home/user/file")); err != nil || string(b) != "home/user/file\n" {
		t.Errorf("lower file changed: %q, %v", b, err)
	}
}

func lgetxattrString(p, name string) (string, error) {
	buf := make([]byte, 64)
	n, err := unix.Lgetxattr(p, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// TestUserNSBindMounts: an idmapped bind keeps container ids on disk (the
// workspace invariant: on disk as the container sees it, whatever the
// sandbox's range); a plain bind shows host-owned files as nobody's, and
// container root cannot read what only host root may.
func TestUserNSBindMounts(t *testing.T) {
	r := newUserNSRuntime(t)
	sb := newSandbox(t)
	host := t.TempDir()
	ws := filepath.Join(host, "ws")
	if err := os.Mkdir(ws, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, id := range map[string]int{"by-root": 0, "by-user": 1000, "user-dir/": 1000} {
		p := filepath.Join(ws, name)
		var err error
		if strings.HasSuffix(name, "/") {
			err = os.Mkdir(p, 0o755)
		} else {
			err = os.WriteFile(p, []byte(name+"\n"), 0o600)
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, id, id); err != nil {
			t.Fatal(err)
		}
	}
	secret := filepath.Join(host, "secret")
	if err := os.WriteFile(secret, []byte("host secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := userSpec(t, sb, "sh", "-c", `for f in /ws /ws/by-root /ws/by-user /vol /plain; do stat -c '%u %g %n' $f; done
		cat /ws/by-root /ws/by-user
		touch /ws/new-by-root && su user -c 'touch /ws/user-dir/new-by-user' && mkdir /ws/d
		cat /plain/secret 2>/dev/null || echo secret denied
		touch /plain/x 2>/dev/null || echo plain read-only for root
		touch /vol/ro 2>/dev/null || echo vol read-only`)
	s.Mounts = []Mount{
		{Source: ws, Destination: "/ws", IDMap: true},
		// Beneath and IDMap together: resolved, pinned and idmapped.
		{Source: "ws", Beneath: host, Destination: "/vol", IDMap: true, ReadOnly: true},
		{Source: host, Destination: "/plain"},
	}
	out, errOut, code := run(t, r, s)
	want := "0 0 /ws\n0 0 /ws/by-root\n1000 1000 /ws/by-user\n0 0 /vol\n65534 65534 /plain\n" +
		"by-root\nby-user\n" +
		"secret denied\nplain read-only for root\nvol read-only\n"
	if out != want || code != 0 {
		t.Errorf("got %q (exit %d, stderr %q), want %q", out, code, errOut, want)
	}
	for p, want := range map[string]string{"new-by-root": "0:0", "user-dir/new-by-user": "1000:1000", "d": "0:0", "by-user": "1000:1000"} {
		if got := owner(t, filepath.Join(ws, p)); got != want {
			t.Errorf("workspace %s owned by %s on disk, want %s", p, got, want)
		}
	}
	if got := owner(t, host); got != "0:0" {
		t.Errorf("plain bind source owner changed to %s", got)
	}
}

func TestUserNSExec(t *testing.T) {
	r := newUserNSRuntime(t)
	sb := newSandbox(t)
	var out syncBuffer
	s := userSpec(t, sb, "sh", "-c", `echo ready; exec sleep 100`)
	s.Stdout = &out
	c, err := r.Start(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Kill(); _, _ = c.Wait(context.Background()) }()
	out.waitFor(t, "ready")
	for _, tc := range []struct {
		user, script, want string
	}{
		{"", `echo $(id -u) $(id -G); tr -s ' ' < /proc/self/uid_map | sed 's/^ //'; touch /by-exec`, fmt.Sprintf("0 0 10\n0 %d 65536\n", testIDs.Base)},
		{"user", `id -u; touch /tmp/exec-user`, "1000\n"},
	} {
		var eout, eerr syncBuffer
		p, err := c.Exec(ExecSpec{Args: []string{"sh", "-c", tc.script}, Env: []string{"PATH=/bin"}, User: tc.user, Stdout: &eout, Stderr: &eerr})
		if err != nil {
			t.Fatal(err)
		}
		st, err := p.Wait(context.Background())
		if err != nil || st.ExitCode != 0 || eout.String() != tc.want {
			t.Errorf("exec %q as %q: %+v, %v, %q (stderr %q), want %q", tc.script, tc.user, st, err, eout.String(), eerr.String(), tc.want)
		}
	}
	b := int(testIDs.Base)
	if got, want := owner(t, filepath.Join(s.Upper, "by-exec")), fmt.Sprintf("%d:%d", b, b); got != want {
		t.Errorf("exec's file owned by %s on the host, want %s", got, want)
	}
	if got, want := owner(t, filepath.Join(s.Upper, "tmp/exec-user")), fmt.Sprintf("%d:%d", b+1000, b+1000); got != want {
		t.Errorf("exec user's file owned by %s on the host, want %s", got, want)
	}
}

func TestUserNSTty(t *testing.T) {
	r := newUserNSRuntime(t)
	sb := newSandbox(t)
	var out syncBuffer
	s := userSpec(t, sb, "sh", "-c", "stty size; tty; stat -c %g $(tty)")
	s.Tty, s.TtyWidth, s.TtyHeight = true, 100, 30
	s.Stdout = &out
	c, err := r.Start(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Wait(context.Background())
	if err != nil || st.ExitCode != 0 {
		t.Fatalf("Wait = %+v, %v (output %q)", st, err, out.String())
	}
	// devpts' gid=5 is the container's tty group.
	if got := strings.ReplaceAll(out.String(), "\r\n", "\n"); got != "30 100\n/dev/pts/0\n5\n" {
		t.Errorf("tty output %q", got)
	}
}

func TestUserNSLimits(t *testing.T) {
	r := newUserNSRuntime(t)
	sb := newSandbox(t)
	s := userSpec(t, sb, "dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1")
	s.Memory = 32 << 20
	c, err := r.Start(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Wait(context.Background())
	if err != nil || st.ExitCode != 137 || !st.OOMKilled {
		t.Errorf("memory limit: Wait = %+v, %v; want 137, OOMKilled", st, err)
	}
	s = userSpec(t, sb, "sh", "-c", `i=0; while [ $i -lt 50 ]; do i=$((i+1)); echo $i; sleep 1000 & done; echo spawned`)
	s.PidsLimit = 10
	out, errOut, code := run(t, r, s)
	if n := len(strings.Fields(out)); code == 0 || n == 0 || n > 10 || !strings.Contains(errOut, "can't fork") {
		t.Errorf("pids limit: exit %d, %d lines, stderr %q; want a fork failure after at most 10", code, n, errOut)
	}
}

// TestUserNSNetwork plays package network's part with namespaces owned by
// the sandbox: the sandbox's shell joins the bridge namespace, a container
// its own namespace with a veth pair to the bridge one. A namespace of
// another owner is refused.
func TestUserNSNetwork(t *testing.T) {
	r := newUserNSRuntime(t)
	sb := newSandbox(t)
	ctr := filepath.Join(sb.dir, "ctr")
	if err := userns.NewNetNS(context.Background(), sb.ns.Path, ctr); err != nil {
		t.Fatal(err)
	}
	defer userns.Unpin(ctr)
	plumbVeth(t, sb.bridge, ctr)

	s := userSpec(t, sb, "sh", "-c", `ls /sys/class/net | tr '\n' ' '; ping -c1 -W2 172.30.98.1 >/dev/null && echo reached`)
	s.NetNS = ctr
	if out, errOut, code := run(t, r, s); out != "eth0 lo reached\n" || code != 0 {
		t.Errorf("container netns: %q (exit %d, %q)", out, code, errOut)
	}
	// The container set ping_group_range in its namespace: every group of
	// the sandbox may open ICMP datagram sockets (unprivileged ping),
	// nobody else.
	for gid, want := range map[uint32]error{testIDs.Base + 1000: nil, testIDs.Base + testIDs.Size: unix.EACCES, 0: unix.EACCES} {
		if err := icmpSocketAs(ctr, gid); err != want {
			t.Errorf("ICMP datagram socket with gid %d: %v, want %v", gid, err, want)
		}
	}
	// The shell's view: the bridge namespace itself.
	s = userSpec(t, sb, "sh", "-c", `ls /sys/class/net | tr '\n' ' '; ping -c1 -W2 172.30.98.2 >/dev/null && echo reached`)
	s.NetNS = sb.bridge
	if out, errOut, code := run(t, r, s); out != "lo veth-ut reached\n" || code != 0 {
		t.Errorf("bridge netns: %q (exit %d, %q)", out, code, errOut)
	}

	other := newSandbox(t) // same range, another namespace
	for _, netNS := range []string{"/proc/self/ns/net", other.bridge} {
		s := userSpec(t, sb, "true")
		s.NetNS = netNS
		_, err := r.Run(context.Background(), s)
		if err == nil || !strings.Contains(err.Error(), "is not owned by the user namespace") {
			t.Errorf("NetNS %s: Run = %v, want a refusal", netNS, err)
		}
	}
}

// icmpSocketAs opens an ICMP datagram socket in the network namespace at
// path, on a thread whose effective gid is gid (the thread is discarded).
func icmpSocketAs(path string, gid uint32) error {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return err
	}
	defer ns.Close()
	errc := make(chan error, 1)
	go func() {
		goruntime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := netns.Set(ns); err != nil {
			errc <- err
			return
		}
		// The raw system call changes this thread only.
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, ^uintptr(0), uintptr(gid), ^uintptr(0)); e != 0 {
			errc <- e
			return
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, unix.IPPROTO_ICMP)
		if err == nil {
			unix.Close(fd)
		}
		errc <- err
	}()
	return <-errc
}

// plumbVeth joins two network namespaces with a veth pair, from the host:
// bridgeNS gets veth-ut 172.30.98.1, ctrNS eth0 172.30.98.2.
func plumbVeth(t *testing.T, bridgeNS, ctrNS string) {
	t.Helper()
	handle := func(path string) (*netlink.Handle, netns.NsHandle) {
		ns, err := netns.GetFromPath(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ns.Close() })
		h, err := netlink.NewHandleAt(ns)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(h.Close)
		return h, ns
	}
	bnl, _ := handle(bridgeNS)
	cnl, cns := handle(ctrNS)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "veth-ut"}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(cns))}
	if err := bnl.LinkAdd(veth); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	for _, side := range []struct {
		h          *netlink.Handle
		name, addr string
	}{{bnl, "veth-ut", "172.30.98.1"}, {bnl, "lo", ""}, {cnl, "eth0", "172.30.98.2"}, {cnl, "lo", ""}} {
		l, err := side.h.LinkByName(side.name)
		if err != nil {
			t.Fatal(err)
		}
		if side.addr != "" {
			if err := side.h.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP(side.addr), Mask: net.CIDRMask(24, 32)}}); err != nil {
				t.Fatal(err)
			}
		}
		if err := side.h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
}

func TestUserNSRefusals(t *testing.T) {
	r := newUserNSRuntime(t)
	sb := newSandbox(t)
	netPin := sb.bridge
	tests := []struct {
		name string
		mod  func(*Spec)
		want string
	}{
		{"idmap without a user namespace", func(s *Spec) {
			s.UserNS = nil
			s.Mounts = []Mount{{Source: t.TempDir(), Destination: "/ws", IDMap: true}}
		}, "idmapped mount /ws: the container has no user namespace"},
		{"idmap of a tmpfs", func(s *Spec) {
			s.Mounts = []Mount{{Type: "tmpfs", Source: "tmpfs", Destination: "/t", IDMap: true}}
		}, `only bind mounts can be idmapped, not "tmpfs"`},
		{"invalid range", func(s *Spec) { s.UserNS = &UserNS{Path: sb.ns.Path, IDs: userns.Range{Base: 0, Size: 65536}} }, "container root would be host root"},
		{"no path", func(s *Spec) { s.UserNS = &UserNS{IDs: testIDs} }, "user namespace: no path"},
		{"missing namespace", func(s *Spec) { s.UserNS = &UserNS{Path: filepath.Join(sb.dir, "missing"), IDs: testIDs} }, "no such file"},
		{"not a user namespace", func(s *Spec) { s.UserNS = &UserNS{Path: netPin, IDs: testIDs} }, "is not a user namespace"},
		{"another mapping", func(s *Spec) {
			s.UserNS = &UserNS{Path: sb.ns.Path, IDs: userns.Range{Base: testIDs.Base + 65536, Size: 65536}}
		}, fmt.Sprintf("does not map container root to host id %d (it maps 0:0 to %d:%d)", testIDs.Base+65536, testIDs.Base, testIDs.Base)},
		{"idmap of a filesystem without idmapped mounts", func(s *Spec) {
			s.Mounts = []Mount{{Source: "/proc/sys", Destination: "/x", IDMap: true}}
		}, "does not support idmapped mounts"},
		{"layer on a filesystem without idmapped mounts", func(s *Spec) {
			s.Lowers = append([]string{"/proc/sys"}, s.Lowers...)
		}, "idmap layer /proc/sys: its filesystem does not support idmapped mounts"},
		{"missing idmapped source", func(s *Spec) {
			s.Mounts = []Mount{{Source: "/no/such/dir", Destination: "/x", IDMap: true}}
		}, "bind source path does not exist: /no/such/dir"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := userSpec(t, sb, "true")
			tc.mod(&s)
			_, err := r.Run(context.Background(), s)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Run = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestUserNSUnreachableRoot: a runtime root below a directory others
// cannot search (labd's data directory is 0700 by default) is refused
// with the fix, before anything is mounted.
func TestUserNSUnreachableRoot(t *testing.T) {
	needRoot(t)
	sb := newSandbox(t)
	private := t.TempDir() // 0700
	if err := os.Chmod(private, 0o700); err != nil {
		t.Fatal(err)
	}
	r, err := New(Options{Root: filepath.Join(private, "runtime"), CgroupParent: testCgroupParent})
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Run(context.Background(), userSpec(t, sb, "true"))
	want := fmt.Sprintf("%s (mode 0700) is not searchable by others", private)
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "chmod o+x") {
		t.Errorf("Run = %v, want %q", err, want)
	}
	assertNoLeaks(t, r, leaks{})
	// Without a user namespace nothing changes.
	if _, _, code := run(t, r, baseSpec(t, "true")); code != 0 {
		t.Errorf("exit %d", code)
	}
}

// TestUserNSAttachedLayers runs the fallback for kernels without overlay
// layers as descriptors: idmapped layers attached in the bundle for
// mount(2), detached right after, including more layers than fit in
// mount(2)'s page as paths.
func TestUserNSAttachedLayers(t *testing.T) {
	r := newUserNSRuntime(t)
	r.overlayFDs = false
	sb := newSandbox(t)
	s := userSpec(t, sb, "sh", "-c", `ls -lnd /home/user | awk '{print $3, $4}'; touch /x; cat /top; echo; grep -c ' / overlay' /proc/mounts; echo done; sleep 100`)
	base := filepath.Join(t.TempDir(), strings.Repeat("long-layer-directory-name-", 3))
	var lowers []string
	for i := 45; i >= 0; i-- {
		d := filepath.Join(base, fmt.Sprintf("%064d", i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "top"), []byte(fmt.Sprint(i)), 0o644); err != nil {
			t.Fatal(err)
		}
		lowers = append(lowers, d)
	}
	s.Lowers = append(lowers, s.Lowers...)
	var out syncBuffer
	s.Stdout = &out
	c, err := r.Start(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Kill(); _, _ = c.Wait(context.Background()) }()
	out.waitFor(t, "done\n")
	if got := out.String(); got != "1000 1000\n45\n1\ndone\n" {
		t.Errorf("output %q", got)
	}
	// While it runs, the only mount in the bundle is the rootfs.
	var inBundle []string
	b, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], c.bundle+"/") {
			inBundle = append(inBundle, f[4])
		}
	}
	if len(inBundle) != 1 || inBundle[0] != c.rootfs {
		t.Errorf("mounts in the bundle: %q, want only %s", inBundle, c.rootfs)
	}
	if got, want := owner(t, filepath.Join(s.Upper, "x")), fmt.Sprintf("%d:%d", testIDs.Base, testIDs.Base); got != want {
		t.Errorf("upper x owned by %s, want %s", got, want)
	}
}

// TestSweepAttachedLayers: layers a killed labd left attached in a bundle
// are detached by the next New.
func TestSweepAttachedLayers(t *testing.T) {
	needRoot(t)
	root := t.TempDir()
	layer := filepath.Join(root, "bundles", "dead", "layers", "0")
	if err := os.MkdirAll(layer, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(busyboxLower, layer, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	r, err := New(Options{Root: root, CgroupParent: testCgroupParent})
	if err != nil {
		unix.Unmount(layer, unix.MNT_DETACH)
		t.Fatal(err)
	}
	assertNoLeaks(t, r, leaks{})
}

// startOnce times Start of `true` (bundle, overlay, config, create, exec)
// until its process has been executed; the wait and cleanup are not
// counted.
func startOnce(b *testing.B, r *Runtime, s Spec) time.Duration {
	ctx := context.Background()
	t0 := time.Now()
	c, err := r.Start(ctx, s)
	d := time.Since(t0)
	if err != nil {
		b.Fatal(err)
	}
	if st, err := c.Wait(ctx); err != nil || st.ExitCode != 0 {
		b.Fatalf("Wait = %+v, %v", st, err)
	}
	return d
}

// BenchmarkStart measures start-to-exec without and with a user namespace
// (idmapped layers, joined by path), interleaved so that both see the same
// load; ns/op is a pair of starts, the medians are reported apiece.
func BenchmarkStart(b *testing.B) {
	r, sb := newUserNSRuntime(b), newSandbox(b) // same root and seccomp: only the namespace differs
	var plain, mapped []time.Duration
	for b.Loop() {
		b.StopTimer()
		s, su := baseSpec(b, "true"), baseSpec(b, "true")
		su.UserNS = sb.ns
		b.StartTimer()
		plain = append(plain, startOnce(b, r, s))
		mapped = append(mapped, startOnce(b, r, su))
	}
	mp, mu := median(plain), median(mapped)
	b.ReportMetric(float64(mp)/1e6, "ms-plain/median")
	b.ReportMetric(float64(mu)/1e6, "ms-userns/median")
	b.ReportMetric(100*(float64(mu)/float64(mp)-1), "%-userns")
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// BenchmarkRun is BenchmarkStart for a whole run of `true`: start, exit,
// cleanup (unmounts, cgroups, state).
func BenchmarkRun(b *testing.B) {
	r, sb := newUserNSRuntime(b), newSandbox(b)
	ctx := context.Background()
	var plain, mapped []time.Duration
	for b.Loop() {
		b.StopTimer()
		s, su := baseSpec(b, "true"), baseSpec(b, "true")
		su.UserNS = sb.ns
		b.StartTimer()
		for _, x := range []struct {
			s  Spec
			ds *[]time.Duration
		}{{s, &plain}, {su, &mapped}} {
			t0 := time.Now()
			if code, err := r.Run(ctx, x.s); err != nil || code != 0 {
				b.Fatalf("Run = %d, %v", code, err)
			}
			*x.ds = append(*x.ds, time.Since(t0))
		}
	}
	mp, mu := median(plain), median(mapped)
	b.ReportMetric(float64(mp)/1e6, "ms-plain/median")
	b.ReportMetric(float64(mu)/1e6, "ms-userns/median")
	b.ReportMetric(100*(float64(mu)/float64(mp)-1), "%-userns")
}

// TestUserNSCommit: a build step run in a user namespace gives, through
// layer.DiffShifted, the layer the same step gives without one (tar
// headers compared; the mtimes of two runs differ).
func TestUserNSCommit(t *testing.T) {
	r := newUserNSRuntime(t)
	sb := newSandbox(t)
	const step = `mkdir -p /app && echo hi > /app/a && chown 1000:50 /app/a && chmod 4755 /app/a &&
		ln -s /app/a /app/link && ln /app/a /app/hard && chown -h 1000:1000 /app/link && rm /lower.txt &&
		rm -rf /home/user && mkdir /home/user && echo x > /home/user/f && chown 1000:1000 /home/user /home/user/f &&
		chown 2000:2000 /srv/secret && mkfifo /app/fifo`
	var tars [2][]string
	for i, withUserNS := range []bool{false, true} {
		s := baseSpec(t, "sh", "-c", step)
		s.Lowers = []string{ownedLayer(t), busyboxLower}
		s.Cwd = "/work/dir"
		diff := func(w io.Writer) error {
			_, _, err := layer.Diff(context.Background(), s.Upper, w)
			return err
		}
		if withUserNS {
			s.UserNS = sb.ns
			diff = func(w io.Writer) error {
				_, _, err := layer.DiffShifted(context.Background(), s.Upper, w, layer.IDShift{Base: testIDs.Base, Size: testIDs.Size})
				return err
			}
		}
		if _, errOut, code := run(t, r, s); code != 0 {
			t.Fatalf("user namespace %v: exit %d: %s", withUserNS, code, errOut)
		}
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(diff(pw)) }()
		tr := tar.NewReader(pr)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			tars[i] = append(tars[i], fmt.Sprintf("%s type=%c mode=%o %d:%d %s:%s link=%q size=%d pax=%v",
				h.Name, h.Typeflag, h.Mode, h.Uid, h.Gid, h.Uname, h.Gname, h.Linkname, h.Size, h.PAXRecords))
		}
	}
	if strings.Join(tars[0], "\n") != strings.Join(tars[1], "\n") {
		t.Errorf("layers differ\nwithout user namespace:\n%s\nwith:\n%s", strings.Join(tars[0], "\n"), strings.Join(tars[1], "\n"))
	}
	if len(tars[0]) < 12 {
		t.Errorf("only %d entries: %q", len(tars[0]), tars[0])
	}
}

// TestMountOverlay: the view of a stopped container from the host (docker
// cp, export) shows lowers and upper with the same ids.
func TestMountOverlay(t *testing.T) {
	r := newUserNSRuntime(t)
	sb := newSandbox(t)
	s := userSpec(t, sb, "sh", "-c", "touch /x && chown 1000:1000 /x")
	if _, errOut, code := run(t, r, s); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	b := int(testIDs.Base)
	for _, tc := range []struct {
		name     string
		u        *UserNS
		attached bool
		want     map[string]string
	}{
		{"user namespace", sb.ns, false, map[string]string{"x": fmt.Sprintf("%d:%d", b+1000, b+1000), "home/user": fmt.Sprintf("%d:%d", b+1000, b+1000), "bin/busybox": fmt.Sprintf("%d:%d", b, b)}},
		{"user namespace, attached layers", sb.ns, true, map[string]string{"x": fmt.Sprintf("%d:%d", b+1000, b+1000), "home/user": fmt.Sprintf("%d:%d", b+1000, b+1000)}},
		{"none", nil, false, map[string]string{"x": fmt.Sprintf("%d:%d", b+1000, b+1000), "home/user": "1000:1000", "bin/busybox": "0:0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r.overlayFDs = probeOverlayFDs(r.bundleDir, r.overlayOpts) && !tc.attached
			target := t.TempDir()
			if err := r.MountOverlay(target, s.Lowers, s.Upper, s.Work, tc.u); err != nil {
				t.Fatal(err)
			}
			for p, want := range tc.want {
				if got := owner(t, filepath.Join(target, p)); got != want {
					t.Errorf("%s owned by %s, want %s", p, got, want)
				}
			}
			if err := unmount(target); err != nil {
				t.Fatal(err)
			}
		})
	}
	other := &UserNS{Path: sb.ns.Path, IDs: userns.Range{Base: testIDs.Base + 65536, Size: 65536}}
	if err := r.MountOverlay(t.TempDir(), s.Lowers, s.Upper, s.Work, other); err == nil || !strings.Contains(err.Error(), "does not map container root") {
		t.Errorf("MountOverlay with another mapping: %v", err)
	}
}

// TestUserNSDeviceCgroup: a device node outside Docker's list stays
// closed to the container even when its permissions let anyone open it
// (fuse opens without privileges; only the device cgroup refuses it).
func TestUserNSDeviceCgroup(t *testing.T) {
	r := newUserNSRuntime(t)
	sb := newSandbox(t)
	dir := t.TempDir()
	node := filepath.Join(dir, "fuse")
	if err := unix.Mknod(node, unix.S_IFCHR|0o666, int(unix.Mkdev(10, 229))); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(node, 0o666); err != nil {
		t.Fatal(err)
	}
	s := userSpec(t, sb, "sh", "-c", `cat /fuse 2>&1; echo x > /dev/null && echo null ok`)
	s.Mounts = []Mount{{Source: node, Destination: "/fuse"}}
	out, errOut, code := run(t, r, s)
	if want := "cat: can't open '/fuse': Operation not permitted\nnull ok\n"; out != want || code != 0 {
		t.Errorf("got %q (exit %d, %q), want %q", out, code, errOut, want)
	}
}

// BenchmarkOverlayMount times mounting and unmounting a rootfs of three
// layers: plain (no user namespace), idmapped layers by descriptor, and
// idmapped layers attached for mount(2) (the fallback).
func BenchmarkOverlayMount(b *testing.B) {
	r, sb := newUserNSRuntime(b), newSandbox(b)
	dir := b.TempDir()
	var lowers []string
	for i := range 3 {
		d := filepath.Join(dir, fmt.Sprint("l", i))
		if err := os.Mkdir(d, 0o755); err != nil {
			b.Fatal(err)
		}
		lowers = append(lowers, d)
	}
	upper, work, target := filepath.Join(dir, "u"), filepath.Join(dir, "w"), filepath.Join(dir, "m")
	for _, d := range []string{upper, work, target} {
		if err := os.Mkdir(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	fds := r.overlayFDs
	for _, bc := range []struct {
		name string
		u    *UserNS
		fds  bool
	}{{"plain", nil, fds}, {"idmapped", sb.ns, fds}, {"idmapped-attached", sb.ns, false}} {
		b.Run(bc.name, func(b *testing.B) {
			r.overlayFDs = bc.fds
			for b.Loop() {
				if err := r.MountOverlay(target, lowers, upper, work, bc.u); err != nil {
					b.Fatal(err)
				}
				if err := unmount(target); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	r.overlayFDs = fds
}
