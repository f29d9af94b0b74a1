// Command testreport runs `go test -json ...`, prints what `go test` would
// (package results, the output of failed tests; everything with -v), and
// fails the run where go test alone would stay green by accident:
//
//   - a test skipped for a reason not listed in the allow-list
//     (.ci/skips.txt): a reference or tool that did not run is not a pass;
//   - a package whose test binary ran no test at all (a TestMain that
//     exited early, a filter that matched nothing).
//
// Usage: go run ./internal/testreport [-v] [-allow FILE] -- go test -json ARGS...
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
)

func main() {
	verbose := flag.Bool("v", false, "print every test's output, as go test -v")
	allow := flag.String("allow", ".ci/skips.txt", "allowed skips: one `package TestName reason` a line")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: testreport [-v] [-allow FILE] -- go test -json ARGS...")
		os.Exit(2)
	}
	allowed, err := readAllowList(*allow)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testreport:", err)
		os.Exit(2)
	}
	os.Exit(run(flag.Args(), allowed, *verbose, os.Stdout, os.Stderr))
}

// run starts the go test command and reports on its event stream; it
// returns the exit code.
func run(args []string, allowed AllowList, verbose bool, stdout, stderr io.Writer) int {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stderr = stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintln(stderr, "testreport:", err)
		return 2
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(stderr, "testreport:", err)
		return 2
	}
	r := NewReport(allowed, verbose, stdout)
	if err := r.Read(pipe); err != nil {
		fmt.Fprintln(stderr, "testreport: reading go test's events:", err)
	}
	waitErr := cmd.Wait()
	problems := r.Finish()
	if waitErr != nil && len(problems) == 0 {
		// go test failed in a way the events did not show (a build
		// error printed on stderr, a crash of go itself).
		problems = append(problems, fmt.Sprintf("%s: %v", args[0], waitErr))
	}
	if len(problems) > 0 {
		fmt.Fprintln(stdout, "\ntestreport: the run is not green:")
		for _, p := range problems {
			fmt.Fprintln(stdout, "  -", p)
		}
		return 1
	}
	return 0
}
