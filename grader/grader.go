package grader

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/client"
	"github.com/labd/labd/labs"
	"github.com/labd/labd/labs/check"
	"github.com/labd/labd/sandbox"
)

// State is where a check stands.
type State string

const (
	StatePending State = "pending" // not evaluated yet
	StatePassed  State = "passed"
	StateFailed  State = "failed"
	StateError   State = "error" // could not check; Message says why
)

// CheckResult is one check's outcome.
type CheckResult struct {
	ID      string `json:"id"`
	Kind    string `json:"kind"`
	Title   string `json:"title"`
	Step    int    `json:"step"`
	State   State  `json:"state"`
	Message string `json:"message,omitempty"` // learner-facing: why it failed, what to do
	Hint    string `json:"hint,omitempty"`    // the author's hint, shown when not passed
	// PassedAt is when the check first passed (sticky checks keep it).
	PassedAt *time.Time `json:"passed_at,omitempty"`
	// Regressed: the check passed earlier in this sandbox (sticky: false)
	// and no longer does. Only the live grader sets it; the page shows
	// such a check as "not yet" without waiting for the Check button.
	Regressed bool `json:"regressed,omitempty"`
	Sticky    bool `json:"-"`
	// Points are what the check is worth (labs.Check.Points).
	Points int `json:"points"`
}

// StepResult is one step's checks; State is passed when every check passed,
// failed when any failed, error when any could not be checked (and none
// failed), pending otherwise.
type StepResult struct {
	Index  int           `json:"index"`
	ID     string        `json:"id"`
	Title  string        `json:"title"`
	State  State         `json:"state"`
	Checks []CheckResult `json:"checks"`
}

// LabResult is a whole lab's state.
type LabResult struct {
	Lab    string       `json:"lab"`
	Time   time.Time    `json:"time"`
	Steps  []StepResult `json:"steps"`
	Passed int          `json:"passed"` // checks passed
	Total  int          `json:"total"`
	// Score is the points of the passed checks, of MaxScore in all.
	Score    int `json:"score"`
	MaxScore int `json:"max_score"`
}

// Execer runs a command in the learner's sandbox (sandbox.Sandbox has it).
// Script checks prefer the sandbox's CheckRunner and http checks its
// PortDialer when it has them (labd's engine sandboxes do), so neither
// runs a program the learner could have replaced.
type Execer interface {
	Exec(ctx context.Context, e sandbox.ExecSpec) (int, error)
}

// Env is what the grader may look at for one sandbox.
type Env struct {
	// Docker talks to the sandbox's engine; nil when there is none. For
	// labd's engine, build it with NewClient on the sandbox's grader socket
	// (enginebox.GraderSocketName), whose calls the engine never records as
	// the learner's: on the learner's socket, every inspect of the grader
	// would count as the learner's command.
	Docker *client.Client
	// Workspace is the host path of the learner's files.
	Workspace string
	// Sandbox runs script and http checks; nil when no sandbox is live.
	Sandbox Execer
	// User is the learner's registry user name for {{user}} in push
	// checks; empty matches any user.
	User string
	// NoScripts skips script checks (reported pending), for benchmarks.
	NoScripts bool
	// Answers gives the learner's latest answer to a question check (by
	// check ID); nil: no answers, every question unanswered.
	Answers func(check string) (answer []string, ok bool)
}

// NewClient returns a Docker client for the engine at socket (a path or a
// unix:// URL): for labd's engine, the sandbox's grader socket.
func NewClient(socket string) (*client.Client, error) {
	host := socket
	if !strings.Contains(host, "://") {
		host = "unix://" + host
	}
	c, err := client.NewClientWithOpts(
		client.WithHost(host),
		client.WithVersion("1.41"), // dockerd 20.10 and labd both serve it; skips negotiation
	)
	if err != nil {
		return nil, fmt.Errorf("engine client for %s: %w", socket, err)
	}
	return c, nil
}

// errCannot marks a check that could not be evaluated.
type errCannot struct{ reason string }

func (e errCannot) Error() string { return "could not check: " + e.reason }

func cannot(format string, a ...any) error { return errCannot{fmt.Sprintf(format, a...)} }

// outcome is what a check function returns: nil error and ok for a pass,
// a learner-facing message for a fail, an error for "could not check".
type outcome struct {
	ok  bool
	msg string
}

func pass() (outcome, error) { return outcome{ok: true}, nil }
func fail(format string, a ...any) (outcome, error) {
	return outcome{msg: fmt.Sprintf(format, a...)}, nil
}
func failed(err error) (outcome, error) { return outcome{}, err }

// run evaluates a check by its kind's type; ok is false for a Spec the
// grader has no check for (a kind added to package check alone).
func run(ctx context.Context, p *probe, s check.Spec) (o outcome, ok bool, err error) {
	switch s := s.(type) {
	case *check.File:
		o, err = checkFile(ctx, p, s)
	case *check.Dockerfile:
		o, err = checkDockerfile(ctx, p, s)
	case *check.Image:
		o, err = checkImage(ctx, p, s)
	case *check.Build:
		o, err = checkBuild(ctx, p, s)
	case *check.Container:
		o, err = checkContainer(ctx, p, s)
	case *check.HTTP:
		o, err = checkHTTP(ctx, p, s)
	case *check.Push:
		o, err = checkPush(ctx, p, s)
	case *check.Command:
		o, err = checkCommand(ctx, p, s)
	case *check.Clean:
		o, err = checkClean(ctx, p, s)
	case *check.Volume:
		o, err = checkVolume(ctx, p, s)
	case *check.Script:
		o, err = checkScript(ctx, p, s)
	default:
		return outcome{}, false, nil
	}
	return o, true, err
}

// Grade evaluates every check of lab once.
func Grade(ctx context.Context, env *Env, lab *labs.Lab) LabResult {
	p := newProbe(env)
	res := LabResult{Lab: lab.ID, Time: time.Now()}
	for _, st := range lab.Steps {
		sr := StepResult{Index: st.Index, ID: st.ID, Title: st.Title}
		for _, c := range st.Checks {
			sr.Checks = append(sr.Checks, p.check(ctx, st.Index, c))
		}
		res.Steps = append(res.Steps, sr)
	}
	res.finish()
	return res
}

// Check evaluates one check.
func Check(ctx context.Context, env *Env, step int, c labs.Check) CheckResult {
	return newProbe(env).check(ctx, step, c)
}

// finish sets step states and the counters.
func (r *LabResult) finish() {
	r.Passed, r.Total, r.Score, r.MaxScore = 0, 0, 0, 0
	for i := range r.Steps {
		st := &r.Steps[i]
		st.State = stepState(st.Checks)
		for _, c := range st.Checks {
			r.Total++
			r.MaxScore += c.Points
			if c.State == StatePassed {
				r.Passed++
				r.Score += c.Points
			}
		}
	}
}

func stepState(cs []CheckResult) State {
	if len(cs) == 0 {
		return StatePending
	}
	all, anyFail, anyErr := true, false, false
	for _, c := range cs {
		switch c.State {
		case StatePassed:
			continue
		case StateFailed:
			anyFail = true
		case StateError:
			anyErr = true
		}
		all = false
	}
	switch {
	case all:
		return StatePassed
	case anyFail:
		return StateFailed
	case anyErr:
		return StateError
	}
	return StatePending
}

func (p *probe) check(ctx context.Context, step int, c labs.Check) CheckResult {
	r := CheckResult{ID: c.ID, Kind: c.Kind, Title: c.Title, Step: step, Sticky: c.Sticky, Points: c.Points}
	if _, script := c.Spec.(*check.Script); script && p.env.NoScripts {
		r.State = StatePending
		return r
	}
	if q, ok := c.Spec.(*check.Question); ok {
		// The only check the learner answers in the page: by its ID.
		var answer []string
		answered := false
		if p.env.Answers != nil {
			answer, answered = p.env.Answers(c.ID)
		}
		switch {
		case !answered:
			r.State, r.Message = StateFailed, "Answer the question in this step"
		case q.Right(answer):
			r.State = StatePassed
			now := time.Now()
			r.PassedAt = &now
		default:
			r.State, r.Message = StateFailed, "Not quite: read the step again and answer once more"
		}
		if r.State != StatePassed {
			r.Hint = c.Hint
		}
		return r
	}
	o, ok, err := safeRun(ctx, p, c.Spec)
	switch {
	case !ok:
		r.State, r.Message = StateError, "could not check: unknown check kind "+fmt.Sprintf("%q", c.Kind)
	case err != nil:
		r.State = StateError
		var ec errCannot
		if errors.As(err, &ec) {
			r.Message = ec.Error()
		} else {
			r.Message = "could not check: " + err.Error()
		}
	case o.ok:
		r.State = StatePassed
		now := time.Now()
		r.PassedAt = &now
	default:
		r.State, r.Message = StateFailed, o.msg
	}
	if r.State != StatePassed {
		r.Hint = c.Hint
	}
	return r
}

// safeRun turns a panic in a check into "could not check", so a grader bug
// never shows as passed nor takes labd down.
func safeRun(ctx context.Context, p *probe, s check.Spec) (o outcome, ok bool, err error) {
	defer func() {
		if v := recover(); v != nil {
			o, ok, err = outcome{}, true, cannot("internal error: %v", v)
		}
	}()
	return run(ctx, p, s)
}

// probe caches what one grading pass reads from the engine, so a lab with
// ten engine checks lists containers once.
type probe struct {
	env *Env

	mu       sync.Mutex
	recs     *Records
	recsErr  error
	recsDone bool
}

func newProbe(env *Env) *probe { return &probe{env: env} }

func (p *probe) docker() (*client.Client, error) {
	if p.env.Docker == nil {
		return nil, cannot("the sandbox has no engine")
	}
	return p.env.Docker, nil
}

// records returns labd's engine records, or a "could not check" error on an
// engine without them (a real dockerd).
func (p *probe) records(ctx context.Context) (*Records, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.recsDone {
		p.recs, p.recsErr = fetchRecords(ctx, p.env.Docker, time.Time{})
		p.recsDone = true
	}
	return p.recs, p.recsErr
}

// engineErr turns an engine error into "could not check".
func engineErr(err error) error {
	if client.IsErrConnectionFailed(err) {
		return cannot("the engine is not running (%v)", err)
	}
	return cannot("the engine answered: %v", err)
}

var errNoRecords = cannot("needs labd's engine (this engine keeps no build, push or command records)")

func isNotFoundStatus(code int) bool { return code == http.StatusNotFound }
