package labs

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// StarterDir is a lab's folder of starter files: what every learner's new
// workspace begins with (the app's source, a half-written Dockerfile), so
// a lab keeps them in one place instead of in heredocs in its text.
const StarterDir = "workspace"

// Bounds of the starter files: they are copied into every new sandbox.
const (
	maxStarterBytes = 32 << 20
	maxStarterFiles = 2000
)

// starter checks dir/workspace and sets lab.Starter when there is one:
// folders, regular files and symlinks that stay inside it, within the
// bounds above. Problems name the entry.
func (p *parser) starter(lab *Lab) {
	root := filepath.Join(p.dir, StarterDir)
	fi, err := os.Lstat(root)
	if os.IsNotExist(err) {
		return
	}
	prob := func(path, msg string) { p.problems = append(p.problems, Problem{Path: path, Message: msg}) }
	if err != nil || !fi.IsDir() {
		prob(root, "starter files: workspace must be a folder")
		return
	}
	var size int64
	n := 0
	ok := true
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		n++
		if n > maxStarterFiles {
			return fmt.Errorf("more than %d files and folders", maxStarterFiles)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch m := info.Mode(); {
		case m.IsDir():
		case m.IsRegular():
			size += info.Size()
			if size > maxStarterBytes {
				return fmt.Errorf("more than %d MiB in all", maxStarterBytes>>20)
			}
		case m&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, filepath.Join(filepath.Dir(path), target))
			if filepath.IsAbs(target) || rel == ".." || strings.HasPrefix(rel, "../") {
				prob(path, fmt.Sprintf("starter files: symlink to %s leads out of the workspace folder", target))
				ok = false
			}
		default:
			prob(path, "starter files: only folders, files and symlinks can start a workspace")
			ok = false
		}
		return nil
	})
	if err != nil {
		prob(root, "starter files: "+err.Error())
		return
	}
	if ok {
		lab.Starter = root
	}
}

// WriteStarter writes the lab's starter files to w as a tar stream for a
// sandbox to unpack in its workspace: owned by the sandbox's root, modes
// as in the lab's folder. Nothing is written without starter files.
func (l *Lab) WriteStarter(w io.Writer) error {
	if l.Starter == "" {
		return nil
	}
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(l.Starter, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == l.Starter {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(l.Starter, path)
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			h.Name += "/"
		}
		h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "root", "root"
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, io.LimitReader(f, h.Size))
			f.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("starter files of %s: %w", l.ID, err)
	}
	return tw.Close()
}
