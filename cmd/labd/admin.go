package main

import (
	"bytes"
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
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/labd/labd/sandbox"
	"github.com/labd/labd/web"
)

func init() {
	register("admin", command{
		summary: "a class's sandboxes in the running labd serve: admin sandboxes ls|inspect|stop|rm",
		run:     runAdmin,
	})
}

const adminUsage = `usage: labd admin sandboxes ls [--json] [--data DIR]
       labd admin sandboxes inspect ID [--data DIR]
       labd admin sandboxes stop ID... [--data DIR]
       labd admin sandboxes rm --yes ID... [--data DIR]

They ask the labd serve running on the data directory (through DATA/grade.sock).
ls lists the running sandboxes with their lab, learner, memory, CPU and disk;
stop ends a sandbox and keeps its files (its learner's page says an
instructor stopped it); rm also deletes its files, the learner's work.`

// adminTimeout bounds one request: a listing reads every sandbox's usage
// (a few seconds at most each), a stop waits for the sandbox's containers.
const adminTimeout = 2 * time.Minute

// runAdmin is `labd admin sandboxes ...`.
func runAdmin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "sandboxes" {
		fmt.Fprintln(stderr, adminUsage)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return flag.ErrHelp
		}
		return exitError{2}
	}
	args = args[1:]
	if len(args) == 0 {
		fmt.Fprintln(stderr, adminUsage)
		return exitError{2}
	}
	verb, args := args[0], args[1:]
	fs := flag.NewFlagSet("labd admin sandboxes "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, adminUsage) }
	data := fs.String("data", envDefault("LABD_DATA", defaultDataDir), "state directory of the running labd serve (env LABD_DATA)")
	asJSON := fs.Bool("json", false, "ls: print JSON instead of a table")
	var yes bool
	fs.BoolVar(&yes, "yes", false, "rm: delete the sandboxes' files, the learners' work")
	fs.BoolVar(&yes, "f", false, "rm: same as --yes")
	ids, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	c := newAdminClient(*data)
	defer c.close()
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	switch verb {
	case "ls", "list":
		if len(ids) > 0 {
			return fmt.Errorf("ls takes no sandbox IDs (inspect ID shows one)")
		}
		var list []web.SandboxInfo
		if err := c.do(ctx, http.MethodGet, web.SandboxesPath, &list); err != nil {
			return err
		}
		if *asJSON {
			return writeIndented(stdout, list)
		}
		return writeSandboxTable(stdout, list, time.Now())
	case "inspect":
		if len(ids) != 1 {
			return fmt.Errorf("inspect takes one sandbox ID")
		}
		var si web.SandboxInfo
		if err := c.do(ctx, http.MethodGet, sandboxPath(ids[0]), &si); err != nil {
			return err
		}
		return writeIndented(stdout, si)
	case "stop":
		if len(ids) == 0 {
			return fmt.Errorf("stop takes the IDs of the sandboxes to stop (labd admin sandboxes ls lists them)")
		}
		return eachID(ids, stderr, func(id string) error {
			var si web.SandboxInfo
			if err := c.do(ctx, http.MethodPost, sandboxPath(id)+"/stop", &si); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s stopped (its files are kept: labd admin sandboxes rm removes them)\n", id)
			return nil
		})
	case "rm", "remove":
		if len(ids) == 0 {
			return fmt.Errorf("rm takes the IDs of the sandboxes to remove")
		}
		if !yes {
			return fmt.Errorf("rm deletes the learners' files (their workspaces): add --yes (or -f) to remove %s", strings.Join(ids, " "))
		}
		return eachID(ids, stderr, func(id string) error {
			var out web.SandboxRemoved
			if err := c.do(ctx, http.MethodDelete, sandboxPath(id), &out); err != nil {
				return err
			}
			how := "removed"
			if out.Stopped {
				how = "stopped and removed"
			}
			fmt.Fprintf(stdout, "%s %s (%s)\n", id, how, strings.Join(out.Removed, ", "))
			return nil
		})
	}
	fmt.Fprintln(stderr, adminUsage)
	return exitError{2}
}

func sandboxPath(id string) string { return web.SandboxesPath + "/" + url.PathEscape(id) }

// eachID runs f for every id, reporting each failure and going on; exit
// status 1 if any failed.
func eachID(ids []string, stderr io.Writer, f func(id string) error) error {
	failed := 0
	for _, id := range ids {
		if !sandbox.ValidID(id) {
			fmt.Fprintf(stderr, "labd admin: %q is not a sandbox ID\n", id)
			failed++
			continue
		}
		if err := f(id); err != nil {
			var ne notServing
			if errors.As(err, &ne) {
				return err // the same for every other id
			}
			fmt.Fprintf(stderr, "labd admin: %s: %v\n", id, err)
			failed++
		}
	}
	if failed > 0 {
		return exitError{1}
	}
	return nil
}

func writeIndented(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeSandboxTable prints the columns the instructor page shows.
func writeSandboxTable(w io.Writer, list []web.SandboxInfo, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(web.SandboxColumns, "\t"))
	for _, si := range list {
		fmt.Fprintln(tw, strings.Join(si.Cells(now), "\t"))
	}
	return tw.Flush()
}

// adminClient talks to labd serve's instructor socket.
type adminClient struct {
	sock string
	hc   *http.Client
}

func newAdminClient(data string) *adminClient {
	sock := filepath.Join(data, gradeSocketName)
	return &adminClient{sock: sock, hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}}
}

func (c *adminClient) close() { c.hc.CloseIdleConnections() }

// notServing is the error when no labd serve answers on the data dir.
type notServing struct{ msg string }

func (e notServing) Error() string { return e.msg }

// do sends a request and decodes a 2xx answer into out; other answers
// are the server's error message.
func (c *adminClient) do(ctx context.Context, method, path string, out any) error {
	if _, err := os.Stat(c.sock); errors.Is(err, os.ErrNotExist) {
		return notServing{fmt.Sprintf("no labd serve runs on %s (no %s): start it with labd serve --data %s", filepath.Dir(c.sock), c.sock, filepath.Dir(c.sock))}
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://labd"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		switch {
		case ctx.Err() != nil:
			return fmt.Errorf("labd serve did not answer within %s: %w", adminTimeout, err)
		case errors.Is(err, syscall.ECONNREFUSED):
			// A socket left by a killed labd serve: nobody answers.
			return notServing{fmt.Sprintf("no labd serve answers on %s (a killed labd serve left it): start labd serve --data %s", c.sock, filepath.Dir(c.sock))}
		case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
			return fmt.Errorf("%s: %w (run as labd serve's user or root)", c.sock, err)
		}
		return fmt.Errorf("labd serve on %s: %w", c.sock, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("labd serve's answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var e web.GradeError
		if json.Unmarshal(body, &e) != nil || e.Error == "" {
			e.Error = resp.Status + ": " + strings.TrimSpace(string(bytes.TrimSpace(body)))
		}
		if resp.StatusCode == http.StatusNotFound && strings.HasPrefix(e.Error, "no such endpoint") {
			e.Error += " (this labd serve is older than labd admin: restart it)"
		}
		return errors.New(e.Error)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("labd serve's answer: %w", err)
	}
	return nil
}

// RemoveFiles passes the engine's sandbox.FileRemover through serve's
// provider wrapper (bootstrap.go), so that `labd admin sandboxes rm`
// unmounts a stopped sandbox's disk before its directory goes.
func (r *shellRecorder) RemoveFiles(ctx context.Context, name string) error {
	if fr, ok := r.Provider.(sandbox.FileRemover); ok {
		return fr.RemoveFiles(ctx, name)
	}
	return nil
}

var _ sandbox.FileRemover = (*shellRecorder)(nil)
