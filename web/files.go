package web

import (
	"archive/tar"
	"archive/zip"
	"compress/gzip"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Files of the learner's workspace (the shell's /root): list, download a
// file, download a directory as tar.gz or zip, upload files.
//
// The learner is root in the sandbox and labd is root on the host, so the
// workspace is hostile ground: its symlinks may point anywhere on the
// host, and its device nodes (mknod works in the container; only opening
// them is denied there) would be the host's devices if labd opened them.
// Hence every path is resolved with openat2 RESOLVE_BENEATH (a symlink or
// ".." leading out of the workspace is refused, whatever races the learner
// runs) and opened O_PATH first, which opens nothing for real; only what
// fstat then shows to be a regular file or a directory is reopened for
// reading, through that very descriptor. Archives store symlinks as
// symlinks and leave devices, FIFOs and sockets out.

// DefaultMaxUpload bounds one upload request's files together.
const DefaultMaxUpload = 100 << 20

// maxListEntries bounds a directory listing; the rest is reported as cut.
const maxListEntries = 2000

// maxArchiveDepth stops a pathological tree (each level holds a descriptor).
const maxArchiveDepth = 128

// uploadTempPrefix names files being uploaded; renamed into place when the
// whole request has arrived.
const uploadTempPrefix = ".labd-upload-"

var (
	errOutside  = errors.New("a symbolic link or “..” leads out of your workspace")
	errNotPlain = errors.New("not a regular file (devices, FIFOs and sockets cannot be downloaded)")
)

// cleanRel turns a path from the page into one relative to the workspace:
// "", "." and "~" are the workspace itself; "~/x" is x. Absolute paths and
// ".." are refused, never resolved.
func cleanRel(p string) (string, error) {
	if strings.ContainsRune(p, 0) {
		return "", errors.New("the path contains a NUL byte")
	}
	if p == "~" {
		p = "."
	}
	p = strings.TrimPrefix(p, "~/")
	if strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("%q is absolute: give a path relative to your home directory (/root), e.g. app.py", p)
	}
	var parts []string
	for _, e := range strings.Split(p, "/") {
		switch e {
		case "", ".":
		case "..":
			return "", fmt.Errorf("%q contains “..”: give a path inside your home directory", p)
		default:
			parts = append(parts, e)
		}
	}
	if len(parts) == 0 {
		return ".", nil
	}
	return strings.Join(parts, "/"), nil
}

// displayPath is rel as the learner sees it in the shell.
func displayPath(rel string) string {
	if rel == "." {
		return "~"
	}
	return "~/" + rel
}

// workspace is an O_PATH descriptor of a workspace directory.
type workspace struct{ fd int }

func openWorkspace(dir string) (*workspace, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open workspace: %w", err)
	}
	return &workspace{fd: fd}, nil
}

func (ws *workspace) Close() { unix.Close(ws.fd) }

// resolveFlags keep every lookup inside the workspace: no "..", absolute
// or symlinked way out, no /proc magic links, no other mount.
const resolveFlags = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

// openPath opens rel beneath dirfd with O_PATH (extra flags, e.g.
// O_NOFOLLOW, added) and fstats it.
func openPath(dirfd int, rel string, flags uint64, resolve uint64) (int, *unix.Stat_t, error) {
	how := unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC | flags, Resolve: resolveFlags | resolve}
	var fd int
	var err error
	for range 16 {
		// EAGAIN: a rename raced the lookup; the kernel asks to retry.
		if fd, err = unix.Openat2(dirfd, rel, &how); err != unix.EAGAIN && err != unix.EINTR {
			break
		}
	}
	switch {
	case errors.Is(err, unix.EXDEV):
		return -1, nil, errOutside
	case errors.Is(err, unix.ENOENT):
		return -1, nil, fs.ErrNotExist
	case errors.Is(err, unix.ELOOP):
		return -1, nil, errors.New("too many levels of symbolic links")
	case errors.Is(err, unix.ENOTDIR):
		return -1, nil, errors.New("a part of the path is not a directory")
	case err != nil:
		return -1, nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, nil, err
	}
	return fd, &st, nil
}

// reopenFile opens the regular file behind an O_PATH descriptor for
// reading: through /proc/self/fd, the inode already checked, not a path
// the learner could change meanwhile.
func reopenFile(pathFD int) (*os.File, error) {
	p := "/proc/self/fd/" + strconv.Itoa(pathFD)
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("reopen: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, errNotPlain
	}
	// Reads of regular files never block; clearing O_NONBLOCK keeps Go's
	// poller out of it.
	_ = unix.SetNonblock(fd, false)
	return os.NewFile(uintptr(fd), p), nil
}

// reopenDir opens the directory behind an O_PATH descriptor for reading.
func reopenDir(pathFD int) (*os.File, error) {
	fd, err := unix.Openat(pathFD, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open directory: %w", err)
	}
	return os.NewFile(uintptr(fd), "."), nil
}

// fileError answers a failed lookup of rel.
func fileError(w http.ResponseWriter, rel string, err error) {
	status := http.StatusBadRequest
	switch {
	case errors.Is(err, fs.ErrNotExist):
		status = http.StatusNotFound
		err = errors.New("no such file or directory")
	case errors.Is(err, errOutside):
		status = http.StatusForbidden
	}
	http.Error(w, displayPath(rel)+": "+err.Error(), status)
}

// ---- list ---------------------------------------------------------------

type fileEntry struct {
	Name   string    `json:"name"`
	Type   string    `json:"type"` // file, dir, symlink, other
	Size   int64     `json:"size"`
	Mode   string    `json:"mode"`
	MTime  time.Time `json:"mtime"`
	Target string    `json:"target,omitempty"` // of a symlink
}

type fileList struct {
	Path      string      `json:"path"`    // relative to the workspace, "." for itself
	Display   string      `json:"display"` // as the shell shows it (~/...)
	Entries   []fileEntry `json:"entries"`
	Truncated bool        `json:"truncated,omitempty"`
	MaxUpload int64       `json:"maxUpload"` // bytes one upload may hold
}

// openRequested asks access whether the request may use the sandbox's
// files (routeFilesRead or routeFilesWrite: the owner, or the instructor,
// who also reaches the kept workspace of a sandbox that has ended), reads
// the workspace-relative path from the query parameter param and opens
// the workspace; on false it has answered.
func (s *server) openRequested(w http.ResponseWriter, r *http.Request, k routeKind, param string) (ws *workspace, rel string, ok bool) {
	sid := r.PathValue("sid")
	g, ok := s.access(w, r, k, sid, 0)
	if !ok {
		return nil, "", false
	}
	if g.sb != nil && g.learner == g.owner {
		s.opts.Sandboxes.Touch(sid)
	}
	rel, err := cleanRel(r.URL.Query().Get(param))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return nil, "", false
	}
	ws, err = openWorkspace(g.workspace)
	if err != nil {
		s.log.Error("files: open workspace", "dir", g.workspace, "err", err)
		http.Error(w, "cannot open the workspace", http.StatusInternalServerError)
		return nil, "", false
	}
	return ws, rel, true
}

// filesList answers GET /sandboxes/{sid}/files?path=DIR with DIR's
// entries as JSON (symlinks not followed).
func (s *server) filesList(w http.ResponseWriter, r *http.Request) {
	ws, rel, ok := s.openRequested(w, r, routeFilesRead, "path")
	if !ok {
		return
	}
	defer ws.Close()
	fd, _, err := openPath(ws.fd, rel, unix.O_DIRECTORY, 0)
	if err != nil {
		fileError(w, rel, err)
		return
	}
	defer unix.Close(fd)
	d, err := reopenDir(fd)
	if err != nil {
		fileError(w, rel, err)
		return
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		fileError(w, rel, err)
		return
	}
	slices.Sort(names)
	out := fileList{Path: rel, Display: displayPath(rel), Entries: []fileEntry{}, MaxUpload: s.maxUpload()}
	if len(names) > maxListEntries {
		names, out.Truncated = names[:maxListEntries], true
	}
	for _, name := range names {
		var est unix.Stat_t
		if err := unix.Fstatat(int(d.Fd()), name, &est, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			continue // gone meanwhile
		}
		e := fileEntry{Name: name, Size: est.Size, Mode: fs.FileMode(est.Mode & 0o7777).String()[1:],
			MTime: time.Unix(est.Mtim.Unix()).UTC()}
		switch est.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			e.Type = "file"
		case unix.S_IFDIR:
			e.Type = "dir"
		case unix.S_IFLNK:
			e.Type = "symlink"
			e.Target = readlinkAt(int(d.Fd()), name)
		default:
			e.Type = "other"
		}
		out.Entries = append(out.Entries, e)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(out)
}

func readlinkAt(dirfd int, name string) string {
	buf := make([]byte, 4096)
	n, err := unix.Readlinkat(dirfd, name, buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

// ---- download -------------------------------------------------------------

// fileDownload answers GET /sandboxes/{sid}/files/download?path=FILE with
// the file's bytes as an attachment (never rendered by labd's origin).
func (s *server) fileDownload(w http.ResponseWriter, r *http.Request) {
	ws, rel, ok := s.openRequested(w, r, routeFilesRead, "path")
	if !ok {
		return
	}
	defer ws.Close()
	fd, st, err := openPath(ws.fd, rel, 0, 0)
	if err != nil {
		fileError(w, rel, err)
		return
	}
	defer unix.Close(fd)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
	case unix.S_IFDIR:
		fileError(w, rel, errors.New("is a directory: download it as an archive"))
		return
	default:
		fileError(w, rel, errNotPlain)
		return
	}
	f, err := reopenFile(fd)
	if err != nil {
		fileError(w, rel, err)
		return
	}
	defer f.Close()
	name := path.Base(rel)
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	h.Set("Cache-Control", "no-store")
	http.ServeContent(w, r, name, time.Unix(st.Mtim.Unix()), f)
}

// ---- archive --------------------------------------------------------------

// archiveWriter is what tar and zip have in common for the walk.
type archiveWriter interface {
	dir(name string, st *unix.Stat_t) error
	file(name string, st *unix.Stat_t, r io.Reader) error
	symlink(name, target string, st *unix.Stat_t) error
	Close() error
}

// filesArchive answers GET /sandboxes/{sid}/files/archive?path=DIR&format=
// tar.gz|zip with DIR (default: the whole workspace) as an archive whose
// entries sit under one top directory named after DIR.
func (s *server) filesArchive(w http.ResponseWriter, r *http.Request) {
	format := r.URL.Query().Get("format")
	if format == "" {
		format = "tar.gz"
	}
	if format != "tar.gz" && format != "zip" {
		http.Error(w, fmt.Sprintf("unknown archive format %q: use tar.gz or zip", format), http.StatusBadRequest)
		return
	}
	ws, rel, ok := s.openRequested(w, r, routeFilesRead, "path")
	if !ok {
		return
	}
	defer ws.Close()
	fd, st, err := openPath(ws.fd, rel, unix.O_DIRECTORY, 0)
	if err != nil {
		fileError(w, rel, err)
		return
	}
	defer unix.Close(fd)

	top := "workspace"
	if rel != "." {
		top = path.Base(rel)
	}
	h := w.Header()
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": top + "." + format}))
	h.Set("Cache-Control", "no-store")
	var aw archiveWriter
	if format == "zip" {
		h.Set("Content-Type", "application/zip")
		aw = &zipArchive{zw: zip.NewWriter(w)}
	} else {
		h.Set("Content-Type", "application/gzip")
		gz := gzip.NewWriter(w)
		aw = &tarArchive{gz: gz, tw: tar.NewWriter(gz)}
	}
	err = aw.dir(top, st)
	if err == nil {
		err = walkArchive(aw, fd, top, 0)
	}
	if err == nil {
		err = aw.Close()
	}
	if err != nil {
		// The status line is gone: abort the response so the browser
		// reports a failed download instead of keeping a cut archive.
		if r.Context().Err() == nil {
			s.log.Warn("files: archive", "sandbox", r.PathValue("sid"), "path", rel, "err", err)
		}
		panic(http.ErrAbortHandler)
	}
}

// walkArchive adds the entries of the directory behind dirPathFD, without
// following any symlink: each entry is opened O_PATH|O_NOFOLLOW with
// RESOLVE_NO_SYMLINKS by its single name relative to its parent.
func walkArchive(aw archiveWriter, dirPathFD int, prefix string, depth int) error {
	if depth > maxArchiveDepth {
		return fmt.Errorf("%s: directories nested deeper than %d", prefix, maxArchiveDepth)
	}
	d, err := reopenDir(dirPathFD)
	if err != nil {
		return err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", prefix, err)
	}
	slices.Sort(names)
	for _, name := range names {
		if strings.HasPrefix(name, uploadTempPrefix) {
			continue
		}
		fd, st, err := openPath(dirPathFD, name, unix.O_NOFOLLOW, unix.RESOLVE_NO_SYMLINKS)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed meanwhile
		}
		if err != nil {
			return fmt.Errorf("%s/%s: %w", prefix, name, err)
		}
		err = addEntry(aw, fd, st, prefix+"/"+name, depth)
		unix.Close(fd)
		if err != nil {
			return err
		}
	}
	return nil
}

func addEntry(aw archiveWriter, fd int, st *unix.Stat_t, name string, depth int) error {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		if err := aw.dir(name, st); err != nil {
			return err
		}
		return walkArchive(aw, fd, name, depth+1)
	case unix.S_IFREG:
		f, err := reopenFile(fd)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		defer f.Close()
		return aw.file(name, st, f)
	case unix.S_IFLNK:
		buf := make([]byte, 4096)
		n, err := unix.Readlinkat(fd, "", buf)
		if err != nil {
			return fmt.Errorf("%s: read link: %w", name, err)
		}
		return aw.symlink(name, string(buf[:n]), st)
	default:
		return nil // devices, FIFOs, sockets: not workspace content
	}
}

type tarArchive struct {
	gz *gzip.Writer
	tw *tar.Writer
}

func tarHeader(name string, st *unix.Stat_t) *tar.Header {
	return &tar.Header{Name: name, Mode: int64(st.Mode & 0o7777), Uid: int(st.Uid), Gid: int(st.Gid),
		ModTime: time.Unix(st.Mtim.Unix()), Format: tar.FormatPAX}
}

func (a *tarArchive) dir(name string, st *unix.Stat_t) error {
	h := tarHeader(name+"/", st)
	h.Typeflag = tar.TypeDir
	return a.tw.WriteHeader(h)
}

func (a *tarArchive) file(name string, st *unix.Stat_t, r io.Reader) error {
	h := tarHeader(name, st)
	h.Typeflag = tar.TypeReg
	h.Size = st.Size
	if err := a.tw.WriteHeader(h); err != nil {
		return err
	}
	return copyExactly(a.tw, r, st.Size)
}

func (a *tarArchive) symlink(name, target string, st *unix.Stat_t) error {
	h := tarHeader(name, st)
	h.Typeflag = tar.TypeSymlink
	h.Linkname = target
	return a.tw.WriteHeader(h)
}

func (a *tarArchive) Close() error {
	if err := a.tw.Close(); err != nil {
		return err
	}
	return a.gz.Close()
}

// copyExactly copies size bytes, padding with zeros if the file shrank
// while being read (a tar entry's size is fixed by its header; the
// learner's processes keep running).
func copyExactly(w io.Writer, r io.Reader, size int64) error {
	n, err := io.Copy(w, io.LimitReader(r, size))
	if err != nil {
		return err
	}
	if n < size {
		_, err = io.CopyN(w, zeros{}, size-n)
	}
	return err
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

type zipArchive struct{ zw *zip.Writer }

func zipHeader(name string, st *unix.Stat_t, mode fs.FileMode) *zip.FileHeader {
	h := &zip.FileHeader{Name: name, Method: zip.Deflate, Modified: time.Unix(st.Mtim.Unix())}
	h.SetMode(mode | fs.FileMode(st.Mode&0o777))
	return h
}

func (a *zipArchive) dir(name string, st *unix.Stat_t) error {
	h := zipHeader(name+"/", st, fs.ModeDir)
	h.Method = zip.Store
	_, err := a.zw.CreateHeader(h)
	return err
}

func (a *zipArchive) file(name string, st *unix.Stat_t, r io.Reader) error {
	fw, err := a.zw.CreateHeader(zipHeader(name, st, 0))
	if err != nil {
		return err
	}
	_, err = io.Copy(fw, r)
	return err
}

func (a *zipArchive) symlink(name, target string, st *unix.Stat_t) error {
	h := zipHeader(name, st, fs.ModeSymlink)
	h.Method = zip.Store
	fw, err := a.zw.CreateHeader(h)
	if err != nil {
		return err
	}
	_, err = io.WriteString(fw, target)
	return err
}

func (a *zipArchive) Close() error { return a.zw.Close() }

// ---- upload ---------------------------------------------------------------

type uploaded struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
}

type uploadResult struct {
	Dir     string     `json:"dir"`
	Display string     `json:"display"`
	Files   []uploaded `json:"files"`
}

// multipartSlack is what a multipart body may hold besides the files'
// bytes (boundaries, part headers).
const multipartSlack = 1 << 20

func (s *server) maxUpload() int64 {
	if s.opts.MaxUpload > 0 {
		return s.opts.MaxUpload
	}
	return DefaultMaxUpload
}

// filesUpload answers POST /sandboxes/{sid}/files?dir=DIR (multipart,
// any number of file parts): the files land in DIR (made if missing),
// root-owned 0644, replacing files of the same name. Each is written to
// a temporary name first and all are renamed into place only once the
// whole request has arrived, so a refused or broken upload leaves
// nothing behind.
func (s *server) filesUpload(w http.ResponseWriter, r *http.Request) {
	ws, rel, ok := s.openRequested(w, r, routeFilesWrite, "dir")
	if !ok {
		return
	}
	defer ws.Close()
	limit := s.maxUpload()
	if r.ContentLength > limit+multipartSlack {
		http.Error(w, tooLarge(r.ContentLength, limit), http.StatusRequestEntityTooLarge)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, limit+multipartSlack)
	mr, err := r.MultipartReader()
	if err != nil {
		http.Error(w, "upload: want a multipart/form-data body with file parts", http.StatusBadRequest)
		return
	}
	dirfd, err := mkdirAll(ws.fd, rel)
	if err != nil {
		fileError(w, rel, err)
		return
	}
	defer unix.Close(dirfd)

	type pending struct {
		tmp, name string
		size      int64
	}
	var files []pending
	committed := false
	defer func() {
		if committed {
			return
		}
		for _, f := range files {
			_ = unix.Unlinkat(dirfd, f.tmp, 0)
		}
	}()
	var total int64
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			uploadError(w, err, r.ContentLength, limit)
			return
		}
		if part.FileName() == "" {
			part.Close()
			continue // other form fields
		}
		name, err := uploadName(part.FileName())
		if err != nil {
			part.Close()
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		tmp, n, err := writeTemp(dirfd, part, limit-total)
		part.Close()
		if tmp != "" {
			files = append(files, pending{tmp: tmp, name: name, size: n})
		}
		total += n
		if err != nil {
			uploadError(w, err, r.ContentLength, limit)
			return
		}
	}
	if len(files) == 0 {
		http.Error(w, "upload: no files in the request", http.StatusBadRequest)
		return
	}
	// A directory of the same name would make its rename fail halfway.
	for _, f := range files {
		var st unix.Stat_t
		if err := unix.Fstatat(dirfd, f.name, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			http.Error(w, displayPath(path.Join(rel, f.name))+": a directory of that name exists", http.StatusConflict)
			return
		}
	}
	res := uploadResult{Dir: rel, Display: displayPath(rel)}
	for i, f := range files {
		// renameat replaces a symlink of that name, never what it points to.
		if err := unix.Renameat(dirfd, f.tmp, dirfd, f.name); err != nil {
			for _, g := range files[i:] {
				_ = unix.Unlinkat(dirfd, g.tmp, 0)
			}
			committed = true
			http.Error(w, displayPath(path.Join(rel, f.name))+": "+err.Error(), http.StatusConflict)
			return
		}
		res.Files = append(res.Files, uploaded{Name: f.name, Size: f.size})
	}
	committed = true
	s.log.Info("files uploaded", "sandbox", r.PathValue("sid"), "dir", rel, "files", len(res.Files), "bytes", total)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(res)
}

var errTooLarge = errors.New("upload too large")

func tooLarge(size, limit int64) string {
	if size > 0 {
		return fmt.Sprintf("upload too large: %s, the limit is %s per upload", mib(size), mib(limit))
	}
	return fmt.Sprintf("upload too large: the limit is %s per upload", mib(limit))
}

func mib(n int64) string {
	return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
}

func uploadError(w http.ResponseWriter, err error, size, limit int64) {
	var mbe *http.MaxBytesError
	if errors.Is(err, errTooLarge) || errors.As(err, &mbe) {
		http.Error(w, tooLarge(size, limit), http.StatusRequestEntityTooLarge)
		return
	}
	http.Error(w, "upload failed: "+err.Error(), http.StatusBadRequest)
}

// uploadName checks a file name from the browser: one plain name.
func uploadName(n string) (string, error) {
	switch {
	case n == "" || n == "." || n == "..":
		return "", fmt.Errorf("upload: %q is not a file name", n)
	case strings.ContainsAny(n, "/\x00"):
		return "", fmt.Errorf("upload: %q: a file name cannot contain / or NUL", n)
	case strings.HasPrefix(n, uploadTempPrefix):
		return "", fmt.Errorf("upload: %q: names starting with %s are labd's", n, uploadTempPrefix)
	}
	return n, nil
}

// mkdirAll makes rel's missing directories (0755) beneath wsfd and returns
// an O_PATH descriptor of rel. Each level is looked up again beneath the
// workspace, so a symlink swapped in anywhere cannot lead out.
func mkdirAll(wsfd int, rel string) (int, error) {
	if rel != "." {
		parts := strings.Split(rel, "/")
		for i := range parts {
			p := strings.Join(parts[:i+1], "/")
			fd, st, err := openPath(wsfd, p, 0, 0)
			if err == nil {
				unix.Close(fd)
				if st.Mode&unix.S_IFMT != unix.S_IFDIR {
					return -1, fmt.Errorf("%s is not a directory", displayPath(p))
				}
				continue
			}
			if !errors.Is(err, fs.ErrNotExist) {
				return -1, err
			}
			parent, _, err := openPath(wsfd, path.Dir(p), unix.O_DIRECTORY, 0)
			if err != nil {
				return -1, err
			}
			// mkdirat does not follow a symlink in the last place: a
			// dangling one there is EEXIST, then refused by the lookup.
			err = unix.Mkdirat(parent, parts[i], 0o755)
			unix.Close(parent)
			if err != nil && !errors.Is(err, unix.EEXIST) {
				return -1, fmt.Errorf("make %s: %w", displayPath(p), err)
			}
		}
	}
	fd, _, err := openPath(wsfd, rel, unix.O_DIRECTORY, 0)
	return fd, err
}

// writeTemp copies r into a new file beneath dirfd (never an existing
// one: O_EXCL) and returns its name, or "" if none was made. Past max
// bytes it stops with errTooLarge.
func writeTemp(dirfd int, r io.Reader, max int64) (string, int64, error) {
	var rnd [8]byte
	rand.Read(rnd[:])
	tmp := uploadTempPrefix + hex.EncodeToString(rnd[:])
	fd, err := unix.Openat(dirfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return "", 0, fmt.Errorf("create file: %w", err)
	}
	f := os.NewFile(uintptr(fd), tmp)
	defer f.Close()
	// Whatever labd's umask: the learner's tools expect a plain 0644 file.
	if err := f.Chmod(0o644); err != nil {
		return tmp, 0, err
	}
	n, err := io.Copy(f, io.LimitReader(r, max+1))
	if err != nil {
		return tmp, n, err
	}
	if n > max {
		return tmp, n, errTooLarge
	}
	return tmp, n, nil
}
