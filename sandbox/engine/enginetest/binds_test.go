package enginetest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBindMounts compares bind mounts with dockerd, with each engine's own
// copy of the same host tree: a directory read and written, a file
// read-only, a missing -v source (created) and a missing --mount source
// (refused), and docker cp through a bind of a stopped and of a running
// container. labd pins every bind source when it is used (package
// beneath); none of that may change what Docker users see.
func TestBindMounts(t *testing.T) {
	rmf(t, "bind-stopped", "bind-running")
	sameOnBoth(t, "bind mounts", func(e *Engine) string {
		host := t.TempDir()
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		must(os.MkdirAll(filepath.Join(host, "dir/sub"), 0o755))
		must(os.WriteFile(filepath.Join(host, "dir/sub/in.txt"), []byte("from the host\n"), 0o644))
		must(os.WriteFile(filepath.Join(host, "file.txt"), []byte("a file\n"), 0o644))
		must(os.Symlink("sub", filepath.Join(host, "dir/link")))
		strip := func(s string) string { return strings.ReplaceAll(s, host, "<host>") }

		var b strings.Builder
		for _, args := range [][]string{
			{"run", "--rm", "-v", host + "/dir:/d", "busybox", "sh", "-c", "cat /d/sub/in.txt /d/link/in.txt; echo written > /d/out.txt; ls /d"},
			{"run", "--rm", "-v", host + "/file.txt:/f.txt:ro", "busybox", "sh", "-c", "cat /f.txt; echo x > /f.txt"},
			{"run", "--rm", "-v", host + "/dir/link:/l", "busybox", "cat", "/l/in.txt"},
			{"run", "--rm", "-v", host + "/made/by/v:/m", "busybox", "stat", "-c", "%A %U %G %n", "/m"}, // not ls -ld: its minute differs when the two runs straddle one
			{"run", "--rm", "--mount", "type=bind,src=" + host + "/missing,dst=/m", "busybox", "true"},
			{"run", "--rm", "--mount", "type=bind,src=" + host + "/dir,dst=/m,readonly", "busybox", "sh", "-c", "cat /m/sub/in.txt; touch /m/x"},
		} {
			r := run(t, e, args...)
			fmt.Fprintf(&b, "%s: %d %q %q\n", strip(strings.Join(args, " ")), r.Code, norm(strip(r.Stdout)), norm(strip(r.Stderr)))
		}
		out, _ := os.ReadFile(filepath.Join(host, "dir/out.txt"))
		_, madeErr := os.Stat(filepath.Join(host, "made/by/v"))
		fmt.Fprintf(&b, "out.txt on the host: %q; -v source made: %v\n", out, madeErr == nil)

		// docker cp through the bind of a stopped and of a running
		// container, both ways.
		run(t, e, "create", "--name", "bind-stopped", "-v", host+"/dir:/d", "busybox", "true")
		run(t, e, "run", "-d", "--name", "bind-running", "-v", host+"/dir:/d", "busybox", "sleep", "300")
		in := filepath.Join(t.TempDir(), "cp-in.txt")
		must(os.WriteFile(in, []byte("copied in\n"), 0o644))
		for _, c := range []string{"bind-stopped", "bind-running"} {
			r := run(t, e, "cp", c+":/d/sub/in.txt", "-")
			fmt.Fprintf(&b, "cp out of %s: %d %v %q\n", c, r.Code, strings.Contains(r.Stdout, "from the host"), r.Stderr)
			r = run(t, e, "cp", in, c+":/d/"+c+".txt")
			got, _ := os.ReadFile(filepath.Join(host, "dir", c+".txt"))
			fmt.Fprintf(&b, "cp into %s: %d %q %q\n", c, r.Code, r.Stderr, got)
		}
		run(t, e, "rm", "-f", "bind-stopped", "bind-running")
		return b.String()
	})
}
