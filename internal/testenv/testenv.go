// Package testenv decides what a test does when something it needs from
// the machine is missing (root, dockerd, Chromium, docker CLI 28, Debian
// tools): outside CI it skips with the reason, so a developer on a laptop
// still runs what can run; under CI (CI=true, as .ci/run sets) it fails,
// because a reference that silently did not run is a test that passes by
// accident. `make test` also refuses skips not listed in .ci/skips.txt
// (internal/testreport).
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// CI reports whether the tests run in CI, where nothing may be missing.
func CI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v == "true" || v == "1"
}

// Missing ends the test because a prerequisite is missing: a failure under
// CI, a skip elsewhere. The message says what is missing and how to get it.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if CI() {
		t.Fatalf("%s (required under CI=true: run deploy/deps.sh test as root)", msg)
	}
	t.Skip(msg)
}

// Root needs root (namespaces, mounts, containers).
func Root(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "needs root: %s", why)
	}
}

// Command needs an executable, by name in PATH or by absolute path, and
// returns its path.
func Command(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, "%s not found (Debian package %s)", name, pkg)
	}
	return p
}

// MainMissing is Missing for TestMain, where the whole package cannot run:
// it prints why and returns the exit code (1 under CI, 0 elsewhere).
// internal/testreport fails `make test` on a package that ran no test.
func MainMissing(pkg, format string, args ...any) int {
	msg := fmt.Sprintf(format, args...)
	if CI() {
		fmt.Fprintf(os.Stderr, "%s: %s (required under CI=true: run deploy/deps.sh test as root)\n", pkg, msg)
		return 1
	}
	fmt.Fprintf(os.Stderr, "%s: %s; no test ran\n", pkg, msg)
	return 0
}
