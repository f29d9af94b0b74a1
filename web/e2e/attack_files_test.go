package e2e_test

import (
	"strings"
	"testing"
	"time"
)

// Attacks with files a learner made (issue 12, item 1): beyond the device
// and FIFO Dockerfile, build-context file, image /etc/passwd and graded
// file of attack_test.go, the same in a running container's /etc/passwd
// (docker exec -u), COPY --chown against a FIFO /etc/passwd, and a
// Dockerfile or .dockerignore that is a symlink to a host file: labd must
// answer promptly, read nothing of the host's, and tell nothing about
// whether the host file exists.
func init() {
	attacks = append(attacks, attack{
		name:    "a FIFO or device /etc/passwd in a running container and for COPY --chown; a Dockerfile linked to a host file",
		timeout: 5 * time.Minute,
		script: devTar + `rm -rf ~/files-attack && mkdir ~/files-attack && cd ~/files-attack
for kind in fifo chr; do
  docker rm -f pw-$kind >/dev/null 2>&1
  docker run -d --name pw-$kind busybox sleep 300 >/dev/null
  # The node goes in through docker cp: no mknod in a user namespace.
  devtar /tmp/pw.tar passwd $kind
  docker exec pw-$kind rm /etc/passwd && docker cp - pw-$kind:/etc < /tmp/pw.tar
  docker exec pw-$kind ls -l /etc/passwd
  echo "=== exec -u nobody ($kind)"; timeout 60 docker exec -u nobody pw-$kind id 2>&1; echo "exit $?"
  echo "=== exec ($kind)"; timeout 60 docker exec pw-$kind id 2>&1; echo "exit $?"
  docker rm -f pw-$kind >/dev/null 2>&1
done
echo x > x
printf 'FROM busybox\nRUN rm /etc/passwd && mkfifo /etc/passwd\nCOPY --chown=nobody x /x\n' > Dockerfile
echo "=== COPY --chown"; timeout 120 docker build -t chown-fifo . 2>&1 | tail -1; echo "exit ${PIPESTATUS[0]}"
python3 - <<'PY'
import tarfile, io
def ctx(name, entries):
    with tarfile.open(name, "w") as t:
        for n, target, data in entries:
            ti = tarfile.TarInfo(n)
            if target: ti.type, ti.linkname = tarfile.SYMTYPE, target
            else: ti.size = len(data)
            t.addfile(ti, None if target else io.BytesIO(data))
ctx("df-host.tar", [("Dockerfile", "{{CANARY}}", b"")])
ctx("df-up.tar", [("Dockerfile", "../../../../../../../../..{{CANARY}}", b"")])
ctx("fallback-host.tar", [("dockerfile", "{{CANARY}}", b"")])
ctx("fallback-none.tar", [("dockerfile", "{{CANARY_DIR}}/no-such-file", b"")])
ctx("ignore-host.tar", [("Dockerfile", None, b"FROM busybox\nCOPY . /ctx\nRUN cat /ctx/.dockerignore || true\n"), (".dockerignore", "{{CANARY}}", b"")])
PY
for c in df-host df-up fallback-host fallback-none ignore-host; do
  echo "=== $c"
  ` + engineAPI + ` -X POST -H 'Content-Type: application/x-tar' --data-binary @$c.tar "http://d/v1.41/build?t=files-$c&rm=1" | head -c 1500; echo; echo "curl exit $?"
done
echo "=== end"`,
		check: func(t *testing.T, a *attackEnv, out string, _ int) {
			if strings.Contains(out, "exit 124") || strings.Contains(out, "curl exit 28") {
				t.Errorf("a request hung on a FIFO or device")
			}
			blocks := outputBlocks(out)
			for name, want := range map[string]string{
				"exec -u nobody (fifo)": "unable to find user nobody: open /etc/passwd: not a regular file (FIFO)",
				"exec (fifo)":           "unable to find user 0: open /etc/passwd: not a regular file (FIFO)",
				"exec -u nobody (chr)":  "unable to find user nobody: open /etc/passwd: not a regular file (character device)",
				"COPY --chown":          "can't find uid for user nobody: open /etc/passwd: not a regular file (FIFO)",
				"df-host":               "Cannot locate specified Dockerfile: Dockerfile",
				"df-up":                 "Cannot locate specified Dockerfile: Dockerfile",
			} {
				if !strings.Contains(blocks[name], want) {
					t.Errorf("%s: %q, want it to say %q", name, blocks[name], want)
				}
			}
			// Whether the host file exists must not show.
			if h, n := blocks["fallback-host"], blocks["fallback-none"]; h != n {
				t.Errorf("a dockerfile linked to a host file tells whether it exists:\n%q\n%q", h, n)
			}
			if !strings.Contains(blocks["ignore-host"], "Successfully built") {
				t.Errorf("a .dockerignore linked out of the context should count as absent: %q", blocks["ignore-host"])
			}
			labdNotBloated(t, a, out, 0)
		},
	})
}
