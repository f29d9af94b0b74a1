package enginebox

import (
	"os"
	"path/filepath"
	"testing"
)

// TestGroupLimits: the limits read back from a cgroup's files, v1 and
// v2, with "no limit" in each one's words.
func TestGroupLimits(t *testing.T) {
	dir := func(files map[string]string) string {
		d := t.TempDir()
		for name, v := range files {
			if err := os.WriteFile(filepath.Join(d, name), []byte(v+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	v2 := dir(map[string]string{"memory.max": "1073741824", "pids.max": "512"})
	v2max := dir(map[string]string{"memory.max": "max", "pids.max": "max"})
	v1mem := dir(map[string]string{"memory.limit_in_bytes": "536870912"})
	v1unlimited := dir(map[string]string{"memory.limit_in_bytes": "9223372036854771712"})
	v1pids := dir(map[string]string{"pids.max": "100"})
	tests := []struct {
		name      string
		dirs      map[string]string
		mem, pids int64
	}{
		{"v2", map[string]string{"": v2}, 1 << 30, 512},
		{"v2 without limits", map[string]string{"": v2max}, 0, 0},
		{"v1", map[string]string{"memory": v1mem, "pids": v1pids, "cpu": t.TempDir()}, 512 << 20, 100},
		{"v1 unlimited memory", map[string]string{"memory": v1unlimited, "pids": v1pids}, 0, 100},
		{"hybrid: v1 controllers beside the unified tree", map[string]string{"": v2, "memory": v1mem, "pids": v1pids}, 512 << 20, 100},
		{"missing files", map[string]string{"memory": t.TempDir()}, 0, 0},
	}
	for _, tt := range tests {
		mem, pids := groupLimits(tt.dirs)
		if mem != tt.mem || pids != tt.pids {
			t.Errorf("%s: %d, %d; want %d, %d", tt.name, mem, pids, tt.mem, tt.pids)
		}
	}
}
