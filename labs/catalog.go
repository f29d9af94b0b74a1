package labs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// ErrNotFound is returned (wrapped) for unknown or malformed lab IDs and
// for lab files that do not exist.
var ErrNotFound = errors.New("not found")

// BrokenError is returned by Catalog.Get for a lab that has problems.
type BrokenError struct {
	ID       string
	Problems []Problem
}

func (e *BrokenError) Error() string {
	if len(e.Problems) == 0 {
		return "lab " + e.ID + " is broken"
	}
	msg := fmt.Sprintf("lab %s is broken: %s", e.ID, e.Problems[0])
	if n := len(e.Problems) - 1; n > 0 {
		msg += fmt.Sprintf(" (and %d more)", n)
	}
	return msg
}

// Entry is one lab folder as listed by Catalog.List. Lab is nil when the
// lab has problems.
type Entry struct {
	ID       string
	Lab      *Lab
	Problems []Problem
}

// Catalog serves the labs of a content root, rendering each lab once and
// again only when its lab.md or its folder changes (mtime or size), so that
// an author's edit shows on the next request. It is safe for concurrent use.
type Catalog struct {
	root string

	mu    sync.Mutex
	cache map[string]*cached
}

// stamp identifies a version of a file well enough to notice edits.
type stamp struct {
	mod  time.Time
	size int64
}

type cached struct {
	file, dir stamp
	lab       *Lab
	problems  []Problem
}

// NewCatalog returns a catalog of the lab folders in root. Nothing is read
// until the first List or Get.
func NewCatalog(root string) *Catalog {
	return &Catalog{root: root, cache: map[string]*cached{}}
}

// List returns every lab folder under the root, sorted by ID, including
// broken ones (with their problems). Entries that are not labs (plain
// files, folders without lab.md) and folders whose names are not valid lab
// IDs are skipped: Lint warns about the former and reports the latter.
func (c *Catalog) List() []Entry {
	ents, err := os.ReadDir(c.root)
	if err != nil {
		return nil
	}
	seen := map[string]bool{}
	var out []Entry
	for _, de := range ents {
		id := de.Name()
		if !ValidID(id) || !IsLab(filepath.Join(c.root, id)) {
			continue
		}
		seen[id] = true
		lab, problems := c.load(id)
		if len(problems) > 0 {
			lab = nil
		}
		out = append(out, Entry{ID: id, Lab: lab, Problems: problems})
	}
	c.mu.Lock()
	for id := range c.cache {
		if !seen[id] {
			delete(c.cache, id)
		}
	}
	c.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Get returns the rendered lab. It returns an error wrapping ErrNotFound when
// id is not a valid lab ID or no such lab folder (with lab.md) exists, and a
// *BrokenError when the lab has problems.
func (c *Catalog) Get(id string) (*Lab, error) {
	if !ValidID(id) || !IsLab(filepath.Join(c.root, id)) {
		c.forget(id)
		return nil, fmt.Errorf("lab %q: %w", id, ErrNotFound)
	}
	lab, problems := c.load(id)
	if len(problems) > 0 {
		return nil, &BrokenError{ID: id, Problems: problems}
	}
	return lab, nil
}

func (c *Catalog) forget(id string) {
	c.mu.Lock()
	delete(c.cache, id)
	c.mu.Unlock()
}

// load returns the cached rendering of a lab, re-rendering it when its
// stamps changed. Rendering happens outside the lock so one slow lab does not
// hold up the others; two concurrent re-renders of one lab are harmless.
func (c *Catalog) load(id string) (*Lab, []Problem) {
	dir := filepath.Join(c.root, id)
	file, dirStamp := statStamp(filepath.Join(dir, labFile)), statStamp(dir)
	c.mu.Lock()
	e := c.cache[id]
	c.mu.Unlock()
	if e != nil && e.file == file && e.dir == dirStamp {
		return e.lab, e.problems
	}
	lab, problems := Load(dir)
	c.mu.Lock()
	c.cache[id] = &cached{file: file, dir: dirStamp, lab: lab, problems: problems}
	c.mu.Unlock()
	return lab, problems
}

func statStamp(path string) stamp {
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{size: -1}
	}
	return stamp{mod: fi.ModTime(), size: fi.Size()}
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

// File returns the absolute path of the file rel inside the lab's folder,
// for serving images and other lab files. rel uses slashes; it must stay
// inside the folder after symlinks are followed, and no part of it may
// start with "." (so nothing like .git is served). Any violation, and a
// missing file or a folder, gives an error wrapping ErrNotFound.
func (c *Catalog) File(id, rel string) (string, error) {
	notFound := fmt.Errorf("lab %q file %q: %w", id, rel, ErrNotFound)
	if !ValidID(id) || rel == "" || strings.Contains(rel, "\\") {
		return "", notFound
	}
	for _, part := range strings.Split(rel, "/") {
		if part == "" || strings.HasPrefix(part, ".") {
			return "", notFound
		}
	}
	local := filepath.FromSlash(rel)
	if !filepath.IsLocal(local) {
		return "", notFound
	}
	dir, err := filepath.Abs(filepath.Join(c.root, id))
	if err != nil {
		return "", fmt.Errorf("lab %q: %w", id, err)
	}
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", notFound
	}
	real, err := filepath.EvalSymlinks(filepath.Join(realDir, local))
	if err != nil {
		return "", notFound
	}
	inside, err := filepath.Rel(realDir, real)
	if err != nil || !filepath.IsLocal(inside) {
		return "", notFound
	}
	fi, err := os.Stat(real)
	if err != nil || !fi.Mode().IsRegular() {
		return "", notFound
	}
	return real, nil
}
