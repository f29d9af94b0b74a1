package image

import (
	"archive/tar"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/opencontainers/go-digest"
)

// BusyboxBinary is the static busybox that BootstrapBusybox packs, from
// Debian's busybox-static.
var BusyboxBinary = "/bin/busybox"

// StandInLabel marks images labd built locally in place of official ones.
const StandInLabel = "labd.stand-in"

// BootstrapBusybox builds busybox:latest from Debian's busybox-static
// into the base view and returns its ID: one layer with /bin/busybox,
// every applet as a hard link in /bin (as in the official image),
// /etc/passwd and /etc/group with root and nobody, /root, /home, /dev and
// /tmp (1777); Cmd ["sh"]; labels saying it is a local stand-in. Every
// timestamp is the binary's mtime, so the same package gives the same
// image ID on every machine.
func BootstrapBusybox(ctx context.Context, s *Store) (digest.Digest, error) {
	bin := BusyboxBinary
	fi, err := os.Stat(bin)
	if err != nil {
		return "", fmt.Errorf("bootstrap busybox: %w (install it with: apt-get install busybox-static)", err)
	}
	if err := checkStatic(bin); err != nil {
		return "", fmt.Errorf("bootstrap busybox: %s: %w (install busybox-static: apt-get install busybox-static)", bin, err)
	}
	applets, version, err := busyboxApplets(ctx, bin)
	if err != nil {
		return "", fmt.Errorf("bootstrap busybox: %w", err)
	}
	mtime := fi.ModTime().Truncate(time.Second).UTC()

	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeBusyboxLayer(pw, bin, fi.Size(), applets, mtime)) }()
	info, err := s.PutLayer(ctx, pr)
	pr.Close()
	if err != nil {
		return "", fmt.Errorf("bootstrap busybox: %w", err)
	}
	cfg := &Config{
		Architecture: runtime.GOARCH,
		Config: &container.Config{
			Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			Cmd: []string{"sh"},
			Labels: map[string]string{
				StandInLabel:                           "true",
				"org.opencontainers.image.description": "labd stand-in for busybox, built locally from Debian's busybox-static (" + version + "); not the official image",
			},
		},
		Created: mtime,
		History: []History{
			{Created: mtime, CreatedBy: "/bin/sh -c #(nop) ADD file:" + info.DiffID.Encoded() + " in / "},
			{Created: mtime, CreatedBy: `/bin/sh -c #(nop)  CMD ["sh"]`, EmptyLayer: true},
		},
		OS:     "linux",
		RootFS: &RootFS{Type: "layers", DiffIDs: []digest.Digest{info.DiffID}},
	}
	raw, err := cfg.Marshal()
	if err != nil {
		return "", err
	}
	id, err := s.PutImage(ctx, raw)
	if err != nil {
		return "", fmt.Errorf("bootstrap busybox: %w", err)
	}
	base, err := s.View(BaseView)
	if err != nil {
		return "", err
	}
	if err := base.Add(id, "", false); err != nil {
		return "", fmt.Errorf("bootstrap busybox: %w", err)
	}
	if err := base.AddTag(id, "busybox:latest"); err != nil {
		return "", fmt.Errorf("bootstrap busybox: %w", err)
	}
	return id, nil
}

func checkStatic(bin string) error {
	f, err := elf.Open(bin)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("not statically linked")
		}
	}
	return nil
}

// busyboxApplets returns the applet names (base names, sorted, with
// "busybox") and the version banner.
func busyboxApplets(ctx context.Context, bin string) ([]string, string, error) {
	out, err := exec.CommandContext(ctx, bin, "--list-full").Output()
	if err != nil {
		return nil, "", fmt.Errorf("%s --list-full: %w", bin, err)
	}
	seen := map[string]bool{"busybox": true}
	for _, l := range strings.Fields(string(out)) {
		seen[path.Base(l)] = true
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	banner, _ := exec.CommandContext(ctx, bin).CombinedOutput() // exits 1 with the usage
	version, _, _ := strings.Cut(string(banner), "\n")
	version = strings.TrimSuffix(strings.TrimSpace(version), " multi-call binary.")
	return names, version, nil
}

// writeBusyboxLayer writes the layer the way layer.Diff would tar the
// same tree: lexical order, type bits in modes, root names.
func writeBusyboxLayer(w io.Writer, bin string, size int64, applets []string, mtime time.Time) error {
	tw := tar.NewWriter(w)
	hdr := func(typ byte, name string, mode int64) *tar.Header {
		return &tar.Header{Typeflag: typ, Name: name, Mode: mode, Uname: "root", Gname: "root", ModTime: mtime, Format: tar.FormatPAX}
	}
	dir := func(name string, perm int64) error { return tw.WriteHeader(hdr(tar.TypeDir, name+"/", 0o40000|perm)) }
	file := func(name string, data []byte) error {
		h := hdr(tar.TypeReg, name, 0o100644)
		h.Size = int64(len(data))
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := dir("bin", 0o755); err != nil {
		return err
	}
	first := ""
	for _, a := range applets {
		name := "bin/" + a
		if first != "" {
			h := hdr(tar.TypeLink, name, 0o100755)
			h.Linkname = first
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			continue
		}
		first = name
		h := hdr(tar.TypeReg, name, 0o100755)
		h.Size = size
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		f, err := os.Open(bin)
		if err != nil {
			return err
		}
		n, err := io.Copy(tw, f)
		f.Close()
		if err != nil {
			return err
		}
		if n != size {
			return fmt.Errorf("%s changed while reading", bin)
		}
	}
	steps := []func() error{
		func() error { return dir("dev", 0o755) },
		func() error { return dir("etc", 0o755) },
		func() error { return file("etc/group", []byte("root:x:0:\nnobody:x:65534:\n")) },
		func() error {
			return file("etc/passwd", []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"))
		},
		func() error { return dir("home", 0o755) },
		func() error { return dir("root", 0o700) },
		func() error { return dir("tmp", 0o1777) },
	}
	for _, st := range steps {
		if err := st(); err != nil {
			return err
		}
	}
	return tw.Close()
}
