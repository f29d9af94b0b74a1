// Package atomicfile writes files that a crash leaves either whole and
// old or whole and new: labd is killed with -9 in its own tests, and a
// half-written state file would lose a container or a volume on restart.
package atomicfile

import (
	"encoding/json"
	"os"
)

// WriteJSON writes v as JSON to path (mode 0600): into a temporary file
// beside it, synced, then renamed over it.
func WriteJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
