// Package labtest tests labs like code (labd test): each lab runs in a fresh
// sandbox, where first no check may pass (no false passes), then the lab's
// solution.sh runs section by section ("# step: <title>" comments) and each
// step's checks must pass right after its section.
package labtest

import (
	"bufio"
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
	"github.com/labd/labd/sandbox"
)

// Section is one "# step: <title>" part of solution.sh.
type Section struct {
	Title string
	Line  int
	Body  string
}

// ParseSolution splits a solution script into its preamble (shebang, set
// -euo pipefail, helpers: everything before the first step) and sections.
func ParseSolution(b []byte) (preamble string, sections []Section) {
	var pre strings.Builder
	var cur *Section
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if t, ok := strings.CutPrefix(strings.TrimSpace(line), "# step:"); ok {
			sections = append(sections, Section{Title: strings.TrimSpace(t), Line: n})
			cur = &sections[len(sections)-1]
			continue
		}
		if cur == nil {
			if !strings.HasPrefix(line, "#!") {
				pre.WriteString(line + "\n")
			}
			continue
		}
		cur.Body += line + "\n"
	}
	return pre.String(), sections
}

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
	Lab     string
	Step    string // "" for lab-level cases
	Check   string // check ID, "" for a step's solution run
	Phase   string // "empty" (must not pass) or "solution" (must pass)
	OK      bool
	Message string
	Time    time.Duration
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
	raw, err := os.ReadFile(filepath.Join(lab.Dir, "solution.sh"))
	if err != nil {
		return labCase(fmt.Sprintf("read solution.sh: %v", err))
	}
	pre, sections := ParseSolution(raw)
	byTitle := map[string]Section{}
	for _, s := range sections {
		byTitle[s.Title] = s
	}
	for _, s := range sections {
		found := false
		for _, st := range lab.Steps {
			found = found || st.Title == s.Title
		}
		if !found {
			out = append(out, Case{Lab: lab.ID, Step: s.Title, Phase: "solution", Message: fmt.Sprintf("solution.sh:%d: no step is titled %q", s.Line, s.Title)})
		}
	}
	sid := "test-" + lab.ID
	if len(sid) > 40 {
		sid = sid[:40]
	}
	fmt.Fprintf(o.Log, "== %s: starting a fresh sandbox\n", lab.ID)
	sb, err := o.Sandboxes.GetOrCreate(ctx, sid, "labd-test")
	if err != nil {
		return labCase(fmt.Sprintf("start sandbox: %v", err))
	}
	defer o.Sandboxes.Destroy(context.WithoutCancel(ctx), sid, sandbox.ReasonAdmin)
	env := &grader.Env{Workspace: sb.Workspace(), Sandbox: sb, User: o.User}
	if o.Socket != nil {
		if sock := o.Socket(sb); sock != "" {
			c, err := grader.NewClient(sock)
			if err != nil {
				return labCase(err.Error())
			}
			defer c.Close()
			env.Docker = c
		}
	}

	// No false passes: nothing is done yet, so nothing may pass.
	t0 := time.Now()
	empty := grader.Grade(ctx, env, lab)
	for _, st := range empty.Steps {
		for _, c := range st.Checks {
			cs := Case{Lab: lab.ID, Step: st.Title, Check: c.ID, Phase: "empty", OK: c.State == grader.StateFailed, Time: time.Since(t0)}
			switch c.State {
			case grader.StatePassed:
				cs.Message = "passes on an empty sandbox (a false pass)"
			case grader.StateError:
				cs.Message = c.Message
			}
			out = append(out, cs)
		}
	}

	for _, st := range lab.Steps {
		sec, ok := byTitle[st.Title]
		if !ok {
			if len(st.Checks) > 0 {
				out = append(out, Case{Lab: lab.ID, Step: st.Title, Phase: "solution", Message: "solution.sh has no section \"# step: " + st.Title + "\""})
			}
			continue
		}
		fmt.Fprintf(o.Log, "-- %s: %s\n", lab.ID, st.Title)
		start := time.Now()
		sctx, cancel := context.WithTimeout(ctx, o.StepTimeout)
		var buf bytes.Buffer
		code, err := sb.Exec(sctx, sandbox.ExecSpec{
			Cmd:    []string{"bash", "-c", pre + sec.Body},
			Env:    []string{"LABD_USER=" + o.User, "LABD_PASSWORD=" + o.Password},
			Stdout: io.MultiWriter(&buf, o.Log), Stderr: io.MultiWriter(&buf, o.Log),
		})
		cancel()
		if err != nil || code != 0 {
			msg := fmt.Sprintf("solution.sh section %q (line %d) failed: exit %d %v: %s", st.Title, sec.Line, code, errString(err), tail(buf.String(), 400))
			out = append(out, Case{Lab: lab.ID, Step: st.Title, Phase: "solution", Message: msg, Time: time.Since(start)})
			continue
		}
		out = append(out, Case{Lab: lab.ID, Step: st.Title, Phase: "solution", OK: true, Time: time.Since(start)})
		results := settle(ctx, env, st, o.Settle)
		for _, c := range results {
			out = append(out, Case{Lab: lab.ID, Step: st.Title, Check: c.ID, Phase: "after", OK: c.State == grader.StatePassed, Message: c.Message, Time: time.Since(start)})
		}
	}
	return out
}

// settle grades a step's checks until they all pass or d has passed.
func settle(ctx context.Context, env *grader.Env, st labs.Step, d time.Duration) []grader.CheckResult {
	deadline := time.Now().Add(d)
	for {
		var res []grader.CheckResult
		all := true
		for _, c := range st.Checks {
			r := grader.Check(ctx, env, st.Index, c)
			all = all && r.State == grader.StatePassed
			res = append(res, r)
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
	fmt.Fprintln(tw, "LAB\tSTEP\tCHECK\tPHASE\tRESULT\tMESSAGE")
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
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.Lab, step, check, c.Phase, res, oneLine(c.Message))
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
