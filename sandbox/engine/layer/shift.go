package layer

import (
	"encoding/binary"
	"fmt"
	"os"
	"syscall"
)

// toContainer maps a host id found in a shifted upper directory back to
// the container's id. A whiteout may be host root's: overlay makes them
// with its mounter's credentials, and dockerd's are root's as well.
func (s IDShift) toContainer(id uint32, whiteout bool) (uint32, error) {
	switch {
	case id >= s.Base && id-s.Base < s.Size:
		return id - s.Base, nil
	case id == 0 && whiteout:
		return 0, nil
	}
	return 0, fmt.Errorf("owner %d is outside the container's host ids %d-%d", id, s.Base, uint64(s.Base)+uint64(s.Size)-1)
}

// fileInfo returns fi with its owners shifted back (tar.FileInfoHeader
// takes them, and the user and group names, from Sys()).
func (s IDShift) fileInfo(fi os.FileInfo) (os.FileInfo, error) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fi, nil
	}
	whiteout := fi.Mode()&os.ModeCharDevice != 0 && st.Rdev == 0
	uid, err := s.toContainer(st.Uid, whiteout)
	if err != nil {
		return nil, err
	}
	gid, err := s.toContainer(st.Gid, whiteout)
	if err != nil {
		return nil, fmt.Errorf("group %w", err)
	}
	shifted := *st
	shifted.Uid, shifted.Gid = uid, gid
	return shiftedInfo{fi, &shifted}, nil
}

type shiftedInfo struct {
	os.FileInfo
	st *syscall.Stat_t
}

func (i shiftedInfo) Sys() any { return i.st }

// security.capability layouts (linux/capability.h): a little-endian
// magic_etc word (revision in the top byte, VFS_CAP_FLAGS_EFFECTIVE in
// bit 0), permitted and inheritable words for two 32-bit halves, and for
// revision 3 the root id the capabilities are valid for.
const (
	capRevisionMask = 0xff000000
	capRevision2    = 0x02000000
	capRevision3    = 0x03000000
	capEffective    = 0x000001
	capSizeV2       = 20
	capSizeV3       = 24
)

// capability converts a file capability written in the container's user
// namespace back to what the container saw: the kernel stores it as
// revision 3 with container root's host id, and presents it inside as
// revision 2 (or as revision 3 with the root id of a nested namespace).
// Other values are kept.
func (s IDShift) capability(v []byte) ([]byte, error) {
	if len(v) != capSizeV3 || binary.LittleEndian.Uint32(v)&capRevisionMask != capRevision3 {
		return v, nil
	}
	root := binary.LittleEndian.Uint32(v[capSizeV2:])
	if root < s.Base || root-s.Base >= s.Size {
		return nil, fmt.Errorf("file capability for root id %d, outside the container's host ids %d-%d", root, s.Base, uint64(s.Base)+uint64(s.Size)-1)
	}
	if root == s.Base {
		out := make([]byte, capSizeV2)
		copy(out, v[:capSizeV2])
		binary.LittleEndian.PutUint32(out, capRevision2|binary.LittleEndian.Uint32(v)&capEffective)
		return out, nil
	}
	out := append([]byte(nil), v...)
	binary.LittleEndian.PutUint32(out[capSizeV2:], root-s.Base)
	return out, nil
}
