package grader

import (
	"context"
	"io/fs"
	"log/slog"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/unix"
)

// maxWatchedDirs bounds the inotify watches of one workspace (a learner who
// unpacks a big tree should not exhaust the kernel's limit).
const maxWatchedDirs = 512

// IN_DONT_FOLLOW and IN_ONLYDIR: a workspace directory the learner swaps
// for a symlink between the walk and the watch never puts a watch on a
// host directory.
// IN_DONT_FOLLOW and IN_ONLYDIR: a workspace directory the learner swaps
// for a symlink between the walk and the watch never puts a watch on a
// host directory.
const watchMask = unix.IN_CLOSE_WRITE | unix.IN_CREATE | unix.IN_DELETE | unix.IN_MOVED_TO |
	unix.IN_MOVED_FROM | unix.IN_ATTRIB | unix.IN_DELETE_SELF | unix.IN_DONT_FOLLOW | unix.IN_ONLYDIR

// watchFiles calls changed whenever something in dir (recursively) is
// written, created, removed or renamed, until ctx ends.
func watchFiles(ctx context.Context, dir string, changed func(), log *slog.Logger) {
	if dir == "" {
		return
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		log.Warn("grader: inotify unavailable; file checks run on engine events and Check only", "err", err)
		return
	}
	defer unix.Close(fd)
	dirs := map[int32]string{}
	add := func(root string) {
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			if len(dirs) >= maxWatchedDirs {
				return filepath.SkipAll
			}
			wd, err := unix.InotifyAddWatch(fd, p, watchMask)
			if err == nil {
				dirs[int32(wd)] = p
			}
			return nil
		})
	}
	add(dir)
	buf := make([]byte, 64<<10)
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for ctx.Err() == nil {
		// Poll with a timeout so ctx is noticed without closing fd under a
		// blocked read.
		n, err := unix.Poll(fds, 250)
		if err != nil && err != unix.EINTR {
			return
		}
		if n <= 0 {
			continue
		}
		r, err := unix.Read(fd, buf)
		if err != nil || r < unix.SizeofInotifyEvent {
			continue
		}
		for off := 0; off+unix.SizeofInotifyEvent <= r; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := ""
			if ev.Len > 0 {
				b := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
				for i, c := range b {
					if c == 0 {
						b = b[:i]
						break
					}
				}
				name = string(b)
			}
			if ev.Mask&unix.IN_ISDIR != 0 && ev.Mask&(unix.IN_CREATE|unix.IN_MOVED_TO) != 0 {
				if parent, ok := dirs[ev.Wd]; ok {
					add(filepath.Join(parent, name))
				}
			}
			if ev.Mask&unix.IN_IGNORED != 0 {
				delete(dirs, ev.Wd)
			}
			off += unix.SizeofInotifyEvent + int(ev.Len)
		}
		changed()
	}
}
