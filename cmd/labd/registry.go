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
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/docker/go-units"
	"github.com/labd/labd/registry"
	"github.com/labd/labd/registry/accounts"
)

func init() {
	register("registry", command{
		summary: "classroom registry maintenance (gc)",
		run:     runRegistry,
	})
}

// registryFlags are the classroom registry's flags, shared by serve and engine.
type registryFlags struct {
	addr       string
	quota      string
	gcInterval time.Duration
	fs         *flag.FlagSet
}

func addRegistryFlags(fs *flag.FlagSet) *registryFlags {
	f := &registryFlags{fs: fs}
	fs.StringVar(&f.addr, "registry-addr", envDefault("LABD_REGISTRY_ADDR", registry.DefaultAddr), `classroom registry listen address; "" or "off" disables it (env LABD_REGISTRY_ADDR)`)
	fs.StringVar(&f.quota, "registry-quota", envDefault("LABD_REGISTRY_QUOTA", "2GiB"), `disk quota per learner namespace, e.g. 500MiB; "0" or "none" disables (env LABD_REGISTRY_QUOTA)`)
	gc, err := time.ParseDuration(envDefault("LABD_REGISTRY_GC_INTERVAL", "24h"))
	if err != nil {
		gc = registry.DefaultGCInterval
	}
	fs.DurationVar(&f.gcInterval, "registry-gc-interval", gc, "garbage-collect unreferenced blobs this often, when no push is under way; 0 never (env LABD_REGISTRY_GC_INTERVAL)")
	return f
}

// explicit reports whether the address was chosen (flag or environment)
// rather than defaulted.
func (f *registryFlags) explicit() bool {
	if _, ok := os.LookupEnv("LABD_REGISTRY_ADDR"); ok {
		return true
	}
	set := false
	f.fs.Visit(func(fl *flag.Flag) {
		if fl.Name == "registry-addr" {
			set = true
		}
	})
	return set
}

// startRegistry opens DATA/labd.db and serves the classroom registry;
// it returns a nil registry and store when disabled. stop closes both.
// When the default address is taken it serves on a free loopback port;
// an address that was given must bind. Either way f.addr ends up the
// registry's actual address, so call it before the engine's options.
func startRegistry(data string, f *registryFlags, log *slog.Logger) (reg *registry.Registry, store *accounts.Store, stop func(context.Context) error, err error) {
	if f.addr == "" || f.addr == "off" {
		return nil, nil, func(context.Context) error { return nil }, nil
	}
	quota := int64(-1)
	if f.quota != "0" && f.quota != "none" && f.quota != "" {
		quota, err = units.RAMInBytes(f.quota)
		if err != nil || quota <= 0 {
			return nil, nil, nil, fmt.Errorf("--registry-quota %q: want a size like 2GiB", f.quota)
		}
	}
	gc := f.gcInterval
	if gc == 0 {
		gc = -1 // the flag's 0 means never; the option's 0 means the default
	}
	store, err = accounts.Open(context.Background(), filepath.Join(data, "labd.db"), accounts.Options{})
	if err != nil {
		return nil, nil, nil, err
	}
	opts := registry.Options{
		Dir:        filepath.Join(data, "registry"),
		Addr:       f.addr,
		Accounts:   store,
		Quota:      quota,
		GCInterval: gc,
		Logger:     log,
	}
	reg, err = registry.New(opts)
	if err != nil && errors.Is(err, syscall.EADDRINUSE) {
		if f.explicit() {
			store.Close()
			return nil, nil, nil, fmt.Errorf("registry: %s is in use (--registry-addr or LABD_REGISTRY_ADDR); choose a free address, or \"off\"", f.addr)
		}
		// Only the default address: a second labd on this machine (or a
		// test) serves its registry on a free loopback port instead.
		opts.Addr = "127.0.0.1:0"
		reg, err = registry.New(opts)
		if err == nil {
			log.Warn("registry: default address in use, serving on another port", "default", f.addr, "addr", reg.Addr())
		}
	}
	if err != nil {
		store.Close()
		return nil, nil, nil, fmt.Errorf("registry: %w", err)
	}
	// The engine's Docker Hub stand-in (engineRegistryFlags.options, built
	// after this) goes to the address the registry actually has.
	if opts.Addr != f.addr || strings.HasSuffix(f.addr, ":0") {
		f.addr = reg.Addr()
	}
	f.addr = dialAddr(f.addr)
	log.Info("registry serving", "addr", "http://"+reg.Addr(), "token_realm", "http://"+reg.Addr()+registry.TokenPath, "service", registry.DefaultService)
	return reg, store, func(ctx context.Context) error {
		return errors.Join(reg.Close(ctx), store.Close())
	}, nil
}

// dialAddr is the address clients use for a listener bound to addr:
// loopback for a wildcard host.
func dialAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

func runRegistry(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "gc" {
		fmt.Fprintln(stderr, "usage: labd registry gc [--data D] [--delete-untagged] [--dry-run]")
		return exitError{2}
	}
	fs := flag.NewFlagSet("labd registry gc", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", envDefault("LABD_DATA", defaultDataDir), "state directory (env LABD_DATA)")
	untagged := fs.Bool("delete-untagged", false, "also delete manifests that no tag points to")
	dry := fs.Bool("dry-run", false, "only report what would be deleted")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	res, err := registry.GC(ctx, filepath.Join(*data, "registry"), registry.GCOptions{RemoveUntagged: *untagged, DryRun: *dry})
	if errors.Is(err, registry.ErrLocked) {
		return fmt.Errorf("%w: stop labd first (the running server collects on its own schedule, --registry-gc-interval)", err)
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, res)
	return nil
}

// registryAnswers asks the classroom registry's handler for its API root
// (/readyz): 200 or 401 (a token is needed) is a registry that answers.
func registryAnswers(h http.Handler) func(context.Context) error {
	return func(ctx context.Context) error {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequestWithContext(ctx, http.MethodGet, "/v2/", nil))
		if rec.Code != http.StatusOK && rec.Code != http.StatusUnauthorized {
			return fmt.Errorf("GET /v2/ answered %d", rec.Code)
		}
		return nil
	}
}
