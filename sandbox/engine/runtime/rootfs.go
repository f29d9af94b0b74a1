package runtime

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"github.com/moby/sys/user"
	"golang.org/x/sys/unix"
)

// etcFiles are bind-mounted from the bundle onto /etc/<name>.
var etcFiles = []string{"hosts", "hostname", "resolv.conf"}

// defaultHosts is dockerd's /etc/hosts for a container without a network.
const defaultHosts = "127.0.0.1\tlocalhost\n" +
	"::1\tlocalhost ip6-localhost ip6-loopback\n" +
	"fe00::0\tip6-localnet\n" +
	"ff00::0\tip6-mcastprefix\n" +
	"ff02::1\tip6-allnodes\n" +
	"ff02::2\tip6-allrouters\n"

// prepareRootfs writes the bundle (init layer, /etc files) and mounts the
// overlay root filesystem.
func (r *Runtime) prepareRootfs(c *Container, s *Spec) error {
	if s.Upper == "" || s.Work == "" {
		return errors.New("upper and work directories are required")
	}
	for _, d := range []string{c.rootfs, s.Upper, s.Work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	initDir := filepath.Join(c.bundle, "init")
	if err := writeInitLayer(initDir); err != nil {
		return fmt.Errorf("init layer: %w", err)
	}
	hosts := s.Hosts
	if hosts == nil {
		hosts = []byte(defaultHosts)
	}
	resolv := s.ResolvConf
	if resolv == nil {
		resolv = defaultResolvConf()
	}
	files := map[string][]byte{
		"hosts":       hosts,
		"hostname":    []byte(s.Hostname + "\n"),
		"resolv.conf": resolv,
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(c.bundle, name), b, 0o644); err != nil {
			return err
		}
	}
	lowers := append([]string{initDir}, s.Lowers...)
	if err := mountOverlay(c.rootfs, lowers, s.Upper, s.Work, r.overlayOpts); err != nil {
		return err
	}
	return nil
}

// writeInitLayer creates dockerd's init layer (moby daemon/initlayer): the
// mount points and files every container has, so that neither mounting them
// nor their absence in the image changes the upper directory.
func writeInitLayer(dir string) error {
	entries := []struct{ path, kind string }{
		{"dev/pts", "dir"},
		{"dev/shm", "dir"},
		{"proc", "dir"},
		{"sys", "dir"},
		{".dockerenv", "file"},
		{"etc/resolv.conf", "file"},
		{"etc/hosts", "file"},
		{"etc/hostname", "file"},
		{"dev/console", "file"},
		{"etc/mtab", "/proc/mounts"},
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.path)
		if err := mkdirAll0755(dir, filepath.Dir(e.path)); err != nil {
			return err
		}
		switch e.kind {
		case "dir":
			if err := mkdirAll0755(dir, e.path); err != nil {
				return err
			}
		case "file":
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o755)
			if err != nil {
				return err
			}
			f.Close()
			if err := os.Chmod(p, 0o755); err != nil {
				return err
			}
		default:
			if err := os.Symlink(e.kind, p); err != nil {
				return err
			}
		}
	}
	return nil
}

// mkdirAll0755 creates rel under dir with mode 0755 whatever the umask.
func mkdirAll0755(dir, rel string) error {
	if rel == "." || rel == "" {
		return nil
	}
	if err := mkdirAll0755(dir, filepath.Dir(rel)); err != nil {
		return err
	}
	p := filepath.Join(dir, rel)
	if err := os.Mkdir(p, 0o755); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil
		}
		return err
	}
	return os.Chmod(p, 0o755)
}

// defaultResolvConf is the host's resolv.conf without loopback name
// servers (unreachable from a container), or Google's servers when none is
// left, as dockerd does.
func defaultResolvConf() []byte {
	b, _ := os.ReadFile("/etc/resolv.conf")
	var out bytes.Buffer
	ns := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "nameserver" {
			if strings.HasPrefix(f[1], "127.") || f[1] == "::1" {
				continue
			}
			ns++
		}
		out.WriteString(line + "\n")
	}
	if ns == 0 {
		out.WriteString("nameserver 8.8.8.8\nnameserver 8.8.4.4\n")
	}
	return out.Bytes()
}

// probeOverlayOptions returns the options Docker's overlay2 driver adds
// (redirect_dir=off, metacopy=off, index=off) that this kernel accepts, by
// mounting a throwaway overlay under dir.
func probeOverlayOptions(dir string) string {
	var want []string
	for _, o := range []string{"redirect_dir", "metacopy", "index"} {
		if _, err := os.Stat("/sys/module/overlay/parameters/" + o); err == nil {
			want = append(want, o+"=off")
		}
	}
	if len(want) == 0 {
		return ""
	}
	tmp, err := os.MkdirTemp(dir, ".probe-")
	if err != nil {
		return ""
	}
	defer os.RemoveAll(tmp)
	for _, d := range []string{"l", "u", "w", "m"} {
		if err := os.Mkdir(filepath.Join(tmp, d), 0o755); err != nil {
			return ""
		}
	}
	opts := strings.Join(want, ",")
	data := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s,%s",
		filepath.Join(tmp, "l"), filepath.Join(tmp, "u"), filepath.Join(tmp, "w"), opts)
	if err := unix.Mount("overlay", filepath.Join(tmp, "m"), "overlay", 0, data); err != nil {
		return ""
	}
	_ = unmount(filepath.Join(tmp, "m"))
	return opts
}

// maxMountData is what mount(2) copies of the options: one page.
const maxMountData = 4096

// mountOverlay mounts lowers (top first), upper and work at target. When
// the absolute paths do not fit in the page mount(2) accepts, the lowers
// are named by short /proc/self/fd/N paths of descriptors held open during
// the call (about 17 bytes per layer instead of a full path).
func mountOverlay(target string, lowers []string, upper, work, extra string) error {
	data := overlayData(lowers, upper, work, extra)
	if len(data) >= maxMountData {
		short := make([]string, len(lowers))
		for i, l := range lowers {
			fd, err := unix.Open(l, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("open lower %s: %w", l, err)
			}
			defer unix.Close(fd)
			short[i] = "/proc/self/fd/" + strconv.Itoa(fd)
		}
		data = overlayData(short, upper, work, extra)
		if len(data) >= maxMountData {
			return fmt.Errorf("mount overlay: %d layers are too many", len(lowers))
		}
	}
	if err := unix.Mount("overlay", target, "overlay", 0, data); err != nil {
		return fmt.Errorf("mount overlay on %s: %w", target, err)
	}
	return nil
}

func overlayData(lowers []string, upper, work, extra string) string {
	esc := make([]string, len(lowers))
	for i, l := range lowers {
		esc[i] = escapeOverlay(l)
	}
	data := "lowerdir=" + strings.Join(esc, ":") + ",upperdir=" + escapeOverlay(upper) + ",workdir=" + escapeOverlay(work)
	if extra != "" {
		data += "," + extra
	}
	return data
}

// escapeOverlay escapes the separators of overlay's option syntax.
func escapeOverlay(p string) string {
	r := strings.NewReplacer(`\`, `\\`, `,`, `\,`, `:`, `\:`)
	return r.Replace(p)
}

// removeBundle unmounts a bundle's rootfs (if mounted) and removes it.
func removeBundle(bundle string) error {
	if _, err := os.Lstat(bundle); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := unmount(filepath.Join(bundle, "rootfs")); err != nil {
		return fmt.Errorf("unmount %s: %w", bundle, err)
	}
	return os.RemoveAll(bundle)
}

// execUser is a resolved --user.
type execUser struct {
	uid, gid int
	groups   []int
}

// lookupUser resolves Docker's --user syntax against the container's
// /etc/passwd and /etc/group (missing files count as empty), like dockerd.
func lookupUser(rootfs, spec string) (execUser, error) {
	passwd := readInRoot(rootfs, "/etc/passwd")
	group := readInRoot(rootfs, "/etc/group")
	u, err := user.GetExecUser(spec, &user.ExecUser{Home: "/"}, passwd, group)
	if err != nil {
		return execUser{}, err
	}
	return execUser{uid: u.Uid, gid: u.Gid, groups: u.Sgids}, nil
}

// readInRoot reads a file resolving symlinks as if rootfs were "/", or
// returns nil (no file).
func readInRoot(rootfs, p string) io.Reader {
	h, err := pathrs.OpenInRoot(rootfs, p)
	if err != nil {
		return nil
	}
	defer h.Close()
	f, err := pathrs.Reopen(h, unix.O_RDONLY)
	if err != nil {
		return nil
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 16<<20))
	if err != nil {
		return nil
	}
	return bytes.NewReader(b)
}

// makeCwd creates the working directory when missing (root-owned, 0755), as
// dockerd does when it starts a container.
func makeCwd(rootfs, cwd string) error {
	if !filepath.IsAbs(cwd) {
		return fmt.Errorf("working directory %q is not absolute", cwd)
	}
	if err := pathrs.MkdirAll(rootfs, cwd, 0o755); err != nil {
		return fmt.Errorf("create working directory %s: %w", cwd, err)
	}
	return nil
}
