package enginebox

import (
	"reflect"
	"testing"

	"github.com/labd/labd/sandbox"
	"github.com/labd/labd/sandbox/engine"
	"github.com/labd/labd/sandbox/engine/runtime"
)

// TestSandboxLimitsResolve: zero limits are the defaults, negative ones
// none; a lab's ask replaces the default and is capped at the maximum,
// and what was capped is said.
func TestSandboxLimitsResolve(t *testing.T) {
	def := runtime.Limits{Memory: DefaultSandboxMemory, Pids: DefaultSandboxPids, CPUShares: uint64(DefaultSandboxCPUShares)}
	tests := []struct {
		name   string
		l      Limits
		res    sandbox.Resources
		want   runtime.Limits
		capped []string
		eng    engine.EngineLimits
	}{
		{name: "defaults", want: def, eng: engine.EngineLimits{Builds: DefaultMaxBuilds, Execs: DefaultMaxExecs, Ports: DefaultMaxPorts, Logs: engine.DefaultMaxContainerLog}},
		{name: "none", l: Limits{Memory: -1, Pids: -1, Builds: -1, Execs: -1, Ports: -1, Logs: -1},
			want: runtime.Limits{CPUShares: 1024}},
		{name: "server's", l: Limits{Memory: 512 << 20, Pids: 100, CPUShares: 512, Builds: 1, Execs: 3, Ports: 5},
			want: runtime.Limits{Memory: 512 << 20, Pids: 100, CPUShares: 512}, eng: engine.EngineLimits{Builds: 1, Execs: 3, Ports: 5, Logs: engine.DefaultMaxContainerLog}},
		{name: "lab asks more", res: sandbox.Resources{Memory: 2 << 30, Pids: 2048},
			want: runtime.Limits{Memory: 2 << 30, Pids: 2048, CPUShares: 1024}},
		{name: "lab asks less", res: sandbox.Resources{Memory: 128 << 20},
			want: runtime.Limits{Memory: 128 << 20, Pids: DefaultSandboxPids, CPUShares: 1024}},
		{name: "capped at the defaults' maximum", res: sandbox.Resources{Memory: 64 << 30, Pids: 100000},
			want:   runtime.Limits{Memory: DefaultMaxSandboxMemory, Pids: DefaultMaxSandboxPids, CPUShares: 1024},
			capped: []string{"memory 64GiB to 4GiB", "pids 100000 to 4096"}},
		{name: "capped at the server's maximum", l: Limits{MaxMemory: 1536 << 20}, res: sandbox.Resources{Memory: 2 << 30},
			want: runtime.Limits{Memory: 1536 << 20, Pids: DefaultSandboxPids, CPUShares: 1024}, capped: []string{"memory 2GiB to 1.5GiB"}},
		{name: "no maximum", l: Limits{MaxMemory: -1, MaxPids: -1}, res: sandbox.Resources{Memory: 64 << 30, Pids: 100000},
			want: runtime.Limits{Memory: 64 << 30, Pids: 100000, CPUShares: 1024}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, capped := tt.l.sandboxLimits(tt.res)
			if got != tt.want || !reflect.DeepEqual(capped, tt.capped) {
				t.Errorf("sandboxLimits = %+v, capped %q; want %+v, %q", got, capped, tt.want, tt.capped)
			}
			if e := tt.l.engineLimits(); tt.eng != (engine.EngineLimits{}) && e != tt.eng {
				t.Errorf("engineLimits = %+v, want %+v", e, tt.eng)
			}
			if tt.name == "none" {
				if e := tt.l.engineLimits(); e != (engine.EngineLimits{}) {
					t.Errorf("engineLimits with none = %+v, want no limits", e)
				}
			}
		})
	}
}
