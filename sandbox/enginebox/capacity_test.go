package enginebox

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/labd/labd/sandbox/engine"
	"github.com/labd/labd/sandbox/engine/idrange"
	"github.com/labd/labd/sandbox/engine/network"
)

// SandboxCapacity is what the pools really hand out, less the standalone
// engine's share; Fit names the pool a maximum does not fit in.
func TestSandboxCapacity(t *testing.T) {
	if c := SandboxCapacity(engine.SharedOptions{}); c != (Capacity{Subnets: 255}) {
		t.Errorf("without user namespaces: %+v, want 255 subnets, no uid ranges", c)
	}
	if c := SandboxCapacity(engine.SharedOptions{UserNS: &engine.UserNSOptions{}}); c != (Capacity{Subnets: 255, IDRanges: idrange.DefaultCount - 1}) {
		t.Errorf("with user namespaces: %+v, want 255 subnets, %d uid ranges", c, idrange.DefaultCount-1)
	}
	if c := SandboxCapacity(engine.SharedOptions{UserNS: &engine.UserNSOptions{}, NoRuntime: true}); c.IDRanges != 0 {
		t.Errorf("without a runtime: %+v, want no uid ranges (no user namespaces)", c)
	}

	// The network pool hands out as many subnets as counted, plus the
	// standalone engine's.
	pool, err := network.OpenPool(t.TempDir(), network.DefaultPool, engine.SubnetBits)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for ; ; n++ {
		if _, err := pool.Allocate(fmt.Sprint("sb-", n)); err != nil {
			break
		}
	}
	if n != SandboxCapacity(engine.SharedOptions{}).Subnets+1 {
		t.Errorf("the pool handed out %d subnets, capacity says %d for sandboxes plus one", n, SandboxCapacity(engine.SharedOptions{}).Subnets)
	}
	// So does the uid range pool (a small one: allocation reads the
	// directory each time).
	o := engine.SharedOptions{UserNS: &engine.UserNSOptions{Count: 8}}
	ids, err := idrange.Open(filepath.Join(t.TempDir(), "ids"), idrange.DefaultFirst, idrange.DefaultSize, 8)
	if err != nil {
		t.Fatal(err)
	}
	n = 0
	for ; ; n++ {
		if _, err := ids.Allocate(fmt.Sprint("sb-", n)); err != nil {
			if !errors.Is(err, idrange.ErrExhausted) {
				t.Fatal(err)
			}
			break
		}
	}
	if n != SandboxCapacity(o).IDRanges+1 {
		t.Errorf("the uid pool handed out %d ranges, capacity says %d plus one", n, SandboxCapacity(o).IDRanges)
	}

	tests := []struct {
		c       Capacity
		max     int
		wantErr string
	}{
		{Capacity{Subnets: 255, IDRanges: 4095}, 255, ""},
		{Capacity{Subnets: 255}, 255, ""},
		{Capacity{Subnets: 255, IDRanges: 4095}, 256, "the network pool 172.30.0.0/16 holds 255 sandboxes (a /24 subnet each, one kept for `labd engine`)"},
		{Capacity{Subnets: 255, IDRanges: 7}, 7, ""},
		{Capacity{Subnets: 255, IDRanges: 7}, 8, "the uid range pool holds 7 sandboxes (65536 ids each, one range kept for `labd engine`)"},
	}
	for _, tt := range tests {
		err := tt.c.Fit(tt.max)
		if (err == nil) != (tt.wantErr == "") || (err != nil && err.Error() != tt.wantErr) {
			t.Errorf("%+v.Fit(%d) = %v, want %q", tt.c, tt.max, err, tt.wantErr)
		}
	}
}
