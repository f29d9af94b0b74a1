package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/labd/labd/grader"
	"github.com/labd/labd/labs"
	"github.com/labd/labd/sandbox"
	"github.com/labd/labd/sandbox/engine"
)

func init() {
	register("grade", command{
		summary: "print the state of every check of a lab for one sandbox (text, json, junit)",
		run:     runGrade,
	})
}

// runGrade grades a sandbox from outside labd serve: it reads the
// sandbox's workspace on disk and talks to its engine socket. Script and
// http checks need to run inside the live sandbox, which only labd serve
// can do, so they report "could not check". Exit status 1 when any check
// did not pass.
func runGrade(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("labd grade", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sid := fs.String("sandbox", "", "sandbox ID (as in DATA/sandboxes/<id>)")
	labID := fs.String("lab", "", "lab ID (folder name in the content directory)")
	format := fs.String("format", "text", "output format: text, json or junit")
	data := fs.String("data", envDefault("LABD_DATA", defaultDataDir), "state directory (env LABD_DATA)")
	content := fs.String("content", envDefault("LABD_CONTENT", "./content"), "directory of labs (env LABD_CONTENT)")
	user := fs.String("user", "", "the learner's registry user, for {{user}} in push checks (empty: any)")
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
	lab, err := labs.NewCatalog(*content).Get(*labID)
	if err != nil {
		return fmt.Errorf("lab %s: %w", *labID, err)
	}
	dir := filepath.Join(*data, "sandboxes", *sid)
	ws := filepath.Join(dir, "workspace")
	if _, err := os.Stat(ws); err != nil {
		return fmt.Errorf("sandbox %s: no workspace at %s", *sid, ws)
	}
	env := &grader.Env{Workspace: ws, User: *user}
	sock := filepath.Join(dir, engine.SocketName)
	if _, err := os.Stat(sock); err == nil {
		c, err := grader.NewClient(sock)
		if err != nil {
			return err
		}
		defer c.Close()
		env.Docker = c
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("engine socket: %w", err)
	}
	res := grader.Grade(ctx, env, lab)
	if err := write(res, stdout); err != nil {
		return err
	}
	if res.Passed < res.Total {
		return exitError{1}
	}
	return nil
}
