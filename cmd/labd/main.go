// Command labd is the self-hosted interactive lab server.
//
// Each subcommand lives in its own file and registers itself in init();
// main only dispatches, so adding a subcommand touches no shared file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// command is one labd subcommand. run gets the arguments after the
// subcommand's name and a context cancelled on SIGINT/SIGTERM.
type command struct {
	summary string
	hidden  bool // internal entry points (re-exec targets) stay out of the usage
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands = map[string]command{}

func register(name string, c command) {
	if _, dup := commands[name]; dup {
		panic("labd: command registered twice: " + name)
	}
	commands[name] = c
}

// exitError carries an exit code without an extra message (for example
// lint, which has already printed its problems).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: labd <command> [flags]")
	fmt.Fprintln(w, "\ncommands:")
	names := make([]string, 0, len(commands))
	for n, c := range commands {
		if !c.hidden {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'labd <command> -h' for a command's flags.")
}

func main() {
	if len(os.Args) < 2 {
		usage(os.Stderr)
		os.Exit(2)
	}
	name := os.Args[1]
	if name == "-h" || name == "--help" || name == "help" {
		usage(os.Stdout)
		return
	}
	c, ok := commands[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "labd: unknown command %q\n\n", name)
		usage(os.Stderr)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := c.run(ctx, os.Args[2:], os.Stdout, os.Stderr)
	stop()
	if err == nil {
		return
	}
	var ee exitError
	switch {
	case errors.As(err, &ee):
		os.Exit(ee.code)
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	default:
		// Plain text, not slog: errors can span lines (a bootstrap's
		// apt output) and are read by people at a terminal.
		fmt.Fprintf(os.Stderr, "labd %s: %v\n", name, err)
		os.Exit(1)
	}
}

// envDefault returns the environment variable's value, or def when unset,
// so every flag can also come from LABD_* variables.
func envDefault(key, def string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}

// defaultDataDir is where state lives when neither --data nor LABD_DATA is given.
const defaultDataDir = "./data"

// parseInterspersed parses args with fs, allowing flags after positional
// arguments too (`labd test content --lab x`), and returns the positional
// arguments in order.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}
