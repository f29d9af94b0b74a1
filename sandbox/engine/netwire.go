package engine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/labd/labd/sandbox/engine/mountinfo"
	"github.com/labd/labd/sandbox/engine/network"
)

// SubnetBits is the size of every bridge network's subnet (one per
// sandbox, and one for `labd engine`) carved out of network.DefaultPool.
// Exported for the sandbox provider (sandbox/enginebox), which counts how
// many sandboxes the pool holds (SandboxCapacity).
const SubnetBits = 24

// netRunDir is where an owner's network keeps its netns mounts:
// DIR/run/<owner> ("default" for the standalone engine, a sandbox ID
// otherwise). The pool's allocations are under DIR/net.
func (s *Shared) netRunDir(owner string) string { return filepath.Join(s.dir, "run", owner) }

// pool returns the subnet pool shared by every engine of the process.
func (s *Shared) pool() (*network.Pool, error) {
	s.poolOnce.Do(func() {
		s.netPool, s.poolErr = network.OpenPool(filepath.Join(s.dir, "net"), network.DefaultPool, SubnetBits)
		if s.poolErr != nil {
			s.poolErr = fmt.Errorf("open subnet pool: %w", s.poolErr)
		}
	})
	return s.netPool, s.poolErr
}

// NewNetwork makes owner's bridge network: its subnet from the pool, its
// bridge in netnsPath ("" = a netns of its own, NetNSPath). release gives
// the subnet back and removes the run directory; call it after Close.
// Exported for the sandbox provider (sandbox/enginebox): every sandbox's
// network comes from the pool the standalone engine's does (Open).
func (s *Shared) NewNetwork(owner, netnsPath, usernsPath string, publishOnHost bool) (n *network.Network, release func() error, err error) {
	pool, err := s.pool()
	if err != nil {
		return nil, nil, err
	}
	subnet, err := pool.Allocate(owner)
	if err != nil {
		return nil, nil, fmt.Errorf("subnet for %s: %w", owner, err)
	}
	runDir := s.netRunDir(owner)
	release = func() error {
		// Close has unmounted everything under runDir.
		return errors.Join(os.RemoveAll(runDir), pool.Release(owner))
	}
	n, err = network.New(network.Options{
		RunDir:        runDir,
		Subnet:        subnet,
		NetNS:         netnsPath,
		UserNS:        usernsPath,
		PublishOnHost: publishOnHost,
		Logger:        s.log,
	})
	if err != nil {
		return nil, nil, errors.Join(fmt.Errorf("network of %s: %w", owner, err), release())
	}
	return n, release, nil
}

// SweepSandboxNetworks releases what sandboxes of a killed labd left: their
// netns mounts under run/ and their subnets (no sandbox outlives labd). The
// standalone engine's ("default") is left to its own start-up sweep.
// Exported for the sandbox provider (sandbox/enginebox, Provider.Sweep):
// the pool and its run directories are the engine's, shared with the
// standalone engine.
func (s *Shared) SweepSandboxNetworks() error {
	pool, err := s.pool()
	if err != nil {
		return err
	}
	var errs []error
	ents, err := os.ReadDir(filepath.Join(s.dir, "run"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, e := range ents {
		if e.Name() == DefaultView {
			continue
		}
		dir := filepath.Join(s.dir, "run", e.Name())
		mountinfo.UnmountUnder(dir)
		errs = append(errs, os.RemoveAll(dir))
	}
	allocs, err := pool.Allocations()
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for owner := range allocs {
		if owner != DefaultView {
			errs = append(errs, pool.Release(owner))
		}
	}
	return errors.Join(errs...)
}

// sharedNet holds Shared's lazily opened pool.
type sharedNet struct {
	poolOnce sync.Once
	netPool  *network.Pool
	poolErr  error
}
