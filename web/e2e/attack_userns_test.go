package e2e_test

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// User namespaces: root in the learner's shell, in their containers and
// in their build steps is an unprivileged host uid of a range of the
// learner's own; files keep Docker's meaning inside.
func init() {
	attacks = append(attacks, attack{
		name: "root in the shell, a container and a build step is an unprivileged host uid of the learner's own",
		script: `echo "shell $(cat /proc/self/uid_map | tr -s ' ' | sed 's/^ //')"
echo "container $(docker run --rm busybox cat /proc/self/uid_map | tr -s ' ' | sed 's/^ //')"
printf 'FROM busybox\nRUN cat /proc/self/uid_map > /map && chown 1000:1000 /map && id -u\n' | docker build --no-cache -q -t mapped - >/dev/null
echo "build $(docker run --rm mapped cat /map | tr -s ' ' | sed 's/^ //')"
echo "owner $(docker run --rm mapped stat -c '%u:%g' /map)"
echo "victim $(cat ~/.labd-test/victim-map)"
touch ~/made-by-root && docker run --rm -v /root:/w busybox sh -c 'touch /w/made-in-container && chown 1000 /w/made-in-container'
echo done`,
		check: func(t *testing.T, a *attackEnv, out string, _ int) {
			maps := map[string][3]int{}
			re := regexp.MustCompile(`(?m)^(shell|container|build|victim) (\d+) (\d+) (\d+)\s*$`)
			for _, m := range re.FindAllStringSubmatch(out, -1) {
				var v [3]int
				for i := range v {
					v[i], _ = strconv.Atoi(m[i+2])
				}
				maps[m[1]] = v
			}
			sh := maps["shell"]
			if sh[0] != 0 || sh[1] == 0 || sh[2] != 65536 {
				t.Errorf("the shell's uid_map %v: want container 0 mapped onto an unprivileged range of 65536", sh)
			}
			for _, k := range []string{"container", "build"} {
				if maps[k] != sh {
					t.Errorf("%s uid_map %v, want the shell's %v", k, maps[k], sh)
				}
			}
			if v := maps["victim"]; v[1] == 0 || v[1] == sh[1] || (v[1] < sh[1]+sh[2] && sh[1] < v[1]+v[2]) {
				t.Errorf("the victim's range %v overlaps the attacker's %v", v, sh)
			}
			if !strings.Contains(out, "owner 1000:1000") {
				t.Errorf("chown in a build step did not keep Docker's meaning:\n%s", out)
			}
			// On the host: every process of the attacker's shell runs as
			// the range's base, and the workspace keeps container ids.
			if n := hostRootProcs(t, sandboxInstance(a.data, a.attacker.sid)); n != 0 {
				t.Errorf("%d processes of the attacker's sandbox run as host root", n)
			}
			ws := filepath.Join(a.data, "sandboxes", a.attacker.sid, "workspace")
			for name, want := range map[string]uint32{"made-by-root": 0, "made-in-container": 1000} {
				if uid, err := fileUID(filepath.Join(ws, name)); err != nil || uid != want {
					t.Errorf("%s in the workspace: uid %d (%v), want %d on disk", name, uid, err, want)
				}
			}
		},
	})
}

// hostRootProcs counts processes in the sandbox's shell container (by its
// cgroup) that run as host uid 0.
func hostRootProcs(t *testing.T, sid string) int {
	t.Helper()
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	n, seen := 0, 0
	for _, d := range dirs {
		cg, err := os.ReadFile(filepath.Join(d, "cgroup"))
		if err != nil || !bytes.Contains(cg, []byte("shell-"+sid)) {
			continue
		}
		f, err := os.Open(filepath.Join(d, "status"))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if fields := strings.Fields(sc.Text()); len(fields) > 1 && fields[0] == "Uid:" {
				seen++
				if fields[1] == "0" {
					n++
				}
			}
		}
		f.Close()
	}
	if seen == 0 {
		t.Errorf("no process of sandbox %s found on the host", sid)
	}
	return n
}

func fileUID(p string) (uint32, error) {
	fi, err := os.Lstat(p)
	if err != nil {
		return 0, err
	}
	return fi.Sys().(*syscall.Stat_t).Uid, nil
}
