package engine_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/labd/labd/sandbox/engine"
	"github.com/labd/labd/sandbox/engine/api"
)

// TestContainerLogRotates runs a container that writes 50 MiB under the
// default cap: its log files hold at most the cap, `docker logs --tail 1`
// shows its last line, and a `docker logs -f` started before the output
// ends with that line, its lines in order across the rotations.
func TestContainerLogRotates(t *testing.T) {
	e := busyboxEngine(t)
	e.SetLimits(engine.EngineLimits{Logs: engine.DefaultMaxContainerLog})
	ctx := context.Background()
	const lines = 50 << 10 // of 1 KiB: 50 MiB
	script := fmt.Sprintf(`sleep 0.5; i=0; pad=$(head -c 1000 /dev/zero | tr '\0' x); while [ $i -lt %d ]; do echo "$i $pad"; i=$((i+1)); done; echo last-line`, lines)
	resp, err := e.ContainerCreate(ctx, "", &container.Config{Image: "busybox", Cmd: []string{"sh", "-c", script}}, &container.HostConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	id := resp.ID
	defer e.ContainerRemove(ctx, id, true, true)
	ch, err := e.ContainerWait(ctx, id, container.WaitConditionNextExit)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.ContainerStart(ctx, id); err != nil {
		t.Fatal(err)
	}
	followed := make(chan string, 1)
	go func() {
		var b lockedBuffer
		cfg := api.LogsConfig{Start: func(bool) (io.Writer, io.Writer) { return &b, &b }}
		cfg.ShowStdout, cfg.Follow = true, true
		_ = e.ContainerLogs(ctx, id, cfg)
		followed <- b.String()
	}()
	waitResult(t, ch)

	logs := func(tail string) string {
		var b lockedBuffer
		cfg := api.LogsConfig{Start: func(bool) (io.Writer, io.Writer) { return &b, &b }}
		cfg.ShowStdout, cfg.Tail = true, tail
		if err := e.ContainerLogs(ctx, id, cfg); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	if got := logs("1"); got != "last-line\n" {
		t.Errorf("logs --tail 1 = %q, want %q", got, "last-line\n")
	}
	inspect, err := e.ContainerInspect(ctx, id, false)
	if err != nil {
		t.Fatal(err)
	}
	matches, _ := filepath.Glob(inspect.LogPath + "*")
	var total int64
	for _, m := range matches {
		fi, err := os.Stat(m)
		if err != nil {
			t.Fatal(err)
		}
		total += fi.Size()
	}
	if total > engine.DefaultMaxContainerLog || len(matches) < 2 {
		t.Errorf("%d bytes of logs in %d files, want at most %d in rotated files", total, len(matches), engine.DefaultMaxContainerLog)
	}
	all := logs("all")
	if !strings.HasSuffix(all, "last-line\n") || len(all) < 20<<20 {
		t.Errorf("logs: %d bytes ending %q, want the rotated files' 20 MiB or more ending with last-line", len(all), all[max(0, len(all)-40):])
	}
	f := <-followed
	if !strings.HasSuffix(f, "last-line\n") {
		t.Errorf("logs -f ends %q, want last-line", f[max(0, len(f)-40):])
	}
	prev := -1
	for _, l := range strings.Split(strings.TrimSuffix(f, "last-line\n"), "\n") {
		if l == "" {
			continue
		}
		var n int
		fmt.Sscan(l, &n)
		if n <= prev {
			t.Fatalf("logs -f: line %d after %d", n, prev)
		}
		prev = n
	}
}
