package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/labd/labd/sandbox/engine/image"
)

func init() {
	register("images", command{
		summary: "manage the shared base images (import, bootstrap busybox, ls)",
		run:     runImages,
	})
}

const imagesUsage = `usage:
  labd images import FILE [--data DIR]        load a docker-save or OCI-layout tar into the base images
  labd images bootstrap busybox [--data DIR]  build busybox:latest from Debian's busybox-static
  labd images ls [--data DIR]                 list the base images' tags`

func runImages(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, imagesUsage)
		return exitError{code: 2}
	}
	sub, rest := args[0], args[1:]
	fs := flag.NewFlagSet("labd images "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", envDefault("LABD_DATA", defaultDataDir), "state directory (env LABD_DATA)")
	// Accept flags before and after the positional arguments.
	var pos []string
	for {
		if err := fs.Parse(rest); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		rest = fs.Args()[1:]
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
		s, err := openStore()
		if err != nil {
			return err
		}
		f, err := os.Open(pos[0])
		if err != nil {
			return fmt.Errorf("import: %w", err)
		}
		defer f.Close()
		base, err := s.View(image.BaseView)
		if err != nil {
			return err
		}
		return base.Load(ctx, f, func(line string) { fmt.Fprint(stdout, line) })
	case "bootstrap":
		if len(pos) != 1 || pos[0] != "busybox" {
			fmt.Fprintln(stderr, "labd images bootstrap: known images: busybox")
			return exitError{code: 2}
		}
		s, err := openStore()
		if err != nil {
			return err
		}
		id, err := image.BootstrapBusybox(ctx, s)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "busybox:latest %s\n", id)
		return nil
	case "ls":
		if len(pos) != 0 {
			fmt.Fprintln(stderr, imagesUsage)
			return exitError{code: 2}
		}
		s, err := openStore()
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
	fmt.Fprintln(tw, "TAG\tIMAGE ID\tCREATED\tSIZE")
	for _, n := range names {
		info, err := v.Image(tags[n])
		if err != nil {
			if errors.Is(err, image.ErrNotFound) {
				continue
			}
			return err
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.1fMB\n", n, info.ID.Encoded()[:12], info.Created.Format(time.RFC3339), float64(info.Size)/1e6)
	}
	return tw.Flush()
}
