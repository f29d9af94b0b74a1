package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/distribution/reference"

	"github.com/labd/labd/grader/labtest"
	"github.com/labd/labd/labs"
	"github.com/labd/labd/registry"
	"github.com/labd/labd/registry/accounts"
	"github.com/labd/labd/sandbox"
	"github.com/labd/labd/sandbox/engine"
	"github.com/labd/labd/sandbox/engine/api"
	"github.com/labd/labd/sandbox/engine/distribution"
	"github.com/labd/labd/sandbox/engine/image"
	"github.com/labd/labd/sandbox/enginebox"
	"github.com/labd/labd/sandbox/nsbox"
)

func init() {
	register("test", command{
		summary: "run each lab's solution.sh in a fresh sandbox and check every step",
		run:     runTest,
	})
}

func runTest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("labd test", flag.ContinueOnError)
	fs.SetOutput(stderr)
	labID := fs.String("lab", "", "test only this lab")
	junit := fs.String("junit", "", "also write a JUnit XML report to this file")
	data := fs.String("data", envDefault("LABD_DATA", defaultDataDir), "copy the base images from this state directory, read-only: it may be in use by labd serve (env LABD_DATA; when neither is given and ./data has no images: bootstrap busybox)")
	verbose := fs.Bool("v", false, "show the solution's output")
	settle := fs.Duration("settle", 20*time.Second, "how long a step's checks (and a cheat's) may take to pass after its script")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: labd test [--lab LAB] [--junit FILE] [--data DIR] [--settle 20s] [-v] CONTENT_DIR")
		fs.PrintDefaults()
	}
	// Flags may follow the content directory.
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return exitError{2}
	}
	content := pos[0]
	from := *data
	if !dataGiven(fs) {
		if _, err := os.Stat(filepath.Join(from, "engine")); err != nil {
			from = ""
		}
	}
	ls, err := testLabs(content, *labID, stdout, stderr)
	if err != nil {
		return err
	}

	tmp, err := os.MkdirTemp("", "labd-test-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	// A classroom registry of the test's own, on a free loopback port,
	// with one learner account: the labs' push steps run as written.
	accts, err := accounts.Open(ctx, filepath.Join(tmp, "labd.db"), accounts.Options{})
	if err != nil {
		return err
	}
	defer accts.Close()
	const testUser = "tester"
	password, err := accts.EnsureLearner(ctx, testUser)
	if err != nil {
		return fmt.Errorf("registry account: %w", err)
	}
	reg, err := registry.New(registry.Options{
		Dir:      filepath.Join(tmp, "registry"),
		Addr:     "127.0.0.1:0",
		Accounts: accts,
		Logger:   log,
	})
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	defer reg.Close(context.WithoutCancel(ctx))
	shared, err := engine.OpenShared(tmp, engine.SharedOptions{
		Logger:   log,
		Registry: distribution.Options{HubStandIn: reg.Addr()},
	})
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	if err := baseImages(ctx, shared.Store, from, stderr); err != nil {
		return err
	}
	if missing := missingImages(shared.Store, ls, from); len(missing) > 0 {
		for _, m := range missing {
			fmt.Fprintln(stderr, m)
		}
		return fmt.Errorf("%d images missing; nothing was run", len(missing))
	}
	if w := hostShellWarning(shared.Store, from); w != "" {
		fmt.Fprintln(stderr, w)
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	mgr := sandbox.NewManager(&enginebox.Provider{
		Inner:  nsbox.New(nsbox.Options{Exe: exe}),
		Shared: shared,
		API:    api.Options{Version: engine.Version, TempDir: filepath.Join(tmp, "engine", "tmp"), Logger: log},
	}, sandbox.ManagerOptions{DataDir: tmp, IdleTimeout: -1, Logger: log})
	defer mgr.Close(context.WithoutCancel(ctx))

	var progress io.Writer = io.Discard
	if *verbose {
		progress = stderr
	}
	rep := labtest.Run(ctx, ls, labtest.Options{
		Sandboxes: mgr,
		Socket: func(sb sandbox.Sandbox) string {
			return filepath.Join(filepath.Dir(sb.Workspace()), enginebox.GraderSocketName)
		},
		Log:      progress,
		Settle:   *settle,
		User:     testUser,
		Password: password,
	})
	if err := rep.WriteTable(stdout); err != nil {
		return err
	}
	if *junit != "" {
		f, err := os.Create(*junit)
		if err != nil {
			return err
		}
		if err := rep.WriteJUnit(f); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	if rep.Failed() > 0 {
		return exitError{1}
	}
	return nil
}

// dataGiven reports whether the data dir was asked for (--data or
// LABD_DATA) rather than the default, which may well not exist.
func dataGiven(fs *flag.FlagSet) bool {
	given := os.Getenv("LABD_DATA") != ""
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == "data" })
	return given
}

// testLabs lints and returns the labs to test: every lab of content, or
// only labID. Entries that are not labs get a warning on stderr and are
// left out; with labID only that lab's problems count.
func testLabs(content, labID string, stdout, stderr io.Writer) ([]*labs.Lab, error) {
	problems, warnings := labs.Lint(content)
	for _, w := range warnings {
		fmt.Fprintln(stderr, w)
	}
	if labID != "" {
		dir := filepath.Join(content, labID)
		if !labs.ValidID(labID) || !labs.IsLab(dir) {
			return nil, fmt.Errorf("no lab %q in %s", labID, content)
		}
		problems = labs.LintLab(dir)
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(stdout, p)
		}
		return nil, fmt.Errorf("%d lint problems; fix them first (labd lint)", len(problems))
	}
	var ls []*labs.Lab
	for _, e := range labs.NewCatalog(content).List() {
		if labID == "" || e.ID == labID {
			ls = append(ls, e.Lab)
		}
	}
	if len(ls) == 0 {
		return nil, fmt.Errorf("no labs in %s", content)
	}
	return ls, nil
}

// missingImages names each front-matter image of ls that the test's base
// images lack, with the command that makes it, so a run does not fail
// deep in a step with "manifest for python:3.11-slim not found".
func missingImages(st *image.Store, ls []*labs.Lab, from string) []string {
	base, err := st.View(image.BaseView)
	if err != nil {
		return []string{fmt.Sprintf("labd test: base images: %v", err)}
	}
	dataArg := "--data DIR (and pass labd test the same --data)"
	if from != "" {
		dataArg = "--data " + from
	}
	var out []string
	for _, lab := range ls {
		for _, ref := range lab.Images {
			if _, err := base.Resolve(ref); err == nil {
				continue
			}
			fix := fmt.Sprintf("import it: docker save %s | labd images import - %s", ref, dataArg)
			if name := bootstrapNameFor(ref); name != "" {
				fix = fmt.Sprintf("make it with: labd images bootstrap %s %s", name, dataArg)
			}
			where := "is not there (without --data labd test has only busybox)"
			if from != "" {
				where = from + " does not have"
			}
			out = append(out, fmt.Sprintf("labd test: lab %s needs the image %s, which %s: %s", lab.ID, ref, where, fix))
		}
	}
	return out
}

// hostShellWarning says, when the learner's shell image is missing, that
// solution.sh will run in this machine's shell: its docker CLI (and every
// other program) is the host's, whose output can differ from what the
// learner's shell prints.
func hostShellWarning(st *image.Store, from string) string {
	base, err := st.View(image.BaseView)
	if err == nil {
		if _, err := base.Resolve(image.SandboxTag); err == nil {
			return ""
		}
	}
	dataArg := "--data DIR (and pass labd test the same --data)"
	if from != "" {
		dataArg = "--data " + from
	}
	return fmt.Sprintf("labd test: warning: no %s among the base images: solution.sh runs in this machine's shell with its docker CLI, not the learner's; make it with: labd images bootstrap sandbox %s", image.SandboxTag, dataArg)
}

// bootstrapNameFor is the `labd images bootstrap` image that makes ref,
// "" when none does.
func bootstrapNameFor(ref string) string {
	want := fullRef(ref)
	for _, name := range bootstrapOrder {
		for _, t := range bootstrapTags(name) {
			if fullRef(t) == want {
				return name
			}
		}
	}
	return ""
}

// fullRef is ref with its defaults spelled out (docker.io/library/busybox:latest).
func fullRef(ref string) string {
	n, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return ref
	}
	return reference.TagNameOnly(n).String()
}

// baseImages fills the test store's base images: a copy of those in
// from's store when given, else busybox bootstrapped from Debian's
// busybox-static. from's store is opened read-only and unlocked: labd
// serve may be running on it, and the copy must neither wait for serve
// nor sweep its staging files (image.Open would).
func baseImages(ctx context.Context, st *image.Store, from string, stderr io.Writer) error {
	dst, err := st.View(image.BaseView)
	if err != nil {
		return err
	}
	if from == "" {
		if _, err := image.BootstrapBusybox(ctx, st); err != nil {
			return fmt.Errorf("bootstrap busybox: %w", err)
		}
		return nil
	}
	src, err := image.OpenReadOnly(filepath.Join(from, "engine"))
	if err != nil {
		return fmt.Errorf("base images of %s: %w", from, err)
	}
	sv, err := src.View(image.BaseView)
	if err != nil {
		return err
	}
	var refs []string
	for ref := range sv.Tags() {
		refs = append(refs, ref)
	}
	if len(refs) == 0 {
		if _, err := image.BootstrapBusybox(ctx, st); err != nil {
			return fmt.Errorf("bootstrap busybox: %w", err)
		}
		return nil
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(sv.Save(ctx, refs, pw)) }()
	if err := dst.Load(ctx, pr, func(string) {}); err != nil {
		return fmt.Errorf("copy base images from %s: %w", from, err)
	}
	fmt.Fprintf(stderr, "labd test: %d base images from %s\n", len(refs), from)
	return nil
}
