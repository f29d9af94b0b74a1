package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/labd/labd/sandbox/engine"
	"github.com/labd/labd/sandbox/engine/api"
)

func init() {
	register("engine", command{
		summary: "serve the embedded Docker engine alone on a unix socket",
		run:     runEngine,
	})
}

func runEngine(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("labd engine", flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := fs.String("socket", envDefault("LABD_ENGINE_SOCKET", "/run/labd-engine.sock"), "unix socket to serve the Docker Engine API on (env LABD_ENGINE_SOCKET)")
	data := fs.String("data", envDefault("LABD_DATA", defaultDataDir), "state directory (env LABD_DATA)")
	maxContext := fs.Int64("max-context", api.DefaultMaxContextSize, "largest build context accepted, in bytes")
	noRuntime := fs.Bool("no-runtime", false, "run without a container runtime (RUN steps fail)")
	userns := fs.Bool("userns", envDefault("LABD_USERNS", "0") == "1", "run containers and build steps in a user namespace, root mapped to an unprivileged host uid range, as learners' engines in labd serve do (env LABD_USERNS=1)")
	cgroupParent := fs.String("cgroup-parent", envDefault("LABD_CGROUP_PARENT", "labd"), "parent cgroup of every container, as dockerd's --cgroup-parent (env LABD_CGROUP_PARENT)")
	regFlags := addRegistryFlags(fs)
	engRegFlags := addEngineRegistryFlags(fs, regFlags)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	log := slog.Default()
	// Before anything in DATA is touched: opening the store sweeps its
	// staging files, which are another process's while that one runs.
	unlockImages, err := lockImages(*data, "labd engine")
	if err != nil {
		return err
	}
	defer unlockImages()
	// The registry first: the engine's Hub stand-in needs its actual address.
	_, _, stopRegistry, err := startRegistry(*data, regFlags, log)
	if err != nil {
		return err
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := stopRegistry(rctx); err != nil {
			log.Warn("registry shutdown", "err", err)
		}
	}()
	eng, err := engine.Open(*data, engine.SharedOptions{NoRuntime: *noRuntime, CgroupParent: *cgroupParent, UserNS: usernsOptions(*userns), Logger: log, Registry: engRegFlags.options()})
	if err != nil {
		return err
	}
	h := api.New(eng, api.Options{
		Version:        engine.Version,
		MaxContextSize: *maxContext,
		TempDir:        filepath.Join(*data, "engine", "tmp"),
		Logger:         log,
	})
	srv, err := api.ServeUnix(*socket, h)
	if err != nil {
		return errors.Join(err, eng.Close(context.Background()))
	}
	log.Info("engine serving", "socket", *socket, "data", *data)
	var serveErr error
	select {
	case serveErr = <-srv.Done():
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// The containers are killed (reported exited at the next start, as
	// after a dockerd restart) and the network's ports and netns released.
	err = errors.Join(serveErr, srv.Close(sctx), eng.Close(sctx))
	eng.Shared().Close()
	return err
}

// usernsOptions turns the --userns flag into the engine's option (the
// pool's defaults: package idrange).
func usernsOptions(on bool) *engine.UserNSOptions {
	if !on {
		return nil
	}
	return &engine.UserNSOptions{}
}
