package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

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
	data := fs.String("data", "", "copy the base images from this state directory, read-only: it may be in use by labd serve (default: bootstrap busybox)")
	verbose := fs.Bool("v", false, "show the solution's output")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: labd test [--lab LAB] [--junit FILE] [--data DIR] CONTENT_DIR")
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
	if problems := labs.Lint(content); len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(stdout, p)
		}
		return fmt.Errorf("%d lint problems; fix them first (labd lint)", len(problems))
	}
	cat := labs.NewCatalog(content)
	var ls []*labs.Lab
	for _, e := range cat.List() {
		if *labID != "" && e.ID != *labID {
			continue
		}
		ls = append(ls, e.Lab)
	}
	if len(ls) == 0 {
		return fmt.Errorf("no lab %q in %s", *labID, content)
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
	if err := baseImages(ctx, shared.Store, *data, stderr); err != nil {
		return err
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
