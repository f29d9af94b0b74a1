package mountinfo

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
)

// Source is the source (device) of the topmost mount at dir, and whether
// dir is a mount point at all.
func Source(dir string) (string, bool) {
	dir = filepath.Clean(dir)
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", false
	}
	defer f.Close()
	src, found := "", false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || unescape(fields[4]) != dir {
			continue
		}
		found, src = true, ""
		for i, fl := range fields {
			if fl == "-" && i+2 < len(fields) {
				src = unescape(fields[i+2])
				break
			}
		}
	}
	return src, found
}

// IsMount says whether dir is a mount point.
func IsMount(dir string) bool {
	_, ok := Source(dir)
	return ok
}
