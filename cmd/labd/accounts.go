package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/labd/labd/registry/accounts"
)

func init() {
	register("accounts", command{
		summary: "manage classroom registry accounts (add, list, remove, passwd)",
		run:     runAccounts,
	})
}

const accountsUsage = `usage:
  labd accounts add NAME [--password-stdin] [--instructor] [--data D]
  labd accounts list [--data D]
  labd accounts remove NAME [--data D]
  labd accounts passwd NAME [--password-stdin] [--data D]
Without --password-stdin, add and passwd make a random password and print it.`

// stdin is a variable so tests can feed passwords.
var stdin io.Reader = os.Stdin

func runAccounts(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, accountsUsage)
		return exitError{2}
	}
	sub := args[0]
	fs := flag.NewFlagSet("labd accounts "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", envDefault("LABD_DATA", defaultDataDir), "state directory (env LABD_DATA)")
	var fromStdin, instructor *bool
	switch sub {
	case "add", "passwd":
		fromStdin = fs.Bool("password-stdin", false, "read the password from the first line of stdin")
		if sub == "add" {
			instructor = fs.Bool("instructor", false, "an instructor: reads everything, publishes under its name and library/")
		}
	case "list", "remove":
	default:
		fmt.Fprintln(stderr, accountsUsage)
		return exitError{2}
	}
	// Flags may come before or after NAME.
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	wantArgs := 1
	if sub == "list" {
		wantArgs = 0
	}
	if len(pos) != wantArgs {
		fmt.Fprintln(stderr, accountsUsage)
		return exitError{2}
	}
	if err := os.MkdirAll(*data, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	store, err := accounts.Open(ctx, filepath.Join(*data, "labd.db"), accounts.Options{})
	if err != nil {
		return err
	}
	defer store.Close()

	password := func() (pw string, generated bool, err error) {
		if !*fromStdin {
			return accounts.NewPassword(), true, nil
		}
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && err != io.EOF {
			return "", false, fmt.Errorf("read password: %w", err)
		}
		return strings.TrimRight(line, "\r\n"), false, nil
	}

	switch sub {
	case "add":
		name := pos[0]
		if err := accounts.ValidName(name); err != nil {
			return err
		}
		pw, gen, err := password()
		if err != nil {
			return err
		}
		role := accounts.Learner
		if *instructor {
			role = accounts.Instructor
		}
		if err := store.Add(ctx, name, pw, role); err != nil {
			return err
		}
		if gen {
			fmt.Fprintf(stdout, "%s\n", pw)
		}
		fmt.Fprintf(stderr, "added %s %s\n", role, name)
	case "passwd":
		pw, gen, err := password()
		if err != nil {
			return err
		}
		if err := store.SetPassword(ctx, pos[0], pw); err != nil {
			return err
		}
		if gen {
			fmt.Fprintf(stdout, "%s\n", pw)
		}
	case "remove":
		if err := store.Remove(ctx, pos[0]); err != nil {
			return err
		}
	case "list":
		all, err := store.List(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tROLE\tCREATED\tPASSWORD CHANGED")
		for _, a := range all {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", a.Name, a.Role, a.Created.UTC().Format("2006-01-02 15:04"), a.Updated.UTC().Format("2006-01-02 15:04"))
		}
		return tw.Flush()
	}
	return nil
}
