package e2e_test

import (
	"sort"
	"strings"
	"testing"
)

// Registry attacks beyond attack_test.go's: other spellings of loopback
// addresses (a host is allowed only by its normalised written form, never
// by what it resolves to), COPY --from, and a login by URL. Each spelling
// of labd's web port must get the very answer the same spelling of a
// closed port gets, saying what is allowed, and nothing may show that a
// connection was tried.
func init() {
	attacks = append(attacks, attack{
		name: "the engine reaching loopback ports through other spellings of the address",
		script: `docker rmi -f $(docker images -q --filter reference='*/x/y') >/dev/null 2>&1
for which in open closed; do
  port={{LABD_PORT}}; [ $which = closed ] && port={{CLOSED_PORT}}
  for sp in 'localhost:P' '127.0.0.1:0P' '2130706433:P' '127.1:P' '0x7f000001:P' '0177.0.0.1:P' '[::1]:P'; do
    host=${sp//P/$port}
    # The docker CLI itself refuses IPv6 literals in image names.
    case $sp in \[*) named=false ;; *) named=true ;; esac
    $named && { echo "=== pull $sp $which"; timeout 60 docker pull $host/x/y:1 2>&1; }
    echo "=== copy-from $sp $which"; printf 'FROM busybox\nCOPY --from=%s/x/y:1 /etc/hostname /h\n' $host | timeout 60 docker build -q - 2>&1
    echo "=== login $sp $which"; echo pw | timeout 60 docker login -u u --password-stdin $host 2>&1
    docker tag busybox $host/x/y:1 >/dev/null 2>&1
    $named && { echo "=== push $sp $which"; timeout 60 docker push $host/x/y:1 2>&1; }
    docker rmi $host/x/y:1 >/dev/null 2>&1
  done
  echo "=== login-url $which"; echo pw | timeout 60 docker login -u u --password-stdin "http://[::ffff:127.0.0.1]:$port/v2/" 2>&1
done
echo "=== end"`,
		check: sameAnswersAnySpelling,
	})
}

// sameAnswersAnySpelling: blocks "=== OP SPELLING open|closed" answer alike
// (ports masked), say what is allowed, and show no connection attempt.
func sameAnswersAnySpelling(t *testing.T, a *attackEnv, out string, _ int) {
	t.Helper()
	blocks := outputBlocks(out, a.labdPort, a.closedPort)
	var names []string
	for name := range blocks {
		if base, ok := strings.CutSuffix(name, " open"); ok {
			names = append(names, base)
		}
	}
	sort.Strings(names)
	if len(names) < 27 {
		t.Errorf("only %d operations ran: the script did not run through", len(names))
	}
	for _, base := range names {
		o, c := blocks[base+" open"], blocks[base+" closed"]
		if o != c {
			t.Errorf("%s: the engine tells an open port from a closed one:\nopen:   %q\nclosed: %q", base, o, c)
		}
		if !strings.Contains(o, "allowed") {
			t.Errorf("%s: the refusal does not say what is allowed: %q", base, o)
		}
		for _, sign := range []string{"connection refused", "EOF", "dial tcp", "connection reset", "Login Succeeded", "digest: sha256"} {
			if strings.Contains(o, sign) || strings.Contains(c, sign) {
				t.Errorf("%s: %q in the answer: the engine went there", base, sign)
			}
		}
	}
}
