// Package idrange hands out the host uid/gid ranges that sandboxes' user
// namespaces map their ids onto: one range of Size ids per sandbox, each
// owned by one sandbox at a time, recorded on disk (one file per range
// holding its owner) so a restarted labd neither hands a range out twice
// nor forgets one whose files still sit in a shell's upper directory.
//
// The default first id, 0x70000000, lies above systemd-nspawn's pick range
// (0x00080000-0x6FFFFFFF) and below 2^31, which some tools still read as
// a signed 32-bit number; 4096 ranges of 65536 fit in between.
package idrange

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// Defaults of a pool.
const (
	DefaultFirst = 0x70000000
	DefaultSize  = 65536
	DefaultCount = 4096
)

// Range is a block of host ids: container id i is host id Base+i.
type Range struct {
	Base, Size uint32
}

// Contains reports whether host id h lies in the range.
func (r Range) Contains(h uint32) bool { return h >= r.Base && h-r.Base < r.Size }

// Pool allocates ranges First + k*Size for k in [0, Count).
type Pool struct {
	dir                string
	first, size, count uint32

	mu sync.Mutex
}

// ErrExhausted is returned when every range is owned.
var ErrExhausted = errors.New("no free uid range: every sandbox range is in use")

var validOwner = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// Open opens (creating) the pool recorded in dir.
func Open(dir string, first, size, count uint32) (*Pool, error) {
	if size == 0 || count == 0 || uint64(first)+uint64(size)*uint64(count) > 1<<32-1 {
		return nil, fmt.Errorf("uid range pool: %d ranges of %d from %d do not fit in 32-bit ids", count, size, first)
	}
	if first < 65536 {
		return nil, fmt.Errorf("uid range pool: first id %d overlaps ordinary users' ids (want 65536 or more)", first)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("uid range pool: %w", err)
	}
	return &Pool{dir: dir, first: first, size: size, count: count}, nil
}

// Allocate gives owner its range: the one it already has, or a free one.
func (p *Pool) Allocate(owner string) (Range, error) {
	if !validOwner.MatchString(owner) {
		return Range{}, fmt.Errorf("allocate uid range: invalid owner %q", owner)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	have, err := p.owners()
	if err != nil {
		return Range{}, err
	}
	used := map[uint32]bool{}
	for k, o := range have {
		if o == owner {
			return p.rangeOf(k), nil
		}
		used[k] = true
	}
	for k := uint32(0); k < p.count; k++ {
		if used[k] {
			continue
		}
		// O_EXCL: a second labd on the same data dir cannot take it too.
		f, err := os.OpenFile(p.file(k), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return Range{}, fmt.Errorf("allocate uid range: %w", err)
		}
		_, werr := f.WriteString(owner + "\n")
		if err := errors.Join(werr, f.Close()); err != nil {
			os.Remove(p.file(k))
			return Range{}, fmt.Errorf("allocate uid range: %w", err)
		}
		return p.rangeOf(k), nil
	}
	return Range{}, ErrExhausted
}

// Release frees owner's range; releasing what is not allocated is fine.
func (p *Pool) Release(owner string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	have, err := p.owners()
	if err != nil {
		return err
	}
	for k, o := range have {
		if o == owner {
			if err := os.Remove(p.file(k)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("release uid range: %w", err)
			}
		}
	}
	return nil
}

// Owners lists the allocated ranges by owner.
func (p *Pool) Owners() (map[string]Range, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	have, err := p.owners()
	if err != nil {
		return nil, err
	}
	out := make(map[string]Range, len(have))
	for k, o := range have {
		out[o] = p.rangeOf(k)
	}
	return out, nil
}

func (p *Pool) owners() (map[uint32]string, error) {
	ents, err := os.ReadDir(p.dir)
	if err != nil {
		return nil, fmt.Errorf("read uid range pool: %w", err)
	}
	out := map[uint32]string{}
	for _, e := range ents {
		k, err := strconv.ParseUint(e.Name(), 10, 32)
		if err != nil || uint32(k) >= p.count {
			continue // not ours, or a range of a larger pool setting
		}
		b, err := os.ReadFile(filepath.Join(p.dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read uid range pool: %w", err)
		}
		out[uint32(k)] = strings.TrimSpace(string(b))
	}
	return out, nil
}

// Count is how many ranges the pool has.
func (p *Pool) Count() int { return int(p.count) }

func (p *Pool) rangeOf(k uint32) Range { return Range{Base: p.first + k*p.size, Size: p.size} }

func (p *Pool) file(k uint32) string { return filepath.Join(p.dir, strconv.FormatUint(uint64(k), 10)) }
