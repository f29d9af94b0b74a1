package ctr

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
)

func TestLogPolicyOf(t *testing.T) {
	const capTotal = 30 << 20
	for _, tc := range []struct {
		name    string
		lc      container.LogConfig
		capSize int64
		want    logPolicy
		err     string
	}{
		{name: "default under a cap", lc: container.LogConfig{Type: "json-file"}, capSize: capTotal, want: logPolicy{maxSize: 10 << 20, maxFiles: 3}},
		{name: "empty type", capSize: capTotal, want: logPolicy{maxSize: 10 << 20, maxFiles: 3}},
		{name: "no cap as dockerd", lc: container.LogConfig{Type: "json-file"}, want: logPolicy{maxFiles: 1}},
		{name: "within the cap", lc: container.LogConfig{Config: map[string]string{"max-size": "1m", "max-file": "5"}}, capSize: capTotal, want: logPolicy{maxSize: 1000000, maxFiles: 5}},
		{name: "max-file alone splits the cap", lc: container.LogConfig{Config: map[string]string{"max-file": "2"}}, capSize: capTotal, want: logPolicy{maxSize: 15 << 20, maxFiles: 2}},
		{name: "above the cap", lc: container.LogConfig{Config: map[string]string{"max-size": "20m", "max-file": "3"}}, capSize: capTotal, err: "above this sandbox's limit of 31.46MB per container (--max-container-log)"},
		{name: "overflow", lc: container.LogConfig{Config: map[string]string{"max-size": "8000p", "max-file": "3"}}, capSize: capTotal, err: "above this sandbox's limit"},
		{name: "none", lc: container.LogConfig{Type: "none"}, capSize: capTotal, want: logPolicy{none: true, maxFiles: 1}},
		{name: "other driver", lc: container.LogConfig{Type: "syslog"}, err: "logger: no log driver named 'syslog' is registered"},
		{name: "unknown opt", lc: container.LogConfig{Config: map[string]string{"mode": "non-blocking"}}, err: "unknown log opt 'mode' for json-file log driver"},
		{name: "bad size", lc: container.LogConfig{Config: map[string]string{"max-size": "0"}}, err: "max-size must be a positive number"},
		{name: "bad files", lc: container.LogConfig{Config: map[string]string{"max-file": "0"}}, err: "max-file cannot be less than 1"},
		{name: "compress", lc: container.LogConfig{Config: map[string]string{"compress": "true"}}, err: "does not compress"},
		{name: "tag accepted", lc: container.LogConfig{Config: map[string]string{"tag": "x"}}, capSize: capTotal, want: logPolicy{maxSize: 10 << 20, maxFiles: 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := logPolicyOf(tc.lc, tc.capSize)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("policy = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestLogFileRotates writes 50 MiB of records through a 30 MiB policy:
// the files on disk stay within the cap, a snapshot reads the newest
// records in order across the rotated files, and one taken before a
// rotation still reads what it saw.
func TestLogFileRotates(t *testing.T) {
	for _, pol := range []logPolicy{{maxSize: 10 << 20, maxFiles: 3}, {maxSize: 1 << 20, maxFiles: 1}} {
		t.Run(fmt.Sprintf("%dx%d", pol.maxSize, pol.maxFiles), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "c-json.log")
			l, err := openLogFile(path, pol)
			if err != nil {
				t.Fatal(err)
			}
			defer l.close()
			line := strings.Repeat("x", 1000)
			var early *logSnapshot
			n := 0
			for written := 0; written < 50<<20; n++ {
				b, _ := json.Marshal(logRecord{Log: fmt.Sprintf("%d %s\n", n, line), Stream: "stdout", Time: time.Now()})
				b = append(b, '\n')
				l.write(b)
				written += len(b)
				if n == 100 {
					early = snapshotLog(path, l.size)
				}
			}
			var total int64
			ents, _ := os.ReadDir(dir)
			for _, e := range ents {
				fi, _ := e.Info()
				total += fi.Size()
			}
			if limit := pol.maxSize * int64(pol.maxFiles); total > limit {
				t.Errorf("%d bytes of logs on disk in %d files, want at most %d", total, len(ents), limit)
			}
			recs, err := snapshotLog(path, l.size).records()
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) == 0 || !strings.HasPrefix(recs[len(recs)-1].Log, fmt.Sprintf("%d ", n-1)) {
				t.Fatalf("last record is not the last written (%d)", n-1)
			}
			for i := 1; i < len(recs); i++ {
				var a, b int
				fmt.Sscan(recs[i-1].Log, &a)
				fmt.Sscan(recs[i].Log, &b)
				if b != a+1 {
					t.Fatalf("records %d and %d out of order: %d then %d", i-1, i, a, b)
				}
			}
			old, err := early.records()
			if err != nil {
				t.Fatal(err)
			}
			if len(old) != 101 || !strings.HasPrefix(old[100].Log, "100 ") {
				t.Fatalf("snapshot taken at record 100 reads %d records after rotations, want 101", len(old))
			}
		})
	}
}
