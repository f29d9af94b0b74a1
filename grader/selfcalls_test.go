package grader_test

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labd/labd/grader"
	"github.com/labd/labd/labs"
	"github.com/labd/labd/sandbox/engine/enginetest"
	"github.com/labd/labd/sandbox/enginebox"
)

// dockerCLIs are the CLIs a script check may meet: 20.10 is the one in
// labd's sandbox image (Debian's docker.io), 28 a current one.
var dockerCLIs = []string{enginetest.DockerCLI20, enginetest.DockerCLI28}

func needCLIs(t *testing.T) {
	t.Helper()
	for _, cli := range dockerCLIs {
		if _, err := os.Stat(cli); err != nil {
			t.Fatalf("docker CLI %s is missing (deploy/deps.sh test): %v", cli, err)
		}
	}
}

// TestScriptCallsAreNotTheLearners (adversarial): a script check that runs
// `docker image history` must not make the learner's command check for
// history pass, with either CLI; the learner's own history call then does.
func TestScriptCallsAreNotTheLearners(t *testing.T) {
	needCLIs(t)
	b := newBox(t)
	history := "kind: command\ncommand: history"
	b.want(history, grader.StateFailed, "You have not run docker image history")
	// The learner's docker config would send the CLI elsewhere (and once
	// marked calls as the grader's): a script never reads it.
	b.sh(`mkdir -p ~/.docker && echo '{"currentContext":"elsewhere","HttpHeaders":{"X-Labd-Grader":"1"}}' > ~/.docker/config.json`)
	for _, cli := range dockerCLIs {
		// The script must really reach the engine: it passes only if
		// history answered.
		script := "kind: script\nrun: '" + cli + " image history busybox | grep -q IMAGE'"
		b.want(script, grader.StatePassed, "")
		b.want(history, grader.StateFailed, "You have not run docker image history")
	}
	b.sh("rm -r ~/.docker")
	for _, c := range records(t, b).Calls {
		if strings.Contains(c.Path, "history") {
			t.Fatalf("a script check's call was recorded as the learner's: %+v", c)
		}
	}
	// The grader's config is gone after the run: nothing left in /tmp.
	if out := b.sh("ls -a /tmp"); strings.Contains(out, ".labd-grader-") {
		t.Fatalf("script check left its docker config behind:\n%s", out)
	}
	b.sh(enginetest.DockerCLI20 + " image history busybox")
	b.want(history, grader.StatePassed, "")
}

// TestForgedGraderMarkerIsTheLearners (adversarial): a learner whose
// docker config adds the header that once marked the grader's calls still
// has their calls recorded (a command check passes), and cannot hide
// them.
func TestForgedGraderMarkerIsTheLearners(t *testing.T) {
	needCLIs(t)
	b := newBox(t)
	history := "kind: command\ncommand: history"
	b.want(history, grader.StateFailed, "You have not run docker image history")
	b.sh(`mkdir -p /tmp/forged && echo '{"HttpHeaders":{"X-Labd-Grader":"1"}}' > /tmp/forged/config.json && DOCKER_CONFIG=/tmp/forged ` + enginetest.DockerCLI20 + " image history busybox >/dev/null")
	b.want(history, grader.StatePassed, "")
}

func sockOf(b *box) string {
	return filepath.Join(filepath.Dir(b.sb.Workspace()), enginebox.GraderSocketName)
}

// liveLab is a one-step lab with the given checks (YAML mappings).
func liveLab(t *testing.T, checks map[string]map[string]any) *labs.Lab {
	t.Helper()
	st := labs.Step{Index: 1, ID: "one", Title: "one"}
	for id, spec := range checks {
		c := checkOf(t, id, spec)
		c.Title = id
		st.Checks = append(st.Checks, c)
	}
	return &labs.Lab{ID: "live-" + t.Name(), Steps: []labs.Step{st}}
}

// waitCheck waits for an update in which check id satisfies ok.
func waitCheck(t *testing.T, w *grader.Watcher, updates <-chan grader.LabResult, what, id string, ok func(grader.CheckResult) bool) grader.LabResult {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		select {
		case r := <-updates:
			for _, c := range r.Steps[0].Checks {
				if c.ID == id && ok(c) {
					return r
				}
			}
		case <-deadline:
			t.Fatalf("%s: latest %+v", what, w.Latest())
		}
	}
}

func state(s grader.State) func(grader.CheckResult) bool {
	return func(c grader.CheckResult) bool { return c.State == s }
}

// TestLiveCommandCheckIsEventDriven: a command check turns green after
// the learner's command although nothing else happens (the command makes
// no engine event and changes no file) and the grader has no poll: the
// engine's records long poll announces the call.
func TestLiveCommandCheckIsEventDriven(t *testing.T) {
	needCLIs(t)
	b := newBox(t)
	lab := liveLab(t, map[string]map[string]any{"history": {"kind": "command", "command": "history"}})
	live := grader.NewLive(grader.LiveOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(live.Close)
	w := live.Watch(grader.Target{SandboxID: "sb-grader", Learner: "alice", Lab: lab, Sandbox: b.sb, Socket: sockOf(b)})
	updates, cancel := w.Subscribe()
	defer cancel()
	waitCheck(t, w, updates, "first evaluation", "history", state(grader.StateFailed))
	// The CLI's config outside the workspace, so no file event helps.
	b.sh("DOCKER_CONFIG=/tmp/learner-docker " + enginetest.DockerCLI20 + " image history busybox >/dev/null")
	waitCheck(t, w, updates, "after the learner's docker image history", "history", state(grader.StatePassed))
}

// TestLiveScriptSideEffectsDoNotLoop: a failing script check that runs a
// container and writes a workspace file (engine events, file events) is
// not re-run on its own events, and a script's docker calls never pass
// the command check; the learner's own call still passes it at once.
func TestLiveScriptSideEffectsDoNotLoop(t *testing.T) {
	needCLIs(t)
	b := newBox(t)
	script := enginetest.DockerCLI20 + " image history busybox >/dev/null\n" +
		enginetest.DockerCLI20 + " run --rm busybox true\n" +
		"date +%s%N >> grader-touched.txt\n" +
		"echo 'FAIL: not yet'; exit 1\n"
	lab := liveLab(t, map[string]map[string]any{
		"script":  {"kind": "script", "run": script},
		"history": {"kind": "command", "command": "history"},
	})
	live := grader.NewLive(grader.LiveOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(live.Close)
	w := live.Watch(grader.Target{SandboxID: "sb-grader", Learner: "alice", Lab: lab, Sandbox: b.sb, Socket: sockOf(b)})
	updates, cancel := w.Subscribe()
	defer cancel()
	r := waitCheck(t, w, updates, "first evaluation", "script", func(c grader.CheckResult) bool {
		return c.State == grader.StateFailed && c.Message == "not yet"
	})
	for _, c := range r.Steps[0].Checks {
		if c.ID == "history" && c.State != grader.StateFailed {
			t.Fatalf("the script's history call passed the command check: %+v", c)
		}
	}
	first := w.Evaluations()
	// Watch for a while: the old grader re-ran the script on its own
	// events (and recorded calls) every fraction of a second. Deferred
	// self events allow at most a couple of evaluations here.
	time.Sleep(5 * time.Second)
	if n := w.Evaluations() - first; n > 2 {
		t.Fatalf("%d evaluations in 5 s with no learner action: the script re-triggers itself", n)
	}
	if c := w.Latest().Steps[0].Checks; c[0].State == grader.StatePassed || c[1].State == grader.StatePassed {
		t.Fatalf("passed without the learner: %+v", c)
	}
	b.sh("DOCKER_CONFIG=/tmp/learner-docker " + enginetest.DockerCLI20 + " image history busybox >/dev/null")
	waitCheck(t, w, updates, "after the learner's docker image history", "history", state(grader.StatePassed))
}
