package ctr

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"sync"
	"time"

	timetypes "github.com/docker/docker/api/types/time"
	"github.com/labd/labd/sandbox/engine/api"
)

// logRecord is one line of the json-file log, as dockerd's json-file
// driver writes it: {"log":"out\n","stream":"stdout","time":"…"}.
type logRecord struct {
	Log    string    `json:"log"`
	Stream string    `json:"stream"`
	Time   time.Time `json:"time"`
}

// timestampFormat is dockerd's RFC3339NanoFixed (`docker logs -t`).
const timestampFormat = "2006-01-02T15:04:05.000000000Z07:00"

// output is one run's stdout and stderr: into the log file, to attached
// clients and to `logs -f` followers.
type output struct {
	mu        sync.Mutex
	log       *logFile
	hub       *attachHub
	partial   map[string][]byte
	followers map[chan logRecord]struct{}
	closed    bool
}

func newOutput(log *logFile, hub *attachHub) *output {
	return &output{log: log, hub: hub, partial: map[string][]byte{}, followers: map[chan logRecord]struct{}{}}
}

type streamWriter struct {
	o      *output
	stream string
}

func (w streamWriter) Write(p []byte) (int, error) {
	// The hub's lock is held across the log write too, so a client joining
	// with logs (addAfterLog) sees each byte in exactly one of the two.
	w.o.hub.mu.Lock()
	defer w.o.hub.mu.Unlock()
	w.o.hub.writeLocked(w.stream, p)
	w.o.mu.Lock()
	defer w.o.mu.Unlock()
	if w.o.closed {
		return len(p), nil
	}
	buf := append(w.o.partial[w.stream], p...)
	now := time.Now().UTC()
	for {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			break
		}
		w.o.recordLocked(logRecord{Log: string(buf[:i+1]), Stream: w.stream, Time: now})
		buf = buf[i+1:]
	}
	// dockerd's copier cuts lines at 16 KiB.
	for len(buf) >= 16<<10 {
		w.o.recordLocked(logRecord{Log: string(buf[:16<<10]), Stream: w.stream, Time: now})
		buf = buf[16<<10:]
	}
	w.o.partial[w.stream] = append([]byte(nil), buf...)
	return len(p), nil
}

func (o *output) writer(stream string) io.Writer { return streamWriter{o: o, stream: stream} }

// snapshot is the log as written so far.
func (o *output) snapshot() *logSnapshot {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return snapshotLog(o.log.path, -1)
	}
	return snapshotLog(o.log.path, o.log.size)
}

func (o *output) recordLocked(r logRecord) {
	b, err := json.Marshal(r)
	if err != nil {
		return
	}
	o.log.write(append(b, '\n'))
	for ch := range o.followers {
		select {
		case ch <- r:
		default:
			// A follower too slow for the output loses it rather than
			// stalling the container.
		}
	}
}

// follow registers a follower; records written from now on (the snapshot
// holds everything before) go to the channel until the run ends.
func (o *output) follow() (ch chan logRecord, snap *logSnapshot, cancel func()) {
	o.mu.Lock()
	defer o.mu.Unlock()
	ch = make(chan logRecord, 1024)
	snap = snapshotLog(o.log.path, o.log.size)
	if o.closed {
		close(ch)
		return ch, snap, func() {}
	}
	o.followers[ch] = struct{}{}
	return ch, snap, func() {
		o.mu.Lock()
		defer o.mu.Unlock()
		if _, ok := o.followers[ch]; ok {
			delete(o.followers, ch)
			close(ch)
		}
	}
}

// close flushes partial lines (without a newline, as dockerd's partial
// messages), closes the log and ends followers and attachments.
func (o *output) close() {
	o.mu.Lock()
	if !o.closed {
		now := time.Now().UTC()
		for _, s := range []string{"stdout", "stderr"} {
			if p := o.partial[s]; len(p) > 0 {
				o.recordLocked(logRecord{Log: string(p), Stream: s, Time: now})
			}
		}
		o.closed = true
		o.log.close()
		for ch := range o.followers {
			close(ch)
		}
		o.followers = map[chan logRecord]struct{}{}
	}
	o.mu.Unlock()
	o.hub.endAll()
}

func parseLogTime(v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	s, n, err := timetypes.ParseTimestamps(v, 0)
	if err != nil {
		return time.Time{}, api.InvalidParameterError(err)
	}
	return time.Unix(s, n), nil
}

// Logs writes c's log as `docker logs` asks: records from the file,
// then, with Follow, the run's new ones until it ends.
func (c *Container) Logs(ctx context.Context, cfg api.LogsConfig) error {
	since, err := parseLogTime(cfg.Since)
	if err != nil {
		return err
	}
	until, err := parseLogTime(cfg.Until)
	if err != nil {
		return err
	}
	tail := -1
	if cfg.Tail != "" && cfg.Tail != "all" {
		n, err := strconv.Atoi(cfg.Tail)
		if err == nil && n >= 0 {
			tail = n
		}
	}
	c.mu.Lock()
	tty := c.Meta.Config.Tty
	out := c.out
	path := c.LogPath()
	logType := c.HostConfig.LogConfig.Type
	c.mu.Unlock()
	if logType == "none" {
		return api.InvalidParameterError(errors.New("configured logging driver does not support reading"))
	}

	var live chan logRecord
	var snap *logSnapshot
	switch {
	case cfg.Follow && out != nil:
		var cancel func()
		live, snap, cancel = out.follow()
		defer cancel()
	case out != nil:
		snap = out.snapshot()
	default:
		snap = snapshotLog(path, -1)
	}
	stdout, stderr := cfg.Start(tty)
	recs, err := snap.records()
	if err != nil {
		return err
	}
	if tail >= 0 && len(recs) > tail {
		recs = recs[len(recs)-tail:]
	}
	emit := func(r logRecord) error {
		if !since.IsZero() && r.Time.Before(since) {
			return nil
		}
		var w io.Writer
		switch {
		case r.Stream == "stdout" && cfg.ShowStdout:
			w = stdout
		case r.Stream == "stderr" && cfg.ShowStderr:
			w = stderr
		default:
			return nil
		}
		line := r.Log
		if cfg.Timestamps {
			line = r.Time.Format(timestampFormat) + " " + line
		}
		_, err := io.WriteString(w, line)
		return err
	}
	for _, r := range recs {
		if !until.IsZero() && r.Time.After(until) {
			return nil
		}
		if err := emit(r); err != nil {
			return err
		}
	}
	if live == nil {
		return nil
	}
	var untilC <-chan time.Time
	if !until.IsZero() {
		t := time.NewTimer(time.Until(until))
		defer t.Stop()
		untilC = t.C
	}
	for {
		select {
		case r, ok := <-live:
			if !ok {
				return nil
			}
			if !until.IsZero() && r.Time.After(until) {
				return nil
			}
			if err := emit(r); err != nil {
				return err
			}
		case <-untilC:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}
