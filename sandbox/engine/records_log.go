package engine

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/labd/labd/sandbox/engine/api"
)

// Record kinds, the key of each line of a view's record log.
const (
	kindCall      = "call"
	kindBuild     = "build"
	kindContainer = "container"
)

// minCompact is how many dropped lines a log may carry before it is
// rewritten, so a small log is not rewritten on every record.
const minCompact = 256

// recordLine is one line of a record log: exactly one field is set.
type recordLine struct {
	Call      *api.Call        `json:"call,omitempty"`
	Build     *BuildRecord     `json:"build,omitempty"`
	Container *ContainerRecord `json:"container,omitempty"`
}

// recordLog keeps a view's records across restarts in
// engine/records/<view>.jsonl (docs/engine.md): appended one JSON line per
// record, rewritten with only the kept records once the dropped ones
// outnumber them. A file rather than labd.db: the engine also runs alone
// (`labd engine`, no database), records are written on the request path of
// every learner's API call, where 50 sandboxes must not queue on SQLite's
// single writer, and it sits beside the transfer log
// (engine/distribution/transfers/<view>.jsonl) in the same format.
type recordLog struct {
	path   string
	lines  int // lines in the file, kept or not
	log    *slog.Logger
	warned bool
}

// openRecords loads a view's records from dir. Lines that do not parse
// (the torn last line of a killed labd) are skipped.
func openRecords(dir, view string, log *slog.Logger) (*records, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("records directory: %w", err)
	}
	l := &recordLog{path: filepath.Join(dir, view+".jsonl"), log: log}
	r := &records{log: l}
	f, err := os.Open(l.path)
	if errors.Is(err, fs.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open records: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		l.lines++
		var ln recordLine
		if json.Unmarshal(sc.Bytes(), &ln) != nil {
			continue
		}
		switch {
		case ln.Call != nil:
			r.calls = append(r.calls, *ln.Call)
		case ln.Build != nil:
			r.builds = append(r.builds, *ln.Build)
		case ln.Container != nil:
			r.ctrs = append(r.ctrs, *ln.Container)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read records %s: %w", l.path, err)
	}
	r.calls, r.builds, r.ctrs = last(r.calls, maxCalls), last(r.builds, maxBuilds), last(r.ctrs, maxContainers)
	if l.lines > r.kept() {
		l.compact(r)
	}
	return r, nil
}

// kept counts the records served (and written by compact).
func (r *records) kept() int {
	return len(last(r.calls, maxCalls)) + len(last(r.builds, maxBuilds)) + len(last(r.ctrs, maxContainers))
}

// append writes one record; r.mu is held. A failed write keeps the record
// in memory and is logged once per view.
func (l *recordLog) append(r *records, kind string, v any) {
	var ln recordLine
	switch x := v.(type) {
	case api.Call:
		ln.Call = &x
	case BuildRecord:
		ln.Build = &x
	case ContainerRecord:
		ln.Container = &x
	default:
		return
	}
	b, err := json.Marshal(ln)
	if err == nil {
		err = appendLine(l.path, b)
	}
	if err != nil {
		l.fail(err)
		return
	}
	l.lines++
	if dropped := l.lines - r.kept(); dropped >= max(r.kept(), minCompact) {
		l.compact(r)
	}
}

func appendLine(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	return errors.Join(err, f.Close())
}

// compact rewrites the log with the kept records only (r.mu is held or r
// is not shared yet). The new file replaces the old one by rename, so a
// crash leaves one or the other.
func (l *recordLog) compact(r *records) {
	tmp := l.path + ".tmp"
	err := func() error {
		f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		w := bufio.NewWriter(f)
		enc := json.NewEncoder(w) // one value per line
		var errs []error
		for _, c := range last(r.calls, maxCalls) {
			errs = append(errs, enc.Encode(recordLine{Call: &c}))
		}
		for _, b := range last(r.builds, maxBuilds) {
			errs = append(errs, enc.Encode(recordLine{Build: &b}))
		}
		for _, c := range last(r.ctrs, maxContainers) {
			errs = append(errs, enc.Encode(recordLine{Container: &c}))
		}
		errs = append(errs, w.Flush(), f.Sync(), f.Close())
		if err := errors.Join(errs...); err != nil {
			return err
		}
		return os.Rename(tmp, l.path)
	}()
	if err != nil {
		os.Remove(tmp)
		l.fail(fmt.Errorf("compact: %w", err))
		return
	}
	l.lines = r.kept()
}

func (l *recordLog) fail(err error) {
	if l.warned {
		return
	}
	l.warned = true
	l.log.Warn("engine records are kept in memory only", "file", l.path, "err", err)
}
