package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/labd/labd/grader"
	"github.com/labd/labd/labs"
	"github.com/labd/labd/sandbox"
	"github.com/labd/labd/sandbox/enginebox"
	"github.com/labd/labd/web"
)

func init() {
	register("grade", command{
		summary: "print the state of every check of a lab for one sandbox (text, json, junit)",
		run:     runGrade,
	})
}

// gradeTimeout bounds a grade by labd serve: every script check has its
// own timeout (10 s by default), a lab has a handful.
const gradeTimeout = 5 * time.Minute

// runGrade prints the state of every check. When labd serve runs on the
// data directory and the sandbox is live in it, serve grades in-process
// through DATA/grade.sock (script and http checks run inside the sandbox,
// passes kept in the progress store count, as on the learner's page).
// Otherwise it grades alone from the workspace on disk and the engine
// socket, says on stderr which checks it could not run, and reports them
// as "could not check". Exit status 1 when any check did not pass.
func runGrade(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("labd grade", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sid := fs.String("sandbox", "", "sandbox ID (as in DATA/sandboxes/<id>)")
	labID := fs.String("lab", "", "lab ID (folder name in the content directory)")
	format := fs.String("format", "text", "output format: text, json or junit")
	data := fs.String("data", envDefault("LABD_DATA", defaultDataDir), "state directory (env LABD_DATA)")
	content := fs.String("content", envDefault("LABD_CONTENT", "./content"), "directory of labs when grading without labd serve (env LABD_CONTENT); labd serve uses its own")
	user := fs.String("user", "", "the learner's registry user for {{user}} in push checks when grading without labd serve (empty: any)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *sid == "" || *labID == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: labd grade --sandbox ID --lab LAB [--format text|json|junit] [--data DIR] [--content DIR]")
		return exitError{2}
	}
	if !sandbox.ValidID(*sid) {
		return fmt.Errorf("invalid sandbox ID %q", *sid)
	}
	write, ok := map[string]func(grader.LabResult, io.Writer) error{
		"text":  grader.LabResult.WriteText,
		"json":  grader.LabResult.WriteJSON,
		"junit": grader.LabResult.WriteJUnit,
	}[*format]
	if !ok {
		return fmt.Errorf("unknown format %q (text, json, junit)", *format)
	}

	res, why, err := gradeByServe(ctx, *data, *sid, *labID)
	switch {
	case err != nil:
		return err
	case why == "":
		fmt.Fprintf(stderr, "labd grade: graded by labd serve in the live sandbox %s\n", *sid)
	default:
		if res, err = gradeAlone(ctx, *data, *content, *sid, *labID, *user, why, stderr); err != nil {
			return err
		}
	}
	if err := write(res, stdout); err != nil {
		return err
	}
	if res.Passed < res.Total {
		return exitError{1}
	}
	return nil
}

// gradeByServe asks labd serve to grade. A non-empty why (and no error)
// means serve cannot: it is not running, or the sandbox is not live in it.
func gradeByServe(ctx context.Context, data, sid, lab string) (res grader.LabResult, why string, err error) {
	sock := filepath.Join(data, gradeSocketName)
	if _, err := os.Stat(sock); err != nil {
		return res, fmt.Sprintf("no labd serve runs on %s (no %s)", data, sock), nil
	}
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	defer hc.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, gradeTimeout)
	defer cancel()
	u := "http://labd" + web.GradePath + "?" + url.Values{"sandbox": {sid}, "lab": {lab}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return res, "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return res, "", fmt.Errorf("labd serve did not finish grading within %s: %w", gradeTimeout, err)
		}
		// A socket left by a killed labd serve: nobody answers.
		return res, fmt.Sprintf("no labd serve answers on %s (%v)", sock, errors.Unwrap(err)), nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e web.GradeError
		if json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&e) != nil || e.Error == "" {
			e.Error = resp.Status
		}
		if resp.StatusCode == http.StatusConflict {
			return res, e.Error, nil
		}
		return res, "", fmt.Errorf("labd serve: %s", e.Error)
	}
	var rep web.GradeReport
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		return res, "", fmt.Errorf("labd serve's answer: %w", err)
	}
	return rep.Result, "", nil
}

// gradeAlone grades from outside labd serve: the workspace on disk and the
// grader's engine socket (while the sandbox runs). Script and http checks
// need the live sandbox; they are reported "could not check" with why.
func gradeAlone(ctx context.Context, data, content, sid, labID, user, why string, stderr io.Writer) (grader.LabResult, error) {
	lab, err := labs.NewCatalog(content).Get(labID)
	if err != nil {
		return grader.LabResult{}, fmt.Errorf("lab %s: %w", labID, err)
	}
	dir := filepath.Join(data, "sandboxes", sid)
	ws := filepath.Join(dir, "workspace")
	if _, err := os.Stat(ws); err != nil {
		return grader.LabResult{}, fmt.Errorf("sandbox %s: no workspace at %s", sid, ws)
	}
	env := &grader.Env{Workspace: ws, User: user}
	sock := filepath.Join(dir, enginebox.GraderSocketName)
	if _, err := os.Stat(sock); err == nil {
		c, err := grader.NewClient(sock)
		if err != nil {
			return grader.LabResult{}, err
		}
		defer c.Close()
		env.Docker = c
	} else if !errors.Is(err, os.ErrNotExist) {
		return grader.LabResult{}, fmt.Errorf("engine socket: %w", err)
	}
	res := grader.Grade(ctx, env, lab)
	var skipped []string
	for i := range res.Steps {
		for j := range res.Steps[i].Checks {
			c := &res.Steps[i].Checks[j]
			if c.State == grader.StateError && strings.Contains(c.Message, "need a running sandbox") {
				c.Message = "could not check: " + why + "; " + c.Kind + " checks run inside the live sandbox, through labd serve"
				skipped = append(skipped, c.ID+" ("+c.Kind+")")
			}
		}
	}
	fmt.Fprintf(stderr, "labd grade: graded without labd serve: %s\n", why)
	if len(skipped) > 0 {
		fmt.Fprintf(stderr, "labd grade: could not run %d check(s) that need the live sandbox: %s\n", len(skipped), strings.Join(skipped, ", "))
	}
	return res, nil
}
