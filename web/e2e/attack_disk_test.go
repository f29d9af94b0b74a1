package e2e_test

import (
	"strings"
	"testing"
	"time"
)

// Disk (issue 13, item 2): the attacker fills their sandbox's disk quota
// every way a learner can: fallocate and dd in the workspace, dd in the
// shell's own writable layer, in a container's writable layer, in a volume,
// and a build whose RUN step writes a huge layer. Each gets the kernel's
// "No space left on device" in the attacker's sandbox; after rm the
// attacker writes again; labd answers and the victim's files, container
// and image are untouched (common checks).
func init() {
	attacks = append(attacks, attack{
		name:    "fallocate 30G, dd until full in the workspace, the shell, a container, a volume and a build stay within the attacker's disk quota",
		timeout: 10 * time.Minute,
		script: `cd ~ && rm -rf ~/disk-attack && mkdir ~/disk-attack && cd ~/disk-attack
again() { head -c 1048576 /dev/zero > ~/disk-attack/again && rm ~/disk-attack/again && echo "writes again"; }
echo "=== fallocate"; fallocate -l 30G ~/big 2>&1; echo "exit $?"; rm -f ~/big; again
echo "=== workspace"; dd if=/dev/zero of=$HOME/fill bs=1M 2>&1 | grep -v records; rm -f ~/fill; again
echo "=== shell"; dd if=/dev/zero of=/var/tmp/fill bs=1M 2>&1 | grep -v records; rm -f /var/tmp/fill; again
echo "=== container"; docker run --rm busybox dd if=/dev/zero of=/fill bs=1M 2>&1 | grep -v records; again
echo "=== volume"; docker run --rm -v disk-attack:/v busybox dd if=/dev/zero of=/v/fill bs=1M 2>&1 | grep -v records; docker volume rm disk-attack >/dev/null; again
printf 'FROM busybox\nRUN dd if=/dev/zero of=/fill bs=1M count=65536\n' > Dockerfile
echo "=== build"; docker build -q -t disk-attack . 2>&1 | grep -E 'No space|returned|Successfully'; again
echo "=== df"; df -h ~ | tail -1
cd ~ && rm -rf ~/disk-attack
echo "=== end"`,
		check: func(t *testing.T, a *attackEnv, out string, _ int) {
			blocks := outputBlocks(out)
			for _, name := range []string{"fallocate", "workspace", "shell", "container", "volume", "build"} {
				b := blocks[name]
				if !strings.Contains(b, "No space left on device") && !strings.Contains(b, "no space left on device") {
					t.Errorf("%s: %q, want \"No space left on device\"", name, b)
				}
				if !strings.Contains(b, "writes again") {
					t.Errorf("%s: the learner cannot write after rm: %q", name, b)
				}
			}
			if strings.Contains(blocks["build"], "Successfully") {
				t.Errorf("a 64 GiB layer was built: %q", blocks["build"])
			}
			labdNotBloated(t, a, out, 0)
		},
	})
}
