package engine

import (
	"bytes"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/labd/labd/sandbox/engine/api"
	"github.com/labd/labd/sandbox/engine/distribution"
	"github.com/opencontainers/go-digest"
)

// Limits of one engine's records, per kind. Graders look at recent
// history; older entries are dropped first, in memory and on disk
// (records_log.go).
const (
	maxCalls      = 2000
	maxBuilds     = 200
	maxContainers = 500
)

// Records is what GET /labd/v1/records returns: everything this engine
// saw that a grader may ask about, oldest first (docs/engine.md).
type Records struct {
	Engine string    `json:"engine"` // "labd"
	View   string    `json:"view"`
	Now    time.Time `json:"now"`
	// Seq counts the records (calls, builds, container events) this
	// engine added since it started, CallSeq the calls among them: a
	// grader waits with ?after=Seq and re-evaluates command checks when
	// CallSeq grew (docs/engine.md).
	Seq        uint64                  `json:"seq"`
	CallSeq    uint64                  `json:"call_seq"`
	Calls      []api.Call              `json:"calls"`
	Builds     []BuildRecord           `json:"builds"`
	Transfers  []distribution.Transfer `json:"transfers"`
	Containers []ContainerRecord       `json:"containers"`
}

// BuildRecord is one `docker build`.
type BuildRecord struct {
	Time       time.Time `json:"time"`
	End        time.Time `json:"end"`
	Dockerfile string    `json:"dockerfile"`
	Tags       []string  `json:"tags,omitempty"`
	NoCache    bool      `json:"no_cache,omitempty"`
	Target     string    `json:"target,omitempty"` // --target
	// BuildArgs are the --build-arg values given (an argument given
	// without a value, taken from the client's environment, is "").
	BuildArgs map[string]string `json:"build_args,omitempty"`
	// ContextSize is the build context as the client sent it, in bytes:
	// the tar the CLI's "Sending build context" counts, without what
	// .dockerignore leaves out.
	ContextSize int64       `json:"context_size,omitempty"`
	Steps       []BuildStep `json:"steps"`
	ImageID     string      `json:"image_id,omitempty"` // final image; empty when the build failed
	Error       string      `json:"error,omitempty"`
}

// BuildStep is one instruction of a build. FROM steps are included
// (Cached false, ImageID the base image).
type BuildStep struct {
	Step        int    `json:"step"`
	Instruction string `json:"instruction"` // as printed: "RUN pip install flask"
	Cached      bool   `json:"cached"`
	ImageID     string `json:"image_id,omitempty"` // full ID when known, else the short one printed
	CreatedBy   string `json:"created_by,omitempty"`
}

// ContainerRecord is one container lifecycle event.
type ContainerRecord struct {
	Time   time.Time         `json:"time"`
	Action string            `json:"action"`
	ID     string            `json:"id"`
	Name   string            `json:"name,omitempty"`
	Image  string            `json:"image,omitempty"`
	Attrs  map[string]string `json:"attributes,omitempty"`
}

type records struct {
	mu     sync.Mutex
	calls  []api.Call
	builds []BuildRecord
	ctrs   []ContainerRecord
	log    *recordLog // nil: memory only
	// seq and callSeq count the records and calls added since the engine
	// started (not the ones loaded from the log); grew is closed and
	// replaced when seq grows, for long-polling graders.
	seq, callSeq uint64
	grew         chan struct{}
}

var _ api.RecordsBackend = (*Engine)(nil)

// keep drops the oldest entries beyond max, in bulk (a quarter of max at
// a time) so that a full list is not copied on every record; readers see
// last(s, max).
func keep[T any](s []T, max int) []T {
	if len(s) > max+max/4 {
		return append([]T(nil), s[len(s)-max:]...)
	}
	return s
}

// last returns the newest max entries of s.
func last[T any](s []T, max int) []T {
	if len(s) > max {
		return s[len(s)-max:]
	}
	return s
}

// add appends one record of a kind to memory and to the view's log.
func (r *records) add(kind string, v any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	if r.grew != nil {
		close(r.grew)
		r.grew = nil
	}
	switch x := v.(type) {
	case api.Call:
		r.callSeq++
		r.calls = keep(append(r.calls, x), maxCalls)
	case BuildRecord:
		r.builds = keep(append(r.builds, x), maxBuilds)
	case ContainerRecord:
		r.ctrs = keep(append(r.ctrs, x), maxContainers)
	}
	if r.log != nil {
		r.log.append(r, kind, v)
	}
}

// RecordCall implements api.RecordsBackend.
func (e *Engine) RecordCall(c api.Call) { e.rec.add(kindCall, c) }

// recordEvent keeps container lifecycle events (the event bus's history
// is short and lost on restart).
func (e *Engine) recordEvent(m events.Message) {
	if m.Type != events.ContainerEventType {
		return
	}
	c := ContainerRecord{
		Time: time.Unix(0, m.TimeNano), Action: string(m.Action), ID: m.Actor.ID,
		Name: m.Actor.Attributes["name"], Image: m.Actor.Attributes["image"],
	}
	for _, k := range []string{"exitCode", "signal"} {
		if v, ok := m.Actor.Attributes[k]; ok {
			if c.Attrs == nil {
				c.Attrs = map[string]string{}
			}
			c.Attrs[k] = v
		}
	}
	e.rec.add(kindContainer, c)
}

// RecordsSeq implements api.RecordsWaiter.
func (e *Engine) RecordsSeq() (uint64, <-chan struct{}) {
	r := e.rec
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.grew == nil {
		r.grew = make(chan struct{})
	}
	return r.seq, r.grew
}

// Records implements api.RecordsBackend.
func (e *Engine) Records(since time.Time) any { return e.RecordsSince(since) }

// RecordsSince returns the engine's records at or after since.
func (e *Engine) RecordsSince(since time.Time) Records {
	r := e.rec
	out := Records{Engine: "labd", View: e.name, Now: time.Now(), Calls: []api.Call{}, Builds: []BuildRecord{}, Transfers: []distribution.Transfer{}, Containers: []ContainerRecord{}}
	r.mu.Lock()
	out.Seq, out.CallSeq = r.seq, r.callSeq
	for _, c := range last(r.calls, maxCalls) {
		if !c.Time.Before(since) {
			out.Calls = append(out.Calls, c)
		}
	}
	for _, b := range last(r.builds, maxBuilds) {
		if !b.Time.Before(since) {
			b.Steps = append([]BuildStep(nil), b.Steps...)
			out.Builds = append(out.Builds, b)
		}
	}
	for _, c := range last(r.ctrs, maxContainers) {
		if !c.Time.Before(since) {
			out.Containers = append(out.Containers, c)
		}
	}
	r.mu.Unlock()
	if e.shared.dist != nil {
		for _, t := range e.Transfers() {
			if !t.Time.Before(since) {
				out.Transfers = append(out.Transfers, t)
			}
		}
	}
	return out
}

// buildRecorder follows the classic builder's output to record each step:
// "Step 2/5 : RUN pip install flask", " ---> Using cache", " ---> 3f2a...".
type buildRecorder struct {
	w   io.Writer
	mu  sync.Mutex
	buf []byte
	rec BuildRecord
}

var (
	stepLine = regexp.MustCompile(`^Step ([0-9]+)/[0-9]+ : (.*)$`)
	idLine   = regexp.MustCompile(`^ ---> ([0-9a-f]{12,64})$`)
)

func (b *buildRecorder) Write(p []byte) (int, error) {
	b.mu.Lock()
	b.buf = append(b.buf, p...)
	for {
		i := bytes.IndexByte(b.buf, '\n')
		if i < 0 {
			break
		}
		b.line(string(b.buf[:i]))
		b.buf = b.buf[i+1:]
	}
	b.mu.Unlock()
	return b.w.Write(p)
}

func (b *buildRecorder) line(l string) {
	if m := stepLine.FindStringSubmatch(l); m != nil {
		n, _ := strconv.Atoi(m[1])
		b.rec.Steps = append(b.rec.Steps, BuildStep{Step: n, Instruction: m[2]})
		return
	}
	if len(b.rec.Steps) == 0 {
		return
	}
	st := &b.rec.Steps[len(b.rec.Steps)-1]
	if l == " ---> Using cache" {
		st.Cached = true
		return
	}
	if m := idLine.FindStringSubmatch(l); m != nil {
		st.ImageID = m[1]
	}
}

// beginBuild wraps the build's stdout so its steps are recorded.
func (e *Engine) beginBuild(cfg *api.BuildConfig) *buildRecorder {
	br := &buildRecorder{w: cfg.Stdout}
	br.rec.Time = time.Now()
	if o := cfg.Options; o != nil {
		br.rec.Dockerfile = o.Dockerfile
		if br.rec.Dockerfile == "" {
			br.rec.Dockerfile = "Dockerfile"
		}
		for _, t := range o.Tags {
			if t != "" {
				br.rec.Tags = append(br.rec.Tags, familiarRef(normalizeTag(t)))
			}
		}
		br.rec.NoCache = o.NoCache
		br.rec.Target = o.Target
		for k, v := range o.BuildArgs {
			if br.rec.BuildArgs == nil {
				br.rec.BuildArgs = map[string]string{}
			}
			br.rec.BuildArgs[k] = ""
			if v != nil {
				br.rec.BuildArgs[k] = *v
			}
		}
		if f, ok := o.Context.(interface{ Stat() (os.FileInfo, error) }); ok {
			if fi, err := f.Stat(); err == nil {
				br.rec.ContextSize = fi.Size()
			}
		}
	}
	if cfg.Stdout != nil {
		cfg.Stdout = br
	}
	return br
}

// normalizeTag adds ":latest" to a tag without one, as the builder does.
func normalizeTag(t string) string {
	last := t[strings.LastIndex(t, "/")+1:]
	if !strings.Contains(last, ":") && !strings.Contains(last, "@") {
		return t + ":latest"
	}
	return t
}

// endBuild stores the record, resolving short step IDs to full ones by
// walking the final image's parent chain.
func (e *Engine) endBuild(br *buildRecorder, id string, err error) {
	br.mu.Lock()
	rec := br.rec
	rec.Steps = append([]BuildStep(nil), br.rec.Steps...)
	br.mu.Unlock()
	rec.End = time.Now()
	rec.ImageID = id
	if obs := e.shared.observer; obs != nil {
		obs.BuildDone(rec.End.Sub(rec.Time), err != nil)
	}
	if err != nil {
		rec.Error = err.Error()
	}
	if id != "" {
		chain := map[string]string{} // short → full
		created := map[string]string{}
		cur := digest.Digest(id)
		for i := 0; i < 1000 && cur != ""; i++ {
			info, ierr := e.view.Image(cur)
			if ierr != nil {
				break
			}
			full := info.ID.String()
			chain[strings.TrimPrefix(full, "sha256:")[:12]] = full
			if info.Config != nil && len(info.Config.History) > 0 {
				created[full] = info.Config.History[len(info.Config.History)-1].CreatedBy
			}
			cur = info.Parent
		}
		for i := range rec.Steps {
			s := &rec.Steps[i]
			if len(s.ImageID) >= 12 {
				if full, ok := chain[s.ImageID[:12]]; ok {
					s.ImageID = full
					s.CreatedBy = created[full]
				}
			}
		}
	}
	e.rec.add(kindBuild, rec)
}
