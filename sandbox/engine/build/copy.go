package build

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/docker/docker/pkg/tarsum"
	"github.com/labd/labd/internal/safefile"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/go-archive"
	"github.com/moby/sys/user"
	"golang.org/x/sys/unix"
)

// copySource is where COPY/ADD read from: the build context, or the
// mounted filesystem of an image or earlier stage (--from).
type copySource struct {
	root    string
	ctx     *buildContext     // nil for an image source
	sums    map[string]string // lazy hashes of an image source
	isImage bool
}

// hash is dockerd's Source.Hash: symlinks in the path are followed inside
// the source first (so a link hashes as its target).
func (s *copySource) hash(rel string) (string, error) {
	full, err := scopedPath(s.root, rel)
	if err != nil {
		return "", err
	}
	if rel, err = filepath.Rel(s.root, full); err != nil {
		return "", err
	}
	if s.ctx != nil {
		return s.ctx.hash(rel), nil
	}
	if h, ok := s.sums[rel]; ok {
		return h, nil
	}
	// dockerd's lazySource: a tarsum-style hash of the file on disk.
	p := full
	fi, err := os.Lstat(p)
	if err != nil {
		return "", err
	}
	var link string
	if fi.Mode()&os.ModeSymlink != 0 {
		if link, err = os.Readlink(p); err != nil {
			return "", err
		}
	}
	hdr, err := legacyFileInfoHeader(rel, fi, link)
	if err != nil {
		return "", err
	}
	if err := archive.ReadSecurityXattrToTarHeader(p, hdr); err != nil {
		return "", err
	}
	h := sha256.New()
	tarsum.WriteV1Header(hdr, h)
	if fi.Mode().IsRegular() && fi.Size() > 0 {
		f, err := safefile.OpenNoFollow(p)
		if err != nil {
			return "", err
		}
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", err
		}
	}
	sum := hex.EncodeToString(h.Sum(nil))
	s.sums[rel] = sum
	return sum, nil
}

// legacyFileInfoHeader is dockerd 20.10's archive.FileInfoHeader: user
// and group names looked up on the host, and the file type bits kept in
// the mode (fillGo18FileTypeBits), which go-archive no longer does. The
// COPY --from cache key hashes this header.
func legacyFileInfoHeader(name string, fi os.FileInfo, link string) (*tar.Header, error) {
	hdr, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return nil, err
	}
	hdr.Format = tar.FormatPAX
	hdr.ModTime = hdr.ModTime.Truncate(time.Second)
	hdr.AccessTime = time.Time{}
	hdr.ChangeTime = time.Time{}
	perm := int64(fi.Mode().Perm())
	if fi.Mode()&os.ModeSetuid != 0 {
		perm |= 0o4000
	}
	if fi.Mode()&os.ModeSetgid != 0 {
		perm |= 0o2000
	}
	if fi.Mode()&os.ModeSticky != 0 {
		perm |= 0o1000
	}
	m := fi.Mode()
	switch {
	case m.IsRegular():
		perm |= unix.S_IFREG
	case m.IsDir():
		perm |= unix.S_IFDIR
	case m&os.ModeSymlink != 0:
		perm |= unix.S_IFLNK
	case m&os.ModeNamedPipe != 0:
		perm |= unix.S_IFIFO
	case m&os.ModeDevice != 0 && m&os.ModeCharDevice != 0:
		perm |= unix.S_IFCHR
	case m&os.ModeDevice != 0:
		perm |= unix.S_IFBLK
	case m&os.ModeSocket != 0:
		perm |= unix.S_IFSOCK
	}
	hdr.Mode = perm
	hdr.Name = filepath.ToSlash(name)
	if fi.IsDir() && !strings.HasSuffix(hdr.Name, "/") {
		hdr.Name += "/"
	}
	if st, ok := fi.Sys().(*unix.Stat_t); ok && (m&os.ModeDevice != 0) {
		hdr.Devmajor = int64(unix.Major(st.Rdev))
		hdr.Devminor = int64(unix.Minor(st.Rdev))
	}
	return hdr, nil
}

type copyInfo struct {
	src          *copySource
	path         string // relative to src.root, cleaned
	hash         string
	noDecompress bool
}

func (ci copyInfo) fullPath() (string, error) { return scopedPath(ci.src.root, ci.path) }

type copyInstruction struct {
	cmdName    string
	dest       string
	chown      string
	infos      []copyInfo
	decompress bool
	preserve   bool // --from without --chown keeps owners
}

func (st *stageState) dispatchCopy(c *instructions.CopyCommand) error {
	if c.Chmod != "" {
		return errors.New("the --chmod option requires BuildKit. Refer to https://docs.docker.com/go/buildkit/ to learn how to build images with BuildKit enabled")
	}
	if err := buildkitOnly(c.Link, c.Parents, c.ExcludePatterns, len(c.SourceContents)); err != nil {
		return err
	}
	src := &copySource{root: st.bs.src.root, ctx: st.bs.src}
	if c.From != "" {
		root, release, err := st.imageSource(c.From)
		if err != nil {
			return fmt.Errorf("invalid from flag value %s: %w", c.From, err)
		}
		defer release()
		src = &copySource{root: root, sums: map[string]string{}, isImage: true}
	}
	inst, err := st.copyInstruction(src, c.SourcesAndDest, "COPY", false)
	if err != nil {
		return err
	}
	inst.chown = c.Chown
	inst.preserve = c.From != "" && c.Chown == ""
	return st.performCopy(inst)
}

func (st *stageState) dispatchAdd(c *instructions.AddCommand) error {
	if c.Chmod != "" {
		return errors.New("the --chmod option requires BuildKit. Refer to https://docs.docker.com/go/buildkit/ to learn how to build images with BuildKit enabled")
	}
	if err := buildkitOnly(c.Link, false, c.ExcludePatterns, len(c.SourceContents)); err != nil {
		return err
	}
	if c.Checksum != "" || c.KeepGitDir != nil || c.Unpack != nil {
		return errors.New("the --checksum, --keep-git-dir and --unpack options require BuildKit")
	}
	src := &copySource{root: st.bs.src.root, ctx: st.bs.src}
	inst, err := st.copyInstruction(src, c.SourcesAndDest, "ADD", true)
	if err != nil {
		return err
	}
	inst.chown = c.Chown
	inst.decompress = true
	return st.performCopy(inst)
}

func buildkitOnly(link, parents bool, excludes []string, heredocs int) error {
	switch {
	case link:
		return errors.New("the --link option requires BuildKit. Refer to https://docs.docker.com/go/buildkit/ to learn how to build images with BuildKit enabled")
	case parents:
		return errors.New("the --parents option requires BuildKit. Refer to https://docs.docker.com/go/buildkit/ to learn how to build images with BuildKit enabled")
	case len(excludes) > 0:
		return errors.New("the --exclude option requires BuildKit. Refer to https://docs.docker.com/go/buildkit/ to learn how to build images with BuildKit enabled")
	case heredocs > 0:
		return errors.New("heredocs require BuildKit. Refer to https://docs.docker.com/go/buildkit/ to learn how to build images with BuildKit enabled")
	}
	return nil
}

// imageSource mounts the filesystem of a stage or image for COPY --from.
func (st *stageState) imageSource(name string) (string, func(), error) {
	s, ok, err := st.bs.stages.get(name)
	if err != nil {
		return "", nil, err
	}
	id := s.imageID
	if !ok {
		id, err = st.bs.b.cfg.Store.Resolve(st.bs.ctx, name)
		if err != nil && isNotFound(err) && st.bs.b.cfg.Puller != nil {
			id, err = st.bs.b.cfg.Puller.PullForBuild(st.bs.ctx, name, st.bs.stdout)
		}
		if err != nil {
			if isNotFound(err) && st.bs.b.cfg.Puller == nil {
				return "", nil, fmt.Errorf("pull access denied for %s, repository does not exist or may require 'docker login': this engine cannot pull (no network)", familiar(name))
			}
			return "", nil, err
		}
	}
	return st.bs.mountImage(id)
}

func isURL(s string) bool {
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
}

func (st *stageState) copyInstruction(src *copySource, sd instructions.SourcesAndDest, cmdName string, allowURL bool) (copyInstruction, error) {
	inst := copyInstruction{cmdName: cmdName, dest: sd.DestPath}
	var infos []copyInfo
	for _, orig := range sd.SourcePaths {
		if isURL(orig) {
			if !allowURL {
				return inst, fmt.Errorf("%s failed: source can't be a URL for COPY", cmdName)
			}
			return inst, fmt.Errorf("%s failed: Get %q: dial tcp: no network access from this engine", cmdName, orig)
		}
		sub, err := calcCopyInfo(src, orig, true)
		if err != nil {
			return inst, fmt.Errorf("%s failed: %w", cmdName, err)
		}
		infos = append(infos, sub...)
	}
	if len(infos) == 0 {
		return inst, fmt.Errorf("%s failed: no source files were specified", cmdName)
	}
	if len(infos) > 1 && !strings.HasSuffix(inst.dest, "/") {
		return inst, fmt.Errorf("When using %s with more than one source file, the destination must be a directory and end with a /", cmdName)
	}
	inst.infos = infos
	return inst, nil
}

func containsWildcards(name string) bool {
	for i := 0; i < len(name); i++ {
		switch name[i] {
		case '\\':
			i++
		case '*', '?', '[':
			return true
		}
	}
	return false
}

// calcCopyInfo is dockerd's copier.calcCopyInfo.
func calcCopyInfo(src *copySource, orig string, allowWildcards bool) ([]copyInfo, error) {
	if src.isImage && orig == "" {
		return nil, errors.New("empty copy source")
	}
	p := filepath.FromSlash(orig)
	p = strings.TrimPrefix(p, "/")
	p = strings.TrimPrefix(p, "./")
	if allowWildcards && containsWildcards(p) {
		var infos []copyInfo
		err := filepath.WalkDir(src.root, func(fp string, _ fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(src.root, fp)
			if err != nil || rel == "." {
				return err
			}
			if ok, _ := filepath.Match(p, rel); !ok {
				return nil
			}
			sub, err := calcCopyInfo(src, rel, false)
			if err != nil {
				return err
			}
			infos = append(infos, sub...)
			return nil
		})
		return infos, err
	}
	full, err := scopedPath(src.root, p)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(full)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			perr := &os.PathError{Op: "stat", Path: p, Err: os.ErrNotExist}
			if src.isImage {
				return nil, perr
			}
			return nil, fmt.Errorf("file not found in build context or excluded by .dockerignore: %w", perr)
		}
		return nil, err
	}
	rel, err := filepath.Rel(src.root, full)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		h, err := src.hash(rel)
		if err != nil {
			return nil, err
		}
		return []copyInfo{{src: src, path: p, hash: "file:" + h}}, nil
	}
	var subs []string
	err = filepath.WalkDir(full, func(fp string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		r, err := filepath.Rel(src.root, fp)
		if err != nil || r == "." {
			return err
		}
		h, err := src.hash(r)
		if err != nil {
			return nil
		}
		subs = append(subs, h)
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(subs)
	return []copyInfo{{src: src, path: p, hash: hashStrings("dir", subs)}}, nil
}

func hashStrings(prefix string, s []string) string {
	h := sha256.Sum256([]byte(strings.Join(s, ",")))
	return prefix + ":" + hex.EncodeToString(h[:])
}

type identity struct{ uid, gid int }

// performCopy is dockerd's Builder.performCopy: probe with the source
// hash, else copy into an overlay of the current image and commit.
func (st *stageState) performCopy(inst copyInstruction) error {
	var srcHash string
	if len(inst.infos) == 1 {
		srcHash = inst.infos[0].hash
	} else {
		var hs []string
		for _, i := range inst.infos {
			hs = append(hs, i.hash)
		}
		srcHash = hashStrings("multi", hs)
	}
	chownComment := ""
	if inst.chown != "" {
		// dockerd 20.10 glues the hash to the flag (no space).
		chownComment = fmt.Sprintf("--chown=%s", inst.chown)
	}
	comment := fmt.Sprintf("%s %s%s in %s ", inst.cmdName, chownComment, srcHash, inst.dest)
	probe := copyRunConfig(st.runConfig)
	probe.Cmd = append(getShell(st.runConfig), "#(nop) "+comment)
	if hit, err := st.probeCache(probe); err != nil || hit {
		return err
	}
	rw, err := st.newRWLayer()
	if err != nil {
		return err
	}
	defer rw.release()

	dest := normalizeDest(st.runConfig.WorkingDir, inst.dest)
	id := &identity{0, 0}
	if inst.chown != "" {
		id, err = parseChown(inst.chown, rw.root)
		if err != nil {
			return fmt.Errorf("unable to convert uid/gid chown string to host mapping: %w", err)
		}
	} else if inst.preserve {
		id = nil
	}
	for _, info := range inst.infos {
		if err := copyOne(rw.root, dest, info, inst.decompress, id); err != nil {
			return fmt.Errorf("failed to copy files: %w", err)
		}
	}
	if err := rw.unmount(); err != nil {
		return err
	}
	return st.commitContainer("", probe, rw.upper)
}

// normalizeDest is dockerd's: relative destinations are under WORKDIR and
// a trailing slash is kept.
func normalizeDest(workingDir, requested string) string {
	dest := filepath.FromSlash(requested)
	slash := strings.HasSuffix(dest, "/")
	if !filepath.IsAbs(requested) {
		dest = filepath.Join("/", workingDir, dest)
		if slash {
			dest += "/"
		}
	}
	return dest
}

func copyOne(rootfs, dest string, info copyInfo, decompress bool, id *identity) error {
	srcPath, err := info.fullPath()
	if err != nil {
		return err
	}
	destPath, err := securejoin.SecureJoin(rootfs, dest)
	if err != nil {
		return err
	}
	fi, err := os.Stat(srcPath)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return copyDirectory(srcPath, destPath, id)
	}
	// Only a regular file is sniffed as an archive: dockerd opens a FIFO
	// here and waits forever, or reads a device node (docs/engine.md).
	if decompress && !info.noDecompress && fi.Mode().IsRegular() && isArchive(srcPath) {
		return untarPath(srcPath, destPath)
	}
	if strings.HasSuffix(dest, "/") || isDir(destPath) {
		destPath = filepath.Join(destPath, filepath.Base(info.path))
	}
	return copyFile(srcPath, destPath, id)
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// mkdirAllNew creates the missing directories of p with mode and owner,
// leaving existing ones untouched (idtools.MkdirAllAndChownNew).
func mkdirAllNew(root, p string, uid, gid int) error {
	full, err := securejoin.SecureJoin(root, p)
	if err != nil {
		return err
	}
	return mkdirAllNewAbs(full, uid, gid)
}

func mkdirAllNewAbs(full string, uid, gid int) error {
	var missing []string
	for d := full; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("Cannot mkdir: %s is not a directory", d)
			}
			break
		}
		if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		missing = append(missing, d)
		if d == filepath.Dir(d) {
			break
		}
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := os.Mkdir(missing[i], 0o755); err != nil && !os.IsExist(err) {
			return err
		}
		if err := os.Chmod(missing[i], 0o755); err != nil {
			return err
		}
		if err := os.Lchown(missing[i], uid, gid); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string, id *identity) error {
	pu, pg := 0, 0
	if id != nil {
		pu, pg = id.uid, id.gid
	}
	if err := mkdirAllNewAbs(filepath.Dir(dst), pu, pg); err != nil {
		return fmt.Errorf("failed to create new directory: %w", err)
	}
	fi, err := os.Lstat(src)
	if err != nil {
		return err
	}
	if err := copyEntry(src, dst, fi); err != nil {
		return fmt.Errorf("failed to copy file: %w", err)
	}
	if id != nil {
		return os.Lchown(dst, id.uid, id.gid)
	}
	return nil
}

// copyDirectory copies the contents of src into dst (created 0755 if
// missing) keeping modes, times and links; with id, every copied entry
// (and dst itself when new) gets that owner.
func copyDirectory(src, dst string, id *identity) error {
	existed := isDir(dst)
	if err := mkdirAllNewAbs(dst, 0, 0); err != nil {
		return err
	}
	type dirTime struct {
		path string
		fi   os.FileInfo
	}
	var dirs []dirTime
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		target := filepath.Join(dst, rel)
		if err := copyEntry(p, target, fi); err != nil {
			return err
		}
		if id != nil {
			if err := os.Lchown(target, id.uid, id.gid); err != nil {
				return err
			}
		}
		if fi.IsDir() {
			dirs = append(dirs, dirTime{target, fi})
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		setTimes(dirs[i].path, dirs[i].fi)
	}
	if id != nil && !existed {
		return os.Lchown(dst, id.uid, id.gid)
	}
	return nil
}

// copyEntry recreates one filesystem entry (not following symlinks) with
// the source's mode, owner and times; what was at dst is replaced unless
// both are directories.
func copyEntry(src, dst string, fi os.FileInfo) error {
	// os.Lstat's Sys is a *syscall.Stat_t (a *unix.Stat_t never matched:
	// device nodes were dropped and owners not kept).
	st, _ := fi.Sys().(*syscall.Stat_t)
	if cur, err := os.Lstat(dst); err == nil && !(cur.IsDir() && fi.IsDir()) {
		if err := os.RemoveAll(dst); err != nil {
			return err
		}
	}
	mode := fi.Mode()
	switch {
	case mode.IsDir():
		if err := os.Mkdir(dst, 0o755); err != nil && !os.IsExist(err) {
			return err
		}
	case mode.IsRegular():
		in, err := safefile.OpenNoFollow(src)
		if err != nil {
			return err
		}
		out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
		if err != nil {
			in.Close()
			return err
		}
		_, err = io.Copy(out, in)
		in.Close()
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	case mode&os.ModeSymlink != 0:
		link, err := os.Readlink(src)
		if err != nil {
			return err
		}
		if err := os.Symlink(link, dst); err != nil {
			return err
		}
	case mode&os.ModeNamedPipe != 0:
		if err := unix.Mkfifo(dst, uint32(mode.Perm())); err != nil {
			return err
		}
	case mode&os.ModeDevice != 0 && st != nil:
		if err := unix.Mknod(dst, st.Mode, int(st.Rdev)); err != nil {
			return err
		}
	default:
		return nil // sockets are skipped, as tar does
	}
	if st != nil {
		if err := os.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
	}
	if mode&os.ModeSymlink == 0 {
		perm := mode.Perm()
		if mode&os.ModeSetuid != 0 {
			perm |= os.ModeSetuid
		}
		if mode&os.ModeSetgid != 0 {
			perm |= os.ModeSetgid
		}
		if mode&os.ModeSticky != 0 {
			perm |= os.ModeSticky
		}
		if err := os.Chmod(dst, perm); err != nil {
			return err
		}
	}
	setTimes(dst, fi)
	return nil
}

func setTimes(p string, fi os.FileInfo) {
	t := unix.NsecToTimeval(fi.ModTime().UnixNano())
	_ = unix.Lutimes(p, []unix.Timeval{t, t})
}

func isArchive(p string) bool {
	f, err := safefile.OpenNoFollow(p)
	if err != nil {
		return false
	}
	defer f.Close()
	r, err := decompress(bufio.NewReader(f))
	if err != nil {
		return false
	}
	_, err = tar.NewReader(r).Next()
	return err == nil
}

// untarPath extracts a local archive for ADD, keeping the owners in it.
func untarPath(src, dst string) error {
	f, err := safefile.OpenNoFollow(src)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := decompress(bufio.NewReader(f))
	if err != nil {
		return err
	}
	if err := mkdirAllNewAbs(dst, 0, 0); err != nil {
		return err
	}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := path.Clean("/" + hdr.Name)
		if name == "/" {
			continue
		}
		parent, err := securejoin.SecureJoin(dst, path.Dir(name))
		if err != nil {
			return err
		}
		if err := mkdirAllNewAbs(parent, 0, 0); err != nil {
			return err
		}
		if err := writeEntry(tr, hdr, dst, filepath.Join(parent, path.Base(name))); err != nil {
			return err
		}
	}
}

// parseChown is dockerd's parseChownFlag: names are looked up in the
// image's /etc/passwd and /etc/group; a lone user is also the group.
func parseChown(chown, rootfs string) (*identity, error) {
	parts := strings.Split(chown, ":")
	if len(parts) > 2 {
		return nil, errors.New("invalid chown string format: " + chown)
	}
	userStr, grpStr := parts[0], parts[0]
	if len(parts) == 2 {
		grpStr = parts[1]
	}
	uid, err := lookupID(userStr, func() (int, bool, error) {
		passwd, err := readUserFile(rootfs, "/etc/passwd")
		if err != nil {
			return 0, false, err
		}
		us, err := user.ParsePasswdFilter(passwd, func(u user.User) bool { return u.Name == userStr })
		if err != nil || len(us) == 0 {
			return 0, false, err
		}
		return us[0].Uid, true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("can't find uid for user %s: %w", userStr, orNo(err, "no such user: "+userStr))
	}
	gid, err := lookupID(grpStr, func() (int, bool, error) {
		group, err := readUserFile(rootfs, "/etc/group")
		if err != nil {
			return 0, false, err
		}
		gs, err := user.ParseGroupFilter(group, func(g user.Group) bool { return g.Name == grpStr })
		if err != nil || len(gs) == 0 {
			return 0, false, err
		}
		return gs[0].Gid, true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("can't find gid for group %s: %w", grpStr, orNo(err, "no such group: "+grpStr))
	}
	return &identity{uid, gid}, nil
}

// maxUserFile is Docker's own bound on /etc/passwd and /etc/group
// (moby/sys/user).
const maxUserFile = 10 << 20

// readUserFile reads /etc/passwd or /etc/group of an image being built,
// resolved inside its root filesystem; one that is not a regular file (a
// RUN step's mknod or mkfifo) is an error, not a read of the host's device.
func readUserFile(rootfs, name string) (io.Reader, error) {
	b, err := safefile.ReadFile(rootfs, name, safefile.InRoot, maxUserFile)
	if err != nil {
		return nil, err
	}
	return bytes.NewReader(b), nil
}

var errNoEntry = errors.New("no entry")

func lookupID(s string, lookup func() (int, bool, error)) (int, error) {
	if n, err := strconv.Atoi(s); err == nil {
		return n, nil
	}
	n, ok, err := lookup()
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, errNoEntry
	}
	return n, nil
}

func orNo(err error, msg string) error {
	if errors.Is(err, errNoEntry) {
		return errors.New(msg)
	}
	return err
}
