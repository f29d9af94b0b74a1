package web

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/labd/labd/labs"
	"github.com/labd/labd/sandbox"
)

// "Start from this step": the learner's sandbox is brought to where a
// step starts by its setup (labs.Step.Setup: the step's setup block, or
// the solution of the steps before it), run in the learner's own shell
// as the learner would. A setup that fails leaves the workspace as it
// was: it is saved first and put back.

// setupTimeout bounds a step's setup: a few builds and runs.
const setupTimeout = 5 * time.Minute

// snapshotPath is where the workspace is saved during a setup, inside the
// sandbox (its own /tmp, out of the learner's workspace).
const snapshotPath = "/tmp/.labd-setup-snapshot.tar"

func (s *server) startFromStep(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	lab, err := s.opts.Catalog.Get(id)
	if err != nil {
		s.labError(w, r, id, err)
		return
	}
	n, err := strconv.Atoi(r.PathValue("n"))
	if err != nil || n < 1 || n > len(lab.Steps) || lab.Steps[n-1].Setup == "" {
		s.notFound(w, r)
		return
	}
	g, ok := s.access(w, r, routeStartStep, "", 0)
	if !ok {
		return
	}
	st := lab.Steps[n-1]
	sid := s.keys.sandboxID(g.learner, id)
	sb, _, running := s.opts.Sandboxes.Get(sid)
	if !running {
		s.errorPage(w, r, http.StatusConflict, errorData{Title: "Your sandbox is not running",
			Message: "Open the lab and wait for the prompt, then press \"Start from this step\" again."})
		return
	}
	env := []string{}
	if user, box := s.learnerAccount(r.Context(), g.learner, id); user != "" {
		env = append(env, "LABD_USER="+user)
		if box != nil && box.Password != "" {
			env = append(env, "LABD_PASSWORD="+box.Password)
		}
	}
	// A second setup would overwrite the first's snapshot of the
	// workspace (and a learner's flood of them would each hold a shell for
	// minutes): one at a time per sandbox.
	if _, busy := s.settingUp.LoadOrStore(sid, struct{}{}); busy {
		s.errorPage(w, r, http.StatusConflict, errorData{Title: "A setup is already running",
			Message: "Your sandbox is being set up for a step; wait for that page to answer, then try again."})
		return
	}
	defer s.settingUp.Delete(sid)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), setupTimeout)
	defer cancel()
	if err := runSetup(ctx, sb, st, env); err != nil {
		s.log.Info("step setup failed", "lab", id, "sandbox", sid, "step", n, "err", err)
		s.errorPage(w, r, http.StatusUnprocessableEntity, errorData{
			Title:   fmt.Sprintf("Could not set up step %d", n),
			Message: err.Error() + " Your files are as they were before; you can do the earlier steps yourself, or reset your sandbox and try again.",
		})
		return
	}
	s.log.Info("sandbox set up for a step", "lab", id, "sandbox", sid, "step", n)
	http.Redirect(w, r, "/labs/"+url.PathEscape(id)+"#"+url.PathEscape(st.ID), http.StatusSeeOther)
}

// setupError is a setup that ran and failed: what the learner is told.
type setupError struct {
	code int
	tail string
}

func (e setupError) Error() string {
	if e.tail == "" {
		return fmt.Sprintf("The setup exited with status %d.", e.code)
	}
	return fmt.Sprintf("The setup exited with status %d; it last printed: %s.", e.code, e.tail)
}

// runSetup saves the workspace, runs st's setup in sb, and puts the
// workspace back when the setup fails.
func runSetup(ctx context.Context, sb sandbox.Sandbox, st labs.Step, env []string) error {
	shell := func(script string, extra []string) (int, string, error) {
		var out bytes.Buffer
		code, err := sb.Exec(ctx, sandbox.ExecSpec{Cmd: []string{"bash", "-c", script}, Env: extra, Stdout: &out, Stderr: &out})
		return code, out.String(), err
	}
	if code, out, err := shell("tar -cf "+snapshotPath+" .", nil); err != nil || code != 0 {
		return errors.Join(fmt.Errorf("labd could not save your files before the setup (your sandbox may be out of space): %s", lastLine(out)), err)
	}
	defer shell("rm -f "+snapshotPath, nil)
	code, out, err := shell(st.Setup, env)
	if err == nil && code == 0 {
		return nil
	}
	if rc, rout, rerr := shell("find . -mindepth 1 -delete && tar -xf "+snapshotPath, nil); rerr != nil || rc != 0 {
		return fmt.Errorf("the setup failed, and labd could not put your files back (%s): reset your sandbox", lastLine(rout))
	}
	if err != nil {
		return fmt.Errorf("the setup did not finish: %w.", err)
	}
	return setupError{code: code, tail: lastLine(out)}
}

// lastLine is the last non-empty line of out, at most 200 characters.
func lastLine(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	l := strings.TrimSpace(lines[len(lines)-1])
	if len(l) > 200 {
		l = l[:200] + "…"
	}
	return l
}
