package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/labd/labd/sandbox/engine/idrange"
	"github.com/labd/labd/sandbox/engine/mountinfo"
	"github.com/labd/labd/sandbox/engine/runtime"
	"github.com/labd/labd/sandbox/engine/userns"
	"github.com/moby/sys/user"
)

// UserNSOptions turn user namespaces on: every container, build step and
// shell of an engine runs with container root mapped to an unprivileged
// host uid range of its own (package idrange hands them out), the image
// layers idmapped, never copied.
type UserNSOptions struct {
	// First is the first host id of the pool, Count the number of ranges
	// of 65536 ids; zero: idrange's defaults.
	First, Count uint32
}

// remap is what Shared keeps for user namespaces.
type remap struct {
	opts    *UserNSOptions // nil: off
	once    sync.Once
	pool    *idrange.Pool
	poolErr error
}

func (s *Shared) idPool() (*idrange.Pool, error) {
	s.remap.once.Do(func() {
		o := *s.remap.opts
		if o.First == 0 {
			o.First = idrange.DefaultFirst
		}
		if o.Count == 0 {
			o.Count = idrange.DefaultCount
		}
		s.remap.pool, s.remap.poolErr = idrange.Open(filepath.Join(s.dir, "idranges"), o.First, idrange.DefaultSize, o.Count)
	})
	return s.remap.pool, s.remap.poolErr
}

// UserNSEnabled reports whether engines of s run in user namespaces.
func (s *Shared) UserNSEnabled() bool { return s.remap.opts != nil && s.Runtime != nil }

// usernsDir holds the pinned user namespace of owner.
func (s *Shared) usernsDir(owner string) string { return filepath.Join(s.dir, "userns", owner) }

// newUserNS gives owner (a view: a sandbox, or the standalone engine) its
// uid range and a user namespace mapping container ids onto it, pinned
// until release. The range stays the owner's after release: its
// containers' upper directories hold ids of that range.
func (s *Shared) newUserNS(ctx context.Context, owner string) (_ *runtime.UserNS, release func() error, err error) {
	u, _, release, err := s.NewUserNSWithNet(ctx, owner, false)
	return u, release, err
}

// NewUserNSWithNet is newUserNS that also makes, in the same step, the
// network namespace owned by the user namespace where the owner's bridge
// goes (netPath; "" without withNet). One helper process for both: a
// sandbox's start pays for one fork, not two. Exported for the sandbox
// provider (sandbox/enginebox): a sandbox's range comes from the pool
// the standalone engine's does.
func (s *Shared) NewUserNSWithNet(ctx context.Context, owner string, withNet bool) (_ *runtime.UserNS, netPath string, release func() error, err error) {
	pool, err := s.idPool()
	if err != nil {
		return nil, "", nil, err
	}
	r, err := pool.Allocate(owner)
	if err != nil {
		return nil, "", nil, fmt.Errorf("uid range of %s: %w", owner, err)
	}
	dir := s.usernsDir(owner)
	// What a killed labd left for this owner goes first.
	mountinfo.UnmountUnder(dir)
	if err := os.RemoveAll(dir); err != nil {
		return nil, "", nil, fmt.Errorf("user namespace of %s: %w", owner, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, "", nil, fmt.Errorf("user namespace of %s: %w", owner, err)
	}
	pin := filepath.Join(dir, "user")
	if withNet {
		netPath = filepath.Join(dir, "net")
	}
	if err := userns.Create(ctx, userns.Range(r), pin, netPath); err != nil {
		_ = os.RemoveAll(dir)
		return nil, "", nil, fmt.Errorf("user namespace of %s: %w", owner, err)
	}
	release = func() error {
		var errs []error
		if netPath != "" {
			errs = append(errs, userns.Unpin(netPath))
		}
		// Remove, not RemoveAll: a pin still mounted stays visible.
		return errors.Join(append(errs, userns.Unpin(pin), os.Remove(dir))...)
	}
	return &runtime.UserNS{Path: pin, IDs: userns.Range(r)}, netPath, release, nil
}

// SweepUserNS releases the pins of user namespaces a killed labd left.
// Exported for the sandbox provider (sandbox/enginebox, Provider.Sweep):
// the pins are made by NewUserNSWithNet under the engine's directory.
func (s *Shared) SweepUserNS() error {
	dir := filepath.Join(s.dir, "userns")
	mountinfo.UnmountUnder(dir)
	if err := os.RemoveAll(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// SetUserNS makes every container, build step and exec of e run in u
// (nil: host root is container root, as before).
func (e *Engine) SetUserNS(u *runtime.UserNS) { e.userns = u }

// idMap is e's mapping for archives: files of a container's filesystem
// as labd sees them carry host ids (Base+i); tars carry container ids.
func (e *Engine) idMap() user.IdentityMapping {
	if e.userns == nil {
		return user.IdentityMapping{}
	}
	m := []user.IDMap{{ID: 0, ParentID: int64(e.userns.IDs.Base), Count: int64(e.userns.IDs.Size)}}
	return user.IdentityMapping{UIDMaps: m, GIDMaps: m}
}

// FreeIDRanges is how many uid ranges are free for sandboxes that have
// never had one (-1 without user namespaces). A range stays with its
// sandbox ID after the sandbox ends (its files in the workspace's layers
// keep those ids), so every learner's lab ever opened holds one.
func (s *Shared) FreeIDRanges() (int, error) {
	if !s.UserNSEnabled() {
		return -1, nil
	}
	pool, err := s.idPool()
	if err != nil {
		return 0, err
	}
	owners, err := pool.Owners()
	if err != nil {
		return 0, err
	}
	free := pool.Count() - len(owners)
	if _, ok := owners[DefaultView]; !ok {
		free-- // kept for `labd engine`
	}
	return max(free, 0), nil
}
