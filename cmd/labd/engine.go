package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
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
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	log := slog.Default()
	eng, err := engine.Open(*data, engine.SharedOptions{NoRuntime: *noRuntime, Logger: log})
	if err != nil {
		return err
	}
	h := api.New(eng, api.Options{
		Version:        engine.Version,
		MaxContextSize: *maxContext,
		TempDir:        filepath.Join(*data, "engine", "tmp"),
		Logger:         log,
	})
	ln, err := listenUnix(*socket)
	if err != nil {
		return err
	}
	defer os.Remove(*socket)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("engine serving", "socket", *socket, "data", *data)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// Builds in flight see their request contexts cancelled and clean up
	// (the RUN container is killed) before Shutdown returns.
	sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	shutdownErr := srv.Shutdown(sctx)
	if errors.Is(shutdownErr, context.DeadlineExceeded) {
		shutdownErr = srv.Close()
	}
	return shutdownErr
}

// listenUnix replaces a stale socket and restricts it to owner and group,
// as dockerd does for /var/run/docker.sock.
func listenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s is in use by another engine", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}
