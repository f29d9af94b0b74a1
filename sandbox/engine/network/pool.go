package network

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// DefaultPool is the address pool sandboxes' subnets come from when the
// caller configures none: 256 /24s, outside Docker's own 172.17-172.29 so a
// labd host that also runs dockerd does not see the same subnets twice.
var DefaultPool = netip.MustParsePrefix("172.30.0.0/16")

// Pool hands out non-overlapping subnets of one size from a larger prefix,
// one per owner (a sandbox ID, or "default" for `labd engine`). Allocations
// are files in a directory (one per subnet, holding the owner), so they
// survive a labd restart: an owner gets its subnet back, and a subnet still
// recorded is never given to anyone else until Release.
type Pool struct {
	dir  string
	base netip.Prefix
	bits int

	mu sync.Mutex
}

// OpenPool opens (creating dir) a pool of /bits subnets of base.
func OpenPool(dir string, base netip.Prefix, bits int) (*Pool, error) {
	base = base.Masked()
	if !base.Addr().Is4() || bits < base.Bits() || bits > 30 {
		return nil, fmt.Errorf("open subnet pool: bad pool %s with /%d subnets", base, bits)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open subnet pool: %w", err)
	}
	return &Pool{dir: dir, base: base, bits: bits}, nil
}

func subnetFile(p netip.Prefix) string {
	return strings.ReplaceAll(p.String(), "/", "_")
}

// Allocations returns what is recorded: owner → subnet. A caller cleaning
// up at start releases the owners that no longer exist.
func (p *Pool) Allocations() (map[string]netip.Prefix, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.allocations()
}

func (p *Pool) allocations() (map[string]netip.Prefix, error) {
	ents, err := os.ReadDir(p.dir)
	if err != nil {
		return nil, fmt.Errorf("read subnet pool: %w", err)
	}
	out := make(map[string]netip.Prefix, len(ents))
	for _, e := range ents {
		pfx, err := netip.ParsePrefix(strings.ReplaceAll(e.Name(), "_", "/"))
		if err != nil {
			continue // staging leftovers and foreign files
		}
		owner, err := os.ReadFile(filepath.Join(p.dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read subnet pool: %w", err)
		}
		out[string(owner)] = pfx
	}
	return out, nil
}

// Allocate returns owner's subnet, allocating the lowest free one when it
// has none.
func (p *Pool) Allocate(owner string) (netip.Prefix, error) {
	if owner == "" {
		return netip.Prefix{}, errors.New("allocate subnet: empty owner")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	have, err := p.allocations()
	if err != nil {
		return netip.Prefix{}, err
	}
	if pfx, ok := have[owner]; ok {
		return pfx, nil
	}
	n := 1 << (p.bits - p.base.Bits())
	step := uint32(1) << (32 - p.bits)
	b := p.base.Addr().As4()
	start := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	for i := range n {
		v := start + uint32(i)*step
		pfx := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), p.bits)
		path := filepath.Join(p.dir, subnetFile(pfx))
		// O_EXCL: even a second process sharing the directory cannot take
		// the same subnet.
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("allocate subnet: %w", err)
		}
		_, werr := f.WriteString(owner)
		if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
			os.Remove(path)
			return netip.Prefix{}, fmt.Errorf("allocate subnet: %w", err)
		}
		return pfx, nil
	}
	return netip.Prefix{}, fmt.Errorf("allocate subnet: pool %s exhausted (%d subnets)", p.base, n)
}

// Release frees owner's subnet, if it has one.
func (p *Pool) Release(owner string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	have, err := p.allocations()
	if err != nil {
		return err
	}
	pfx, ok := have[owner]
	if !ok {
		return nil
	}
	if err := os.Remove(filepath.Join(p.dir, subnetFile(pfx))); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("release subnet %s: %w", pfx, err)
	}
	return nil
}
