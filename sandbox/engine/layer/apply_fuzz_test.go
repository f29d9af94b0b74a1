package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fuzzOutside is a directory beside no layer, named in the seeds'
// absolute symlinks and hard links: a write through them lands here if
// Apply lets it.
var fuzzOutside = filepath.Join(os.TempDir(), "labd-layer-fuzz-outside")

// FuzzApply extracts arbitrary tars (learners load them) with Apply. It
// must write nothing outside its directory, whatever the tar's names,
// links and types; what it extracts must tar back (Diff) to a layer that
// extracts to the same tree; and the size it reports is bounded by what
// the tar holds.
func FuzzApply(f *testing.F) {
	if err := os.MkdirAll(fuzzOutside, 0o755); err != nil {
		f.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(fuzzOutside, "target"), []byte("keep"), 0o644); err != nil {
		f.Fatal(err)
	}
	// A real layer: what Diff makes of an upper dir with every kind of
	// entry (hard link, symlink, whiteout, opaque dir, capability).
	var real bytes.Buffer
	if _, _, err := Diff(context.Background(), makeUpper(f), &real); err != nil {
		f.Fatal(err)
	}
	f.Add(real.Bytes())
	huge := &tar.Header{Name: "big", Typeflag: tar.TypeReg, Size: 1 << 40, Mode: 0o644}
	for _, entries := range [][]*tar.Header{
		{{Name: "../pwned", Typeflag: tar.TypeReg}},
		{{Name: "a/../../pwned", Typeflag: tar.TypeReg}},
		{{Name: "/abs/file", Typeflag: tar.TypeReg}},
		{{Name: "evil", Typeflag: tar.TypeSymlink, Linkname: fuzzOutside}, {Name: "evil/pwned", Typeflag: tar.TypeReg}},
		{{Name: "evil", Typeflag: tar.TypeSymlink, Linkname: "../../../../../.." + fuzzOutside}, {Name: "evil/pwned", Typeflag: tar.TypeReg}},
		{{Name: "evil", Typeflag: tar.TypeSymlink, Linkname: fuzzOutside}, {Name: "evil/.wh.target", Typeflag: tar.TypeReg}},
		{{Name: "evil", Typeflag: tar.TypeSymlink, Linkname: fuzzOutside}, {Name: "evil/.wh..wh..opq", Typeflag: tar.TypeReg}},
		{{Name: "h", Typeflag: tar.TypeLink, Linkname: fuzzOutside + "/target"}},
		{{Name: "h", Typeflag: tar.TypeLink, Linkname: "../../../../../../.." + fuzzOutside + "/target"}},
		{{Name: "d", Typeflag: tar.TypeDir, Mode: 0o755}, {Name: "d/s", Typeflag: tar.TypeSymlink, Linkname: ".."}, {Name: "d/s/s2", Typeflag: tar.TypeSymlink, Linkname: "../.."}, {Name: "d/s/s2/x", Typeflag: tar.TypeReg}},
		{{Name: "s", Typeflag: tar.TypeSymlink, Linkname: "/"}, {Name: "s", Typeflag: tar.TypeDir, Mode: 0o755}, {Name: "s/x", Typeflag: tar.TypeReg}},
		{{Name: "null", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3}, {Name: "sda", Typeflag: tar.TypeBlock, Devmajor: 8}, {Name: "fifo", Typeflag: tar.TypeFifo}},
		{{Name: "x", Typeflag: tar.TypeReg, Mode: 0o7777, Uid: 1 << 30, Gid: -1, PAXRecords: map[string]string{"SCHILY.xattr.trusted.overlay.opaque": "y", "SCHILY.xattr.security.capability": "\x01"}}},
		{{Name: strings.Repeat("a/", 200) + "f", Typeflag: tar.TypeReg}},
		{{Name: "f", Typeflag: tar.TypeReg, PAXRecords: map[string]string{"comment": strings.Repeat("x", 1<<16)}}},
		{huge},
	} {
		f.Add(tarOf(f, entries))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		logical, ok := tarBounds(data)
		if !ok {
			// Beyond what a fuzz run can write: a tiny (sparse or
			// truncated) tar may claim terabytes. Apply reads it all,
			// as dockerd does; disk quotas bound it, not Apply.
			return
		}
		parent := t.TempDir()
		dst := filepath.Join(parent, "layer")
		if err := os.Mkdir(dst, 0o755); err != nil {
			t.Fatal(err)
		}
		probes := escapeProbes(data, dst)
		before := map[string]bool{}
		for _, p := range probes {
			_, err := os.Lstat(p)
			before[p] = err == nil
		}
		size, err := Apply(context.Background(), bytes.NewReader(data), dst)
		checkConfined(t, parent, probes, before)
		if err != nil {
			return
		}
		if size < 0 || size > logical {
			t.Fatalf("Apply reports %d bytes for a tar of %d", size, logical)
		}
		// The tree is a layer again: Diff, Apply, Diff gives the same bytes.
		var d1 bytes.Buffer
		id1, _, err := Diff(context.Background(), dst, &d1)
		if err != nil {
			t.Fatalf("Diff of an applied layer: %v", err)
		}
		dst2 := filepath.Join(parent, "again")
		if err := os.Mkdir(dst2, 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := Apply(context.Background(), bytes.NewReader(d1.Bytes()), dst2); err != nil {
			t.Fatalf("Apply of Diff(Apply(x)): %v", err)
		}
		id2, _, err := Diff(context.Background(), dst2, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if id1 != id2 {
			t.Fatalf("Diff(Apply(Diff(Apply(x)))) = %s, want %s", id2, id1)
		}
	})
}

// checkConfined fails t if anything beside dst in parent, in
// fuzzOutside, or at a host path the tar names changed.
func checkConfined(t *testing.T, parent string, probes []string, before map[string]bool) {
	t.Helper()
	names, _ := os.ReadDir(parent)
	if len(names) != 1 {
		t.Fatalf("Apply wrote beside its directory: %v", names)
	}
	out, _ := os.ReadDir(fuzzOutside)
	if len(out) != 1 || out[0].Name() != "target" {
		t.Fatalf("Apply changed %s: %v", fuzzOutside, out)
	}
	fi, err := os.Lstat(filepath.Join(fuzzOutside, "target"))
	if err != nil || fi.Sys().(*syscall.Stat_t).Nlink != 1 || fi.Size() != 4 {
		t.Fatalf("Apply linked to or changed %s/target: %v", fuzzOutside, err)
	}
	for _, p := range probes {
		if _, err := os.Lstat(p); (err == nil) != before[p] {
			t.Fatalf("Apply changed %s outside its directory", p)
		}
	}
}

// escapeProbes lists the host paths outside dst an escaping Apply would
// create: each entry's name taken from the host root, and joined to each
// symlink's target (absolute, or relative to the symlink) it sits under.
func escapeProbes(data []byte, dst string) []string {
	var probes []string
	links := map[string]string{}
	tr := tar.NewReader(bytes.NewReader(data))
	for len(probes) < 1000 {
		hdr, err := tr.Next()
		if err != nil {
			break
		}
		name := path.Clean("/" + hdr.Name)
		cands := []string{name, filepath.Join(dst, "..", hdr.Name)}
		for l, target := range links {
			if rest, ok := strings.CutPrefix(name, l+"/"); ok {
				if !path.IsAbs(target) {
					target = filepath.Join(dst, path.Dir(l), target)
				}
				cands = append(cands, filepath.Join(target, rest))
			}
		}
		for _, c := range cands {
			if c != dst && !strings.HasPrefix(c, dst+"/") && !strings.HasPrefix(c, "/proc/") && !strings.HasPrefix(c, "/sys/") && !strings.HasPrefix(c, "/dev/") {
				probes = append(probes, c)
			}
		}
		if hdr.Typeflag == tar.TypeSymlink {
			links[name] = hdr.Linkname
		}
	}
	return probes
}

// tarBounds reads the tar and returns the most bytes Apply may report
// for it: regular files' sizes and symlinks' targets. ok is false for
// tars too big to extract in a fuzz run.
func tarBounds(data []byte) (int64, bool) {
	var n int64
	depth := 0
	tr := tar.NewReader(bytes.NewReader(data))
	for entries := 0; ; entries++ {
		hdr, err := tr.Next()
		if err != nil || entries > 256 {
			return n, entries <= 256
		}
		depth += strings.Count(hdr.Name, "/") + strings.Count(hdr.Linkname, "/")
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
			n += hdr.Size
		case tar.TypeSymlink:
			n += int64(len(hdr.Linkname))
		}
		// Deep names cost Apply time quadratic in their depth (go-archive
		// resolves each component in an os.Root): kept shallow here.
		if hdr.Size > 1<<20 || n > 1<<20 || depth > 1024 {
			return n, false
		}
	}
}

func tarOf(tb testing.TB, entries []*tar.Header) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range entries {
		if h.Typeflag == tar.TypeReg && h.Size == 0 {
			h.Size = 1
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		h.ModTime = time.Unix(1700000000, 0)
		if err := tw.WriteHeader(h); err != nil {
			tb.Fatal(err)
		}
		if h.Size > 0 && h.Size < 1<<20 {
			tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
		}
	}
	tw.Flush()
	return buf.Bytes()
}
