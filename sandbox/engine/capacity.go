package engine

import (
	"fmt"

	"github.com/labd/labd/sandbox/engine/idrange"
	"github.com/labd/labd/sandbox/engine/network"
)

// sandboxSubnetBits is the size of every bridge network's subnet (one per
// sandbox, and one for `labd engine`) carved out of network.DefaultPool.
const sandboxSubnetBits = 24

// Capacity is how many sandboxes the pools of a Shared hold at once:
// every sandbox takes one subnet, and with user namespaces one uid
// range. One of each is kept for the standalone engine's view
// (`labd engine` on the same data dir leaves its own until its next
// start), so a server's maximum must fit in what remains.
type Capacity struct {
	Subnets  int // subnets for sandboxes
	IDRanges int // uid ranges for sandboxes; 0 without user namespaces
}

// SandboxCapacity is the Capacity of a Shared opened with o.
func SandboxCapacity(o SharedOptions) Capacity {
	c := Capacity{Subnets: 1<<(sandboxSubnetBits-network.DefaultPool.Bits()) - 1}
	if o.UserNS != nil && !o.NoRuntime {
		n := o.UserNS.Count
		if n == 0 {
			n = idrange.DefaultCount
		}
		c.IDRanges = int(n) - 1
	}
	return c
}

// Fit says whether max sandboxes fit in c, and if not, which pool is too
// small and by how much.
func (c Capacity) Fit(max int) error {
	if max > c.Subnets {
		return fmt.Errorf("the network pool %s holds %d sandboxes (a /%d subnet each, one kept for `labd engine`)",
			network.DefaultPool, c.Subnets, sandboxSubnetBits)
	}
	if c.IDRanges > 0 && max > c.IDRanges {
		return fmt.Errorf("the uid range pool holds %d sandboxes (%d ids each, one range kept for `labd engine`)",
			c.IDRanges, idrange.DefaultSize)
	}
	return nil
}

// FreeIDRanges is how many uid ranges are free for sandboxes that have
// never had one (-1 without user namespaces). A range stays with its
// sandbox ID after the sandbox ends (remap.go: its files in the
// workspace's layers keep those ids), so every learner's lab ever
// opened holds one.
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
