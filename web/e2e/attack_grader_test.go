package e2e_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Attacks on the grader (issue 12, item 8): script checks run in a check
// container of the pristine sandbox image, http checks connect from labd
// itself, and the grader's engine calls go to a socket of its own.
func init() {
	attacks = append(attacks,
		attack{
			name: "a replaced bash and planted dotfiles fool no check",
			// The fake bash answers the grader's old commands (bash -c with
			// its http request or its script) and runs the real bash for
			// anything else, so the terminal keeps working.
			script: `set -e
cp /usr/bin/bash /usr/local/lib/real-bash
cat > /tmp/fakebash <<'FAKE'
#!/bin/sh
case "$1$2" in
-c*LABD_PORT*) printf 'HTTP/1.0 200 OK\r\n\r\nhello from a fake bash\n'; exit 0 ;;
-c*labd-grader*|-c*SystemExit*|-c*localhost:5097*) exit 0 ;;
esac
exec /usr/local/lib/real-bash "$@"
FAKE
chmod +x /tmp/fakebash && mv /tmp/fakebash /usr/bin/bash
echo 'write-out = "hello"' > ~/.curlrc
site=$(python3 -c 'import site; print(site.getusersitepackages())')
mkdir -p "$site" && echo 'import os; os._exit(0)' > "$site/usercustomize.py"
echo planted`,
			check: checksNotFooled,
		},
		attack{
			name: "the grader's socket is out of the learner's reach",
			// Through the engine API: an earlier attack may have left a
			// fake docker CLI behind.
			script: `for p in /var/run/grader.sock /run/grader.sock /root/grader.sock; do test -e $p && echo "ESCAPE: $p exists"; done
find / -xdev -name grader.sock 2>/dev/null | grep . && echo "ESCAPE: the grader's socket is visible"
for src in /root/../grader.sock /root/../../grader.sock; do
  out=$(` + engineAPI + ` -H 'Content-Type: application/json' -d '{"Image":"busybox","Cmd":["sh","-c","test -S /s"],"HostConfig":{"Binds":["'$src':/s"]}}' http://d/v1.41/containers/create)
  echo "create with $src: $out"
  id=$(echo "$out" | sed -n 's/.*"Id":"\([0-9a-f]*\)".*/\1/p')
  if [ -n "$id" ]; then
    ` + engineAPI + ` -X POST http://d/v1.41/containers/$id/start
    ` + engineAPI + ` -X POST http://d/v1.41/containers/$id/wait | grep -q '"StatusCode":0' && echo "ESCAPE: a container has the grader's socket ($src)"
    ` + engineAPI + ` -X DELETE "http://d/v1.41/containers/$id?force=1"
  fi
done
true`,
		},
	)
}

// checksNotFooled: the checks the fake bash and the dotfiles target fail,
// as they should on an untouched sandbox; then the shell is restored.
func checksNotFooled(t *testing.T, a *attackEnv, _ string, _ int) {
	t.Helper()
	// python3 -I: the planted usercustomize.py would make the plain
	// python3 that finds it exit before printing where it is.
	defer a.attacker.sh(`site=$(python3 -I -c 'import site; print(site.getusersitepackages())' 2>/dev/null)
rm -f ~/.curlrc "$site/usercustomize.py"; mv /usr/local/lib/real-bash /usr/bin/bash`, time.Minute)
	want := map[string]string{
		"http-fooled":   "Nothing answers on port 5097",
		"script-curlrc": "exit status 1",
		"script-python": "exit status 1",
	}
	r := grade(t, filepath.Join(a.data, "grade.sock"), a.attacker.sid, "attack-lab")
	for _, s := range r.Result.Steps {
		for _, c := range s.Checks {
			msg, ok := want[c.ID]
			if !ok {
				continue
			}
			delete(want, c.ID)
			if c.State != "failed" || !strings.Contains(c.Message, msg) {
				t.Errorf("check %s = %s %q; want failed with %q (the learner's programs or dotfiles fooled it)", c.ID, c.State, c.Message, msg)
			}
		}
	}
	for id := range want {
		t.Errorf("the attack lab has no check %s", id)
	}
}
