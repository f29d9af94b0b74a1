package ctr

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/go-units"
	"github.com/labd/labd/sandbox/engine/api"
)

// defaultLogFiles is how many files the default cap is cut into, so a
// rotation drops a third of the log rather than all of it.
const defaultLogFiles = 3

// logPolicy is how a container's json-file log rotates, as dockerd's
// max-size and max-file.
type logPolicy struct {
	maxSize  int64 // bytes per file; 0: one file that grows without end
	maxFiles int   // files kept, the current one included; at least 1
	none     bool  // --log-driver none: nothing is kept
}

// logPolicyOf checks a container's --log-driver and --log-opt as dockerd
// does (its wording), and bounds what they keep by capTotal (0: no cap, as
// dockerd). Without max-size the cap is cut into defaultLogFiles files.
func logPolicyOf(lc container.LogConfig, capTotal int64) (logPolicy, error) {
	switch lc.Type {
	case "", "json-file":
	case "none":
		if len(lc.Config) > 0 {
			for k := range lc.Config {
				return logPolicy{}, api.InvalidParameterError(fmt.Errorf("unknown log opt '%s' for none log driver", k))
			}
		}
		return logPolicy{none: true, maxFiles: 1}, nil
	default:
		return logPolicy{}, api.InvalidParameterError(fmt.Errorf("logger: no log driver named '%s' is registered (labd's engine keeps json-file logs only)", lc.Type))
	}
	for key := range lc.Config {
		switch key {
		case "max-file", "max-size", "compress", "labels", "labels-regex", "env", "env-regex", "tag":
		default:
			return logPolicy{}, api.InvalidParameterError(fmt.Errorf("unknown log opt '%s' for json-file log driver", key))
		}
	}
	p := logPolicy{maxFiles: 1}
	if v, ok := lc.Config["max-size"]; ok {
		n, err := units.FromHumanSize(v)
		if err != nil {
			return logPolicy{}, api.InvalidParameterError(err)
		}
		if n <= 0 {
			return logPolicy{}, api.InvalidParameterError(errors.New("max-size must be a positive number"))
		}
		p.maxSize = n
	}
	if v, ok := lc.Config["max-file"]; ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			return logPolicy{}, api.InvalidParameterError(err)
		}
		if n < 1 {
			return logPolicy{}, api.InvalidParameterError(errors.New("max-file cannot be less than 1"))
		}
		p.maxFiles = n
	}
	if v, ok := lc.Config["compress"]; ok {
		c, err := strconv.ParseBool(v)
		if err != nil {
			return logPolicy{}, api.InvalidParameterError(err)
		}
		if c {
			return logPolicy{}, api.InvalidParameterError(errors.New("log-opt compress=true: labd's engine does not compress rotated logs; leave it out"))
		}
	}
	if capTotal <= 0 {
		return p, nil
	}
	if p.maxSize == 0 {
		if _, ok := lc.Config["max-file"]; !ok {
			p.maxFiles = defaultLogFiles
		}
		p.maxSize = capTotal / int64(p.maxFiles)
		return p, nil
	}
	if total := p.maxSize * int64(p.maxFiles); total > capTotal || total/int64(p.maxFiles) != p.maxSize {
		return logPolicy{}, api.InvalidParameterError(fmt.Errorf("--log-opt max-size=%s max-file=%d would keep up to %s of logs, above this sandbox's limit of %s per container (--max-container-log); ask for less, e.g. --log-opt max-size=%s",
			lc.Config["max-size"], p.maxFiles, units.HumanSize(float64(total)), units.HumanSize(float64(capTotal)), units.HumanSize(float64(capTotal/int64(p.maxFiles)))))
	}
	return p, nil
}

// logFile is a container's json-file log: path, and once it has rotated
// path.1 (the newest rotated) to path.<maxFiles-1>, as dockerd names them.
type logFile struct {
	path string
	pol  logPolicy
	f    *os.File // nil with pol.none
	size int64    // of the current file
}

func openLogFile(path string, pol logPolicy) (*logFile, error) {
	l := &logFile{path: path, pol: pol}
	if pol.none {
		return l, nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open container log: %w", err)
	}
	l.f = f
	// Files an earlier run with a larger max-file left are not this run's.
	for i := max(pol.maxFiles, 1); i <= maxRotated; i++ {
		if os.Remove(rotatedName(path, i)) != nil {
			break
		}
	}
	if fi, err := f.Stat(); err == nil {
		l.size = fi.Size()
	}
	return l, nil
}

// write appends one record, whole, then rotates if the file has reached
// max-size (dockerd's order: a record is never split across files). A
// write the disk refuses (the sandbox's quota) loses the record, not the
// container.
func (l *logFile) write(b []byte) {
	if l.f == nil {
		return
	}
	n, _ := l.f.Write(b)
	l.size += int64(n)
	if l.pol.maxSize > 0 && l.size >= l.pol.maxSize {
		_ = l.rotate()
	}
}

// rotate shifts path.N to path.N+1 (dropping the oldest), path to path.1,
// and starts an empty path; with max-file 1 it starts path afresh, as
// dockerd. Files are renamed or unlinked, never truncated: a reader holds
// open files (logSnapshot), which keep what they had.
func (l *logFile) rotate() error {
	if l.pol.maxFiles <= 1 {
		if err := os.Remove(l.path); err != nil {
			return err
		}
	} else {
		_ = os.Remove(rotatedName(l.path, l.pol.maxFiles-1))
		for i := l.pol.maxFiles - 2; i >= 1; i-- {
			_ = os.Rename(rotatedName(l.path, i), rotatedName(l.path, i+1))
		}
		if err := os.Rename(l.path, rotatedName(l.path, 1)); err != nil {
			return err
		}
	}
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	_ = l.f.Close()
	l.f, l.size = f, 0
	return nil
}

func (l *logFile) close() {
	if l.f != nil {
		_ = l.f.Close()
	}
}

func rotatedName(path string, i int) string { return path + "." + strconv.Itoa(i) }

// maxRotated bounds how many rotated files a reader looks for (a
// container's max-file may have been larger on an earlier run).
const maxRotated = 100

// logSnapshot is a container's log as it was at one moment: open files,
// oldest first, the last one read up to last bytes (what was written
// before the snapshot; the rest reaches followers live).
type logSnapshot struct {
	files []*os.File
	last  int64 // -1: the whole of the last file
}

// snapshotLog opens path's rotated files and path itself. Taken while the
// writer cannot rotate (output's lock, or no run), it is consistent.
func snapshotLog(path string, last int64) *logSnapshot {
	s := &logSnapshot{last: last}
	var rotated []*os.File
	for i := 1; i <= maxRotated; i++ {
		f, err := os.Open(rotatedName(path, i))
		if err != nil {
			break
		}
		rotated = append(rotated, f)
	}
	for i := len(rotated) - 1; i >= 0; i-- {
		s.files = append(s.files, rotated[i])
	}
	if f, err := os.Open(path); err == nil {
		s.files = append(s.files, f)
	} else if last > 0 {
		s.last = -1
	}
	return s
}

func (s *logSnapshot) close() {
	for _, f := range s.files {
		_ = f.Close()
	}
}

// records reads every record of the snapshot and closes it.
func (s *logSnapshot) records() ([]logRecord, error) {
	defer s.close()
	var out []logRecord
	for i, f := range s.files {
		var r io.Reader = f
		if i == len(s.files)-1 && s.last >= 0 {
			r = io.LimitReader(f, s.last)
		}
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var rec logRecord
			if err := json.Unmarshal(sc.Bytes(), &rec); err == nil {
				out = append(out, rec)
			}
		}
		if err := sc.Err(); err != nil {
			return out, err
		}
	}
	return out, nil
}

// CheckLogConfig refuses a --log-driver or --log-opt that a run could not
// honour within capTotal bytes (0: no cap), in dockerd's words where it
// has them: at create, so the client hears it before anything exists.
func CheckLogConfig(lc container.LogConfig, capTotal int64) error {
	_, err := logPolicyOf(lc, capTotal)
	return err
}
