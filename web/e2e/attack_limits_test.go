package e2e_test

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Limits (issue 13): the attacker's sandbox is one cgroup with a memory
// and a pids limit. A container asking for more memory than the sandbox
// has, a tmpfs filled with dd and a hog in the shell are OOM-killed in the
// attacker's sandbox; a fork bomb stops at its pids limit. The victim's
// shell still forks and runs containers, labd answers (common checks).
func init() {
	attacks = append(attacks, attack{
		name: "a fork bomb, a memory hog and a tmpfs filled with dd stay within the attacker's sandbox",
		// python3 -I: an earlier attack may have left a usercustomize.py
		// behind. The bomb keeps running after the script (a classic bomb,
		// then a loop that keeps forking): the check looks at it while it
		// runs, then removes it.
		script: `docker run --rm -m 8g busybox dd if=/dev/zero of=/dev/null bs=3G count=1 2>/dev/null; echo "container hog exit $?"
docker run --rm --tmpfs /big:size=8g busybox dd if=/dev/zero of=/big/fill bs=1M count=3072 2>/dev/null; echo "tmpfs hog exit $?"
python3 -I -c "x = b'x' * (3 << 30)" 2>/dev/null; echo "shell hog exit $?"
docker rm -f bomb >/dev/null 2>&1
docker run -d --name bomb --pids-limit 100000 labd/sandbox bash -c ':(){ :|:& };:; while :; do sleep 1000 & done' >/dev/null 2>&1; echo "bomb started $?"`,
		timeout: 5 * time.Minute,
		check: func(t *testing.T, a *attackEnv, out string, _ int) {
			for _, want := range []string{"container hog exit 137", "tmpfs hog exit 137", "shell hog exit 137", "bomb started 0"} {
				if !strings.Contains(out, want) {
					t.Errorf("want %q in the attack's output", want)
				}
			}
			sid := a.attacker.sid
			defer func() {
				// The bomb goes through the attacker's engine, from labd's side.
				c := &http.Client{Timeout: time.Minute, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					var d net.Dialer
					return d.DialContext(ctx, "unix", filepath.Join(a.data, "sandboxes", sid, "docker.sock"))
				}}}
				req, _ := http.NewRequest("DELETE", "http://d/v1.41/containers/bomb?force=1", nil)
				if resp, err := c.Do(req); err != nil || resp.StatusCode != 204 {
					t.Errorf("remove the bomb: %v %v", resp, err)
				}
				if out, code, ok := a.attacker.sh(`for i in $(seq 30); do sleep 0.1 & done; wait; echo "shell forks again"`, 2*time.Minute); !ok || code != 0 || !strings.Contains(out, "shell forks again") {
					t.Errorf("the attacker's shell after the bomb: exit %d, %q", code, out)
				}
			}()
			max, _ := strconv.Atoi(limitsCgroupFile(t, sandboxInstance(a.data, sid), "pids", "pids.max"))
			var n int
			for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
				n, _ = strconv.Atoi(limitsCgroupFile(t, sandboxInstance(a.data, sid), "pids", "pids.current"))
				if max > 0 && n >= max-10 {
					break
				}
			}
			t.Logf("fork bomb: %d processes in the attacker's sandbox (its limit %d)", n, max)
			if max <= 0 || n > max || n < max/2 {
				t.Errorf("fork bomb: %d processes in the attacker's sandbox, its limit %d: want it held there", n, max)
			}
			// While it runs: labd answers, the other learner's sandbox forks
			// and runs a container.
			if !a.alive() {
				t.Errorf("labd does not answer during the fork bomb")
			}
			vout, code, ok := a.victim.sh(`for i in $(seq 30); do sleep 0.1 & done; wait; docker run --rm busybox echo victim-ok`, 2*time.Minute)
			if !ok || code != 0 || !strings.Contains(vout, "victim-ok") {
				t.Errorf("the victim's sandbox during the fork bomb: exit %d, %q", code, vout)
			}
			limit, _ := strconv.ParseInt(limitsCgroupFile(t, sandboxInstance(a.data, sid), "memory", "memory.limit_in_bytes", "memory.max"), 10, 64)
			peak, _ := strconv.ParseInt(limitsCgroupFile(t, sandboxInstance(a.data, sid), "memory", "memory.max_usage_in_bytes", "memory.peak"), 10, 64)
			t.Logf("attacker's sandbox: memory limit %d MiB, peak %d MiB", limit>>20, peak>>20)
			// The kernel forces a charge it cannot fail (an allocation the
			// OOM killer's victim needs to exit), so the peak may pass the
			// limit by a few pages; a missing limit would show gigabytes.
			const forced = 1 << 20
			if limit <= 0 || limit > 4<<30 || peak > limit+forced {
				t.Errorf("attacker's sandbox memory limit %d, peak %d: want a limit, never passed by more than %d", limit, peak, forced)
			}
		},
	})
}

// sandboxInstance is the name sandbox sid's cgroup, shell and files go
// by: a warm sandbox keeps its own, which DATA/sandboxes/<sid> links to.
func sandboxInstance(data, sid string) string {
	if t, err := os.Readlink(filepath.Join(data, "sandboxes", sid)); err == nil {
		return filepath.Base(t)
	}
	return sid
}

// limitsCgroupFile reads a file of sandbox sid's cgroup (labd serve's
// default parent "labd"): v1 in the controller's hierarchy, else v2 (the
// file named last).
func limitsCgroupFile(t *testing.T, sid, controller string, names ...string) string {
	t.Helper()
	if b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", controller, "labd", sid, names[0])); err == nil {
		return strings.TrimSpace(string(b))
	}
	b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/labd", sid, names[len(names)-1]))
	if err != nil {
		t.Errorf("the attacker's sandbox has no cgroup of its own: %v", err)
	}
	return strings.TrimSpace(string(b))
}
