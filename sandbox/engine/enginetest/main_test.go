package enginetest

import (
	"fmt"
	"os"
	"testing"

	"github.com/labd/labd/internal/testenv"
)

// pair is shared by the package's tests: starting dockerd costs seconds.
var pair *Pair

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		os.Exit(testenv.MainMissing("enginetest", "needs root (overlay mounts, containers)"))
	}
	if NoDockerd() && testenv.CI() {
		os.Exit(testenv.MainMissing("enginetest", "LABD_NO_DOCKERD=1: the differential tests need the reference dockerd"))
	}
	var err error
	pair, err = StartPair()
	if err != nil {
		fmt.Fprintln(os.Stderr, "enginetest:", err)
		RemoveBinary()
		os.Exit(1)
	}
	code := m.Run()
	if pair.Labd.Exited() {
		// It died under the tests: its log says why.
		log := pair.Labd.Log()
		fmt.Fprintf(os.Stderr, "enginetest: labd's engine exited during the tests; the end of its log:\n%s\n", log[max(0, len(log)-8000):])
		code = 1
	}
	pair.Close()
	RemoveBinary()
	os.Exit(code)
}

// both returns labd and the reference dockerd. Without dockerd
// (LABD_NO_DOCKERD=1) the test stops there: a differential test with one
// engine compares nothing and must not report a pass.
func both(t *testing.T) []*Engine {
	t.Helper()
	needDockerd(t)
	return []*Engine{pair.Labd, pair.Dockerd}
}

// needDockerd stops a test that compares with the reference engine when it
// does not run (a skip on a laptop with LABD_NO_DOCKERD=1, a failure in CI).
func needDockerd(t testing.TB) {
	t.Helper()
	if pair.Dockerd == nil {
		testenv.Missing(t, "LABD_NO_DOCKERD=1: no reference dockerd to compare with")
	}
}

// needCLI28 stops a test that drives docker CLI 28 where it is missing.
// Debian ships only CLI 20.10; this machine kind carries 28 at
// /usr/local/bin/docker, and deploy/deps.sh test says so when it is gone.
func needCLI28(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(DockerCLI28); err != nil {
		testenv.Missing(t, "docker CLI 28 (%s): %v", DockerCLI28, err)
	}
}
