package runtime

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"github.com/labd/labd/sandbox/engine/beneath"
	"github.com/labd/labd/sandbox/engine/mountinfo"
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
// overlay root filesystem. With a user namespace (ns, s.UserNS), what
// container root must own is chowned to the range's base and the layers
// are idmapped.
func (r *Runtime) prepareRootfs(c *Container, s *Spec, ns *os.File) error {
	if s.Upper == "" || s.Work == "" {
		return errors.New("upper and work directories are required")
	}
	for _, d := range []string{c.rootfs, s.Upper, s.Work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	root := -1 // host id of container root, when it is not host root
	if s.UserNS != nil {
		root = int(s.UserNS.IDs.Base)
		// The container's root must reach its rootfs; the upper's root
		// directory is the container's "/".
		if err := os.Chmod(c.bundle, 0o711); err != nil {
			return err
		}
		if err := os.Lchown(s.Upper, root, root); err != nil {
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
		p := filepath.Join(c.bundle, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return err
		}
		// Container root writes them (as dockerd's containers may).
		if root >= 0 {
			if err := os.Chown(p, root, root); err != nil {
				return err
			}
		}
	}
	lowers := append([]string{initDir}, s.Lowers...)
	if ns != nil {
		return r.mountIDMappedOverlay(c.bundle, c.rootfs, lowers, s.Upper, s.Work, s.UserNS, ns)
	}
	return mountOverlay(c.rootfs, lowers, s.Upper, s.Work, r.overlayOpts)
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
	if err := unpinMounts(bundle); err != nil {
		return err
	}
	// Layers attached for an idmapped overlay are detached right after
	// the mount; only a killed labd leaves them.
	if layers := filepath.Join(bundle, "layers"); exists(layers) {
		mountinfo.UnmountUnder(layers)
	}
	return os.RemoveAll(bundle)
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// pinMounts resolves the bind mounts with Beneath and pins each at
// <bundle>/binds/<i>, which becomes its Source: runc then mounts a path
// only labd controls. Binds with IDMap are pinned too (a Source without
// Beneath is a host path), as idmapped mounts with the user namespace ns.
func pinMounts(bundle string, ms []Mount, ns *os.File) error {
	for i := range ms {
		m := &ms[i]
		if (m.Beneath == "" && !m.IDMap) || (m.Type != "" && m.Type != "bind") {
			continue
		}
		var opts beneath.PinOptions
		if m.IDMap {
			opts.IDMap = ns
			if m.Beneath == "" {
				m.Beneath = "/"
			}
		}
		dir := filepath.Join(bundle, "binds")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		if m.Create {
			if f, err := beneath.Open(m.Beneath, m.Source); err == nil {
				f.Close()
			} else if err := beneath.MkdirAll(m.Beneath, m.Source); err != nil {
				return fmt.Errorf("invalid mount config for type \"bind\": %w", err)
			}
		}
		shown := m.Shown
		if shown == "" {
			shown = m.Source
		}
		target := filepath.Join(dir, strconv.Itoa(i))
		if err := beneath.PinWith(m.Beneath, m.Source, target, opts); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("invalid mount config for type \"bind\": bind source path does not exist: %s", shown)
			}
			return fmt.Errorf("invalid mount config for type \"bind\": %s: %w", shown, err)
		}
		m.Source, m.Beneath = target, ""
	}
	return nil
}

// unpinMounts detaches what pinMounts attached in a bundle.
func unpinMounts(bundle string) error {
	ents, err := os.ReadDir(filepath.Join(bundle, "binds"))
	if err != nil {
		return nil
	}
	var errs []error
	for _, e := range ents {
		errs = append(errs, beneath.Unpin(filepath.Join(bundle, "binds", e.Name())))
	}
	return errors.Join(errs...)
}

// execUser is a resolved --user.
type execUser struct {
	uid, gid int
	groups   []int
}

// lookupUser resolves Docker's --user syntax against the container's
// /etc/passwd and /etc/group (missing files count as empty), like dockerd.
func lookupUser(rootfs, spec string) (execUser, error) {
	passwd := userFile(rootfs, "/etc/passwd")
	group := userFile(rootfs, "/etc/group")
	u, err := user.GetExecUser(spec, &user.ExecUser{Home: "/"}, passwd, group)
	if err != nil {
		return execUser{}, &UserError{Err: err}
	}
	return execUser{uid: u.Uid, gid: u.Gid, groups: u.Sgids}, nil
}

// makeCwd creates the working directory when missing (owned by container
// root, 0755), as dockerd does when it starts a container. owner is the
// host id of container root in a user namespace, -1 for host root.
func makeCwd(rootfs, cwd string, owner int) error {
	if !filepath.IsAbs(cwd) {
		return fmt.Errorf("working directory %q is not absolute", cwd)
	}
	if owner < 0 {
		if err := pathrs.MkdirAll(rootfs, cwd, 0o755); err != nil {
			return fmt.Errorf("create working directory %s: %w", cwd, err)
		}
		return nil
	}
	// Everything from the first missing component on is made here, and
	// given to container root: made by host root, it would show as
	// nobody's inside.
	parts := strings.Split(strings.TrimPrefix(filepath.Clean(cwd), "/"), "/")
	first := -1
	for i := range parts {
		h, err := pathrs.OpenInRoot(rootfs, "/"+filepath.Join(parts[:i+1]...))
		if errors.Is(err, os.ErrNotExist) {
			first = i
			break
		}
		if err != nil {
			return fmt.Errorf("create working directory %s: %w", cwd, err)
		}
		h.Close()
	}
	if first < 0 || parts[0] == "" {
		return nil
	}
	if err := pathrs.MkdirAll(rootfs, cwd, 0o755); err != nil {
		return fmt.Errorf("create working directory %s: %w", cwd, err)
	}
	for i := first; i < len(parts); i++ {
		h, err := pathrs.OpenInRoot(rootfs, "/"+filepath.Join(parts[:i+1]...))
		if err != nil {
			return fmt.Errorf("create working directory %s: %w", cwd, err)
		}
		err = unix.Fchownat(int(h.Fd()), "", owner, owner, unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW)
		h.Close()
		if err != nil {
			return fmt.Errorf("create working directory %s: %w", cwd, err)
		}
	}
	return nil
}
