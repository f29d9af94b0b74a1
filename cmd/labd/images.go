package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/labd/labd/sandbox/engine"
	"github.com/labd/labd/sandbox/engine/distribution"
	"github.com/labd/labd/sandbox/engine/image"
)

func init() {
	register("images", command{
		summary: "manage the shared base images (import, bootstrap busybox, ls)",
		run:     runImages,
	})
}

const imagesUsage = `usage:
  labd images import FILE|- [--data DIR]      load a docker-save or OCI-layout tar (- reads it from stdin,
                                              e.g. docker save python:3.11-slim | labd images import -)
                                              into the base images
  labd images bootstrap busybox|python|sandbox|all [--force] [--data DIR]
        [--hub-upstream REGISTRY] [--insecure-registry HOST] [--source auto|pull|standin]
                                              make the base images: with --hub-upstream (env
                                              LABD_HUB_UPSTREAM, e.g. registry-1.docker.io or a mirror)
                                              pull the official busybox:latest and python:3.11-slim;
                                              without it, or when the pull fails, build stand-ins
                                              locally: busybox:latest from Debian's busybox-static;
                                              python:3.11-slim (also python:3) from Debian packages
                                              (mmdebstrap); labd/sandbox:latest is always built
                                              locally; --source pull|standin forces one way (env
                                              LABD_BOOTSTRAP_SOURCE); images present are kept unless
                                              --force
  labd images ls [--data DIR]                 list the base images' tags and where each came from
                                              (pulled official image with its digest, local stand-in,
                                              imported)`

func runImages(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, imagesUsage)
		return exitError{code: 2}
	}
	sub, rest := args[0], args[1:]
	fs := flag.NewFlagSet("labd images "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", envDefault("LABD_DATA", defaultDataDir), "state directory (env LABD_DATA)")
	force := fs.Bool("force", false, "bootstrap: rebuild images already present")
	var upstream *engineRegistryFlags
	var source *imageSource
	if sub == "bootstrap" {
		upstream = addEngineRegistryFlags(fs, nil)
		var err error
		if source, err = addSourceFlag(fs, "source"); err != nil {
			return err
		}
	}
	// Accept flags before and after the positional arguments.
	pos, err := parseInterspersed(fs, rest)
	if err != nil {
		return err
	}
	openStore := func() (*image.Store, error) {
		return image.Open(filepath.Join(*data, "engine"))
	}
	switch sub {
	case "import":
		if len(pos) != 1 {
			fmt.Fprintln(stderr, imagesUsage)
			return exitError{code: 2}
		}
		var in io.Reader = os.Stdin
		if pos[0] != "-" {
			f, err := os.Open(pos[0])
			if err != nil {
				return fmt.Errorf("import: %w", err)
			}
			defer f.Close()
			in = f
		}
		release, err := lockImages(*data, "labd images import")
		if err != nil {
			return err
		}
		defer release()
		s, err := openStore()
		if err != nil {
			return err
		}
		base, err := s.View(image.BaseView)
		if err != nil {
			return err
		}
		return base.Load(ctx, in, func(line string) { fmt.Fprint(stdout, line) })
	case "bootstrap":
		if len(pos) != 1 || !knownBootstrap(pos[0]) {
			fmt.Fprintln(stderr, "labd images bootstrap: known images: busybox, python, sandbox, all")
			return exitError{code: 2}
		}
		release, err := lockImages(*data, "labd images bootstrap")
		if err != nil {
			return err
		}
		defer release()
		s, err := openStore()
		if err != nil {
			return err
		}
		m := &baseImageMaker{store: s, source: *source}
		if opts := upstream.options(); opts.HubUpstream != "" {
			// Only Docker Hub's names are pulled: no stand-in registry.
			if m.dist, err = distribution.New(s, opts, engine.Version); err != nil {
				return err
			}
			defer m.dist.Close()
		}
		return bootstrapImages(ctx, m, pos[0], *force, func(line string) { fmt.Fprintln(stdout, line) })
	case "ls":
		if len(pos) != 0 {
			fmt.Fprintln(stderr, imagesUsage)
			return exitError{code: 2}
		}
		// Read-only and unlocked: it works beside labd serve and leaves
		// serve's staging files alone.
		s, err := image.OpenReadOnly(filepath.Join(*data, "engine"))
		if err != nil {
			return err
		}
		base, err := s.View(image.BaseView)
		if err != nil {
			return err
		}
		return listImages(stdout, base)
	default:
		fmt.Fprintln(stderr, imagesUsage)
		return exitError{code: 2}
	}
}

func listImages(w io.Writer, v *image.View) error {
	tags := v.Tags()
	names := make([]string, 0, len(tags))
	for t := range tags {
		names = append(names, t)
	}
	sort.Strings(names)
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "TAG\tIMAGE ID\tCREATED\tSIZE\tSOURCE")
	for _, n := range names {
		info, err := v.Image(tags[n])
		if err != nil {
			if errors.Is(err, image.ErrNotFound) {
				continue
			}
			return err
		}
		o, rd := originOf(v, tags[n], n)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.1fMB\t%s\n", n, info.ID.Encoded()[:12], info.Created.Format(time.RFC3339), float64(info.Size)/1e6, describeOrigin(o, rd))
	}
	return tw.Flush()
}

// bootstrapImages makes the named image (or all of them) into the base
// view, reporting progress line by line.
func bootstrapImages(ctx context.Context, m *baseImageMaker, which string, force bool, progress func(string)) error {
	names := []string{which}
	if which == "all" {
		names = bootstrapOrder
	}
	for _, n := range names {
		start := time.Now()
		made, err := m.make(ctx, n, force, progress)
		if err != nil {
			return err
		}
		if !made.Present {
			attrs := append([]any{"image", n, "id", made.ID.Encoded()[:12], "elapsed", time.Since(start).Round(time.Millisecond)}, originAttrs(made.Origin, made.RepoDigest)...)
			slog.Info("base image ready", attrs...)
		}
	}
	return nil
}
