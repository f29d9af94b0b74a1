// Package mountinfo reads the mount table (/proc/self/mountinfo) to find
// and detach what the engine mounted below a directory: leftovers of a
// killed labd at start, and leak counts in tests.
package mountinfo

import (
	"bufio"
	"os"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// Under lists the mount points strictly below dir, deepest first, so they
// can be unmounted in that order.
func Under(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	prefix := strings.TrimSuffix(dir, "/") + "/"
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		if mp := unescape(fields[4]); strings.HasPrefix(mp, prefix) {
			out = append(out, mp)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// UnmountUnder detaches every mount below dir, deepest first. Errors are
// ignored: a mount that cannot go now is detached lazily by the kernel.
func UnmountUnder(dir string) {
	for _, m := range Under(dir) {
		_ = unix.Unmount(m, unix.MNT_DETACH)
	}
}

// unescape undoes the octal escapes mountinfo uses for space, tab, newline
// and backslash in paths.
var unescaper = strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)

func unescape(s string) string { return unescaper.Replace(s) }
