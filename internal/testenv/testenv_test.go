package testenv

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestMissing runs this test binary again as the helper below: under
// CI=true a missing prerequisite fails the test, elsewhere it skips it.
func TestMissing(t *testing.T) {
	for _, tc := range []struct {
		ci       string
		wantFail bool
		want     string
	}{
		{"true", true, "required under CI=true"},
		{"1", true, "required under CI=true"},
		{"", false, "--- SKIP: TestHelperMissing"},
		{"false", false, "--- SKIP: TestHelperMissing"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperMissing$", "-test.v")
		cmd.Env = append(os.Environ(), "LABD_TESTENV_HELPER=1", "CI="+tc.ci)
		out, err := cmd.CombinedOutput()
		if failed := err != nil; failed != tc.wantFail || !strings.Contains(string(out), tc.want) {
			t.Errorf("CI=%q: failed %v (want %v), output lacks %q?\n%s", tc.ci, failed, tc.wantFail, tc.want, out)
		}
		if !strings.Contains(string(out), "dockerd-that-does-not-exist not found (Debian package docker.io)") {
			t.Errorf("CI=%q: the reason is not printed:\n%s", tc.ci, out)
		}
	}
}

// TestHelperMissing is run by TestMissing only.
func TestHelperMissing(t *testing.T) {
	if os.Getenv("LABD_TESTENV_HELPER") != "1" {
		return
	}
	Command(t, "dockerd-that-does-not-exist", "docker.io")
	t.Error("Command returned for a missing command")
}
