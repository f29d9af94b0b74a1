package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/labd/labd/labs"
)

func init() {
	register("lint", command{
		summary: "check every lab in a content folder and print its problems",
		run:     runLint,
	})
}

// runLint prints one "path:line: message" per problem on stdout, so editors
// and CI can jump to them, and exits 1 when there are any. Entries that are
// not labs get one "path: warning: ..." line each and do not fail it.
func runLint(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("lint", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: labd lint [CONTENT_DIR]")
		fmt.Fprintln(stderr, "\nChecks every lab folder in CONTENT_DIR (default $LABD_CONTENT or ./content).")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		fs.Usage()
		return exitError{2}
	}
	dir := envDefault("LABD_CONTENT", "./content")
	if fs.NArg() == 1 {
		dir = fs.Arg(0)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("lint: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("lint: %s is not a folder", dir)
	}
	problems, warnings := labs.Lint(dir)
	for _, w := range warnings {
		fmt.Fprintln(stdout, w)
	}
	for _, p := range problems {
		fmt.Fprintln(stdout, p)
	}
	if len(problems) > 0 {
		fmt.Fprintf(stderr, "%d problems\n", len(problems))
		return exitError{1}
	}
	n := len(labs.NewCatalog(dir).List())
	if _, err := os.Stat(filepath.Join(dir, "lab.md")); err == nil {
		n = 1 // one lab's folder (labs.Lint)
	}
	fmt.Fprintf(stderr, "%d labs, no problems\n", n)
	return nil
}
