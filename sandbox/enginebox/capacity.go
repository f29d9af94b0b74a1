package enginebox

import (
	"fmt"

	"github.com/labd/labd/sandbox/engine"
	"github.com/labd/labd/sandbox/engine/idrange"
	"github.com/labd/labd/sandbox/engine/network"
)

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
func SandboxCapacity(o engine.SharedOptions) Capacity {
	c := Capacity{Subnets: 1<<(engine.SubnetBits-network.DefaultPool.Bits()) - 1}
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
			network.DefaultPool, c.Subnets, engine.SubnetBits)
	}
	if c.IDRanges > 0 && max > c.IDRanges {
		return fmt.Errorf("the uid range pool holds %d sandboxes (%d ids each, one range kept for `labd engine`)",
			c.IDRanges, idrange.DefaultSize)
	}
	return nil
}
