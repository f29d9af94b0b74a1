// Package labtest tests labs like code (labd test): each lab runs in a fresh
// sandbox, where first no check may pass (no false passes), then the lab's
// solution.sh runs section by section ("# step: <title>" comments): each
// step's checks must fail just before its section and pass right after it.
// Then each cheats/NAME.sh runs in a fresh sandbox after the solution of
// the steps before the one it names ("# expect-fail: <title>"), and that
// step's checks must not all pass.
package labtest

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/labd/labd/grader"
	"github.com/labd/labd/labs"
	"github.com/labd/labd/labs/check"
	"github.com/labd/labd/sandbox"
)

// Sandboxes creates a fresh sandbox per lab.
type Sandboxes interface {
	GetOrCreate(ctx context.Context, id, owner string) (sandbox.Sandbox, error)
	Destroy(ctx context.Context, id string, r sandbox.Reason) error
}

// Options configure Run.
type Options struct {
	Sandboxes Sandboxes
	// Socket returns the grader's socket to a sandbox's engine ("" when
	// none): for labd's engine enginebox.GraderSocketName, not the learner's.
	Socket func(sb sandbox.Sandbox) string
	// StepTimeout bounds one solution section (default 5 min).
	StepTimeout time.Duration
	// Settle is how long a step's checks may take to pass after its
	// section (an app starting in a container); default 20 s.
	Settle time.Duration
	Log    io.Writer // progress lines; nil discards
	// User and Password are a classroom registry account: solution.sh
	// gets them as LABD_USER and LABD_PASSWORD (what a learner reads on
	// the lab page), and push checks match {{user}} against User.
	User, Password string
}

// Case is one assertion of the run.
type Case struct {
	Lab   string
	Step  string // "" for lab-level cases
	Check string // check ID, "cheats/NAME.sh" for a cheat, "" for a step's solution run
	// Phase: "empty" and "before" (the check must fail: on the empty
	// sandbox, before the step's section), "solution" (the section
	// runs), "after" (the check must pass), "cheat" (the cheat must not
	// pass its step), "setup".
	Phase   string
	OK      bool
	Message string
	// Time is what the case took: the section's run, the checks' grading
	// (until they passed, for "after"), a cheat's whole run.
	Time time.Duration
}

// Report is a whole run.
type Report struct {
	Cases []Case
}

// Failed counts failed cases.
func (r *Report) Failed() int {
	n := 0
	for _, c := range r.Cases {
		if !c.OK {
			n++
		}
	}
	return n
}

// Run tests every lab (in order).
func Run(ctx context.Context, ls []*labs.Lab, o Options) *Report {
	if o.StepTimeout <= 0 {
		o.StepTimeout = 5 * time.Minute
	}
	if o.Settle <= 0 {
		o.Settle = 20 * time.Second
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	rep := &Report{}
	for _, lab := range ls {
		rep.Cases = append(rep.Cases, runLab(ctx, lab, o)...)
	}
	return rep
}

func runLab(ctx context.Context, lab *labs.Lab, o Options) []Case {
	var out []Case
	labCase := func(msg string) []Case {
		return append(out, Case{Lab: lab.ID, Phase: "setup", Message: msg})
	}
	raw, err := os.ReadFile(filepath.Join(lab.Dir, labs.SolutionFile))
	if err != nil {
		return labCase(fmt.Sprintf("read %s: %v", labs.SolutionFile, err))
	}
	cheats, err := labs.Cheats(lab.Dir)
	if err != nil {
		return labCase(err.Error())
	}
	pre, sections := labs.ParseSolution(lab.Expand(raw))
	byTitle := map[string]labs.Section{}
	for _, s := range sections {
		if _, dup := byTitle[s.Title]; !dup {
			byTitle[s.Title] = s
		}
	}
	r := &labRun{lab: lab, o: o, pre: pre, byTitle: byTitle, answers: map[*grader.Env]map[string][]string{}}

	fmt.Fprintf(o.Log, "== %s: starting a fresh sandbox\n", lab.ID)
	sb, env, done, err := r.fresh(ctx, sandboxID(lab.ID, ""))
	if err != nil {
		return labCase(err.Error())
	}
	defer done()

	// No false passes: nothing is done yet, so no step may be done. A
	// check that passes beside one of its step's that fails is fine (a
	// clean check paired with one that needs the work): the learner's
	// step does not turn green.
	t0 := time.Now()
	empty := grader.Grade(ctx, env, lab)
	took := time.Since(t0)
	for _, st := range empty.Steps {
		out = append(out, notDone(lab.ID, st.Title, "empty", "on an empty sandbox", st.Checks, took)...)
	}

	for i, st := range lab.Steps {
		sec, ok := byTitle[st.Title]
		if !ok {
			if len(st.Checks) > 0 {
				out = append(out, Case{Lab: lab.ID, Step: st.Title, Phase: "solution", Message: "solution.sh has no section \"# step: " + st.Title + "\""})
			}
			continue
		}
		// Each step's checks must test its own work: after the earlier
		// steps' sections they still fail. Before the first step this
		// is the empty sandbox, graded above.
		if i > 0 {
			t0 := time.Now()
			res := gradeStep(ctx, env, st)
			out = append(out, notDone(lab.ID, st.Title, "before", "before this step's section of solution.sh ran (the earlier steps' work passes it)", res, time.Since(t0))...)
		}
		fmt.Fprintf(o.Log, "-- %s: %s\n", lab.ID, st.Title)
		start := time.Now()
		code, output, err := r.exec(ctx, sb, r.pre+sec.Body)
		ran := time.Since(start)
		if err != nil || code != 0 {
			msg := fmt.Sprintf("solution.sh section %q (line %d) failed: exit %d %v: %s", st.Title, sec.Line, code, errString(err), tail(output, 400))
			out = append(out, Case{Lab: lab.ID, Step: st.Title, Phase: "solution", Message: msg, Time: ran})
			continue
		}
		out = append(out, Case{Lab: lab.ID, Step: st.Title, Phase: "solution", OK: true, Time: ran})
		r.answer(env, st)
		start = time.Now()
		results := settle(ctx, env, st, o.Settle)
		took := time.Since(start)
		fmt.Fprintf(o.Log, "-- %s: %s: section %s, checks %s\n", lab.ID, st.Title, ran.Round(time.Millisecond), took.Round(time.Millisecond))
		for _, c := range results {
			out = append(out, Case{Lab: lab.ID, Step: st.Title, Check: c.ID, Phase: "after", OK: c.State == grader.StatePassed, Message: c.Message, Time: took})
		}
	}
	done()

	for i, c := range cheats {
		out = append(out, r.cheat(ctx, i, c))
	}
	return out
}

// labRun is what one lab's sandboxes share.
type labRun struct {
	lab     *labs.Lab
	o       Options
	pre     string
	byTitle map[string]labs.Section
	answers map[*grader.Env]map[string][]string // each sandbox's answers to questions
}

// answer answers st's questions in env's sandbox as the author says is
// right (their correct choices or example answer): the solution of a
// step with a question is its section plus the answer.
func (r *labRun) answer(env *grader.Env, st labs.Step) {
	for _, c := range st.Checks {
		if q, ok := c.Spec.(*check.Question); ok {
			r.answers[env][c.ID] = q.ExampleAnswer()
		}
	}
}

// sandboxID names a lab's sandbox ("test-<lab>", "test-c2-<lab>" for
// its third cheat) within the manager's 40 characters.
func sandboxID(lab, suffix string) string {
	sid := "test-" + suffix + lab
	if len(sid) > 40 {
		sid = sid[:40]
	}
	return sid
}

// fresh starts a sandbox and its grader environment; done destroys it
// (once, however often it is called).
func (r *labRun) fresh(ctx context.Context, sid string) (sandbox.Sandbox, *grader.Env, func(), error) {
	sb, err := r.o.Sandboxes.GetOrCreate(ctx, sid, "labd-test")
	if err != nil {
		return nil, nil, nil, fmt.Errorf("start sandbox: %w", err)
	}
	var closers []func()
	done := func() {
		for _, c := range closers {
			c()
		}
		closers = nil
	}
	closers = append(closers, func() { r.o.Sandboxes.Destroy(context.WithoutCancel(ctx), sid, sandbox.ReasonAdmin) })
	// The learner's workspace starts with the lab's starter files; so does
	// the solution's.
	if r.lab.Starter != "" {
		if err := sandbox.Unpack(ctx, sb, r.lab.WriteStarter); err != nil {
			done()
			return nil, nil, nil, fmt.Errorf("starter files: %w", err)
		}
	}
	env := &grader.Env{Workspace: sb.Workspace(), Sandbox: sb, User: r.o.User}
	ans := map[string][]string{}
	env.Answers = func(id string) ([]string, bool) { a, ok := ans[id]; return a, ok }
	r.answers[env] = ans
	if r.o.Socket != nil {
		if sock := r.o.Socket(sb); sock != "" {
			c, err := grader.NewClient(sock)
			if err != nil {
				done()
				return nil, nil, nil, fmt.Errorf("grader client: %w", err)
			}
			closers = append([]func(){func() { c.Close() }}, closers...)
			env.Docker = c
		}
	}
	return sb, env, done, nil
}

// exec runs a script with bash in the sandbox's shell, as the learner's
// terminal would, within the step timeout.
func (r *labRun) exec(ctx context.Context, sb sandbox.Sandbox, script string) (int, string, error) {
	sctx, cancel := context.WithTimeout(ctx, r.o.StepTimeout)
	defer cancel()
	var buf bytes.Buffer
	// One writer for both streams: a sandbox that copies them apart
	// (os/exec does for two writers) would write the buffer at once.
	out := io.MultiWriter(&buf, r.o.Log)
	code, err := sb.Exec(sctx, sandbox.ExecSpec{
		Cmd:    []string{"bash", "-c", script},
		Env:    []string{"LABD_USER=" + r.o.User, "LABD_PASSWORD=" + r.o.Password},
		Stdout: out, Stderr: out,
	})
	return code, buf.String(), err
}

// cheat runs cheats/NAME.sh in a fresh sandbox after the solution's
// sections of the steps before its target, and passes when the target
// step's checks do not all pass within the time a solution gets.
func (r *labRun) cheat(ctx context.Context, n int, c labs.Cheat) Case {
	cs := Case{Lab: r.lab.ID, Step: c.Step, Check: "cheats/" + c.Name, Phase: "cheat"}
	target := -1
	for i, st := range r.lab.Steps {
		if st.Title == c.Step {
			target = i
		}
	}
	switch {
	case c.Line == 0:
		cs.Message = "cheats/" + c.Name + " has no \"# expect-fail: <step title>\" line"
		return cs
	case target < 0:
		cs.Message = fmt.Sprintf("cheats/%s expects step %q to fail, and the lab has no such step", c.Name, c.Step)
		return cs
	case len(r.lab.Steps[target].Checks) == 0:
		cs.Message = fmt.Sprintf("cheats/%s: step %q has no checks to catch it", c.Name, c.Step)
		return cs
	}
	fmt.Fprintf(r.o.Log, "== %s: cheat %s against %q\n", r.lab.ID, c.Name, c.Step)
	start := time.Now()
	sb, env, done, err := r.fresh(ctx, sandboxID(r.lab.ID, fmt.Sprintf("c%d-", n)))
	if err != nil {
		cs.Message = err.Error()
		return cs
	}
	defer done()
	for _, st := range r.lab.Steps[:target] {
		sec, ok := r.byTitle[st.Title]
		if !ok {
			continue
		}
		if code, output, err := r.exec(ctx, sb, r.pre+sec.Body); err != nil || code != 0 {
			cs.Message = fmt.Sprintf("before cheats/%s: solution.sh section %q (line %d) failed: exit %d %v: %s", c.Name, st.Title, sec.Line, code, errString(err), tail(output, 400))
			cs.Time = time.Since(start)
			return cs
		}
		r.answer(env, st)
	}
	// The cheat's exit status does not matter: a cheat that fails half
	// way and still passes the checks is no less a hole in them.
	if _, _, err := r.exec(ctx, sb, string(r.lab.Expand([]byte(c.Script)))); err != nil {
		cs.Message = fmt.Sprintf("run cheats/%s: %v", c.Name, err)
		cs.Time = time.Since(start)
		return cs
	}
	res := settle(ctx, env, r.lab.Steps[target], r.o.Settle)
	cs.Time = time.Since(start)
	var caught []string
	for _, c := range res {
		if c.State != grader.StatePassed {
			caught = append(caught, c.ID)
		}
	}
	if len(caught) == 0 {
		cs.Message = fmt.Sprintf("cheats/%s passes every check of step %q: the checks do not catch it", c.Name, c.Step)
		return cs
	}
	cs.OK = true
	cs.Message = "caught by " + strings.Join(caught, ", ")
	return cs
}

// gradeStep grades a step's checks once.
func gradeStep(ctx context.Context, env *grader.Env, st labs.Step) []grader.CheckResult {
	var res []grader.CheckResult
	for _, c := range st.Checks {
		res = append(res, grader.Check(ctx, env, st.Index, c))
	}
	return res
}

// settle grades a step's checks until they all pass or d has passed.
func settle(ctx context.Context, env *grader.Env, st labs.Step, d time.Duration) []grader.CheckResult {
	deadline := time.Now().Add(d)
	for {
		res := gradeStep(ctx, env, st)
		all := true
		for _, r := range res {
			all = all && r.State == grader.StatePassed
		}
		if all || time.Now().After(deadline) || ctx.Err() != nil {
			return res
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return "(" + err.Error() + ")"
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// WriteTable prints the report as a table.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "LAB\tSTEP\tCHECK\tPHASE\tRESULT\tTIME\tMESSAGE")
	for _, c := range r.Cases {
		res := "ok"
		if !c.OK {
			res = "FAIL"
		}
		check := c.Check
		if check == "" {
			check = "-"
		}
		step := c.Step
		if step == "" {
			step = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.2fs\t%s\n", c.Lab, step, check, c.Phase, res, c.Time.Seconds(), oneLine(c.Message))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d cases, %d failed\n", len(r.Cases), r.Failed())
	return err
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// JUnit XML, as CI systems read it.
type junitSuites struct {
	XMLName xml.Name     `xml:"testsuites"`
	Suites  []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Time     float64     `xml:"time,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      float64       `xml:"time,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Text    string `xml:",chardata"`
}

// WriteJUnit writes one test suite per lab.
func (r *Report) WriteJUnit(w io.Writer) error {
	var s junitSuites
	idx := map[string]int{}
	for _, c := range r.Cases {
		i, ok := idx[c.Lab]
		if !ok {
			i = len(s.Suites)
			idx[c.Lab] = i
			s.Suites = append(s.Suites, junitSuite{Name: c.Lab})
		}
		name := c.Phase
		if c.Step != "" {
			name += " / " + c.Step
		}
		if c.Check != "" {
			name += " / " + c.Check
		}
		jc := junitCase{Name: name, Classname: "labd.test." + c.Lab, Time: c.Time.Seconds()}
		if !c.OK {
			jc.Failure = &junitFailure{Message: oneLine(c.Message), Text: c.Message}
			s.Suites[i].Failures++
		}
		s.Suites[i].Tests++
		s.Suites[i].Cases = append(s.Suites[i].Cases, jc)
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(s); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

// notDone makes the cases of a step that must not be done yet (phase
// "empty" or "before"): when every check of the step passes, each is a
// false pass; a check that passes while another of its step fails is
// fine, and says so.
func notDone(lab, step, phase, when string, res []grader.CheckResult, took time.Duration) []Case {
	done := len(res) > 0
	for _, c := range res {
		done = done && c.State == grader.StatePassed
	}
	var out []Case
	for _, c := range res {
		cs := Case{Lab: lab, Step: step, Check: c.ID, Phase: phase, OK: c.State == grader.StateFailed, Time: took}
		switch c.State {
		case grader.StatePassed:
			if done {
				cs.Message = "passes " + when + ", and so does every check of its step: the step is done with no work (a false pass)"
			} else {
				cs.OK = true
				cs.Message = "passes " + when + "; its step does not (another of its checks needs the work)"
			}
		case grader.StateError:
			cs.Message = c.Message
		}
		out = append(out, cs)
	}
	return out
}
