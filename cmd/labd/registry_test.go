package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/labd/labd/registry"
)

// occupyDefaultRegistryAddr holds 127.0.0.1:5000 for the test (if
// something else already holds it, it is just as busy) and clears
// LABD_REGISTRY_ADDR so that the address counts as defaulted.
func occupyDefaultRegistryAddr(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", registry.DefaultAddr)
	switch {
	case err == nil:
		t.Cleanup(func() { ln.Close() })
	case !errors.Is(err, syscall.EADDRINUSE):
		t.Fatalf("occupy %s: %v", registry.DefaultAddr, err)
	}
	t.Setenv("LABD_REGISTRY_ADDR", "")
	os.Unsetenv("LABD_REGISTRY_ADDR")
}

// wantRegistryAt checks that a registry (not the test's listener) answers
// at addr: the token challenge of /v2/.
func wantRegistryAt(t *testing.T, addr string) {
	t.Helper()
	c := &http.Client{Timeout: 20 * time.Second}
	resp, err := c.Get("http://" + addr + "/v2/")
	if err != nil {
		t.Fatalf("GET %s/v2/: %v", addr, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), registry.TokenPath) {
		t.Errorf("GET %s/v2/ = %s, WWW-Authenticate %q; want the registry's token challenge", addr, resp.Status, resp.Header.Get("WWW-Authenticate"))
	}
}

func TestStartRegistryAddrBusy(t *testing.T) {
	occupyDefaultRegistryAddr(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	parse := func(args ...string) (*registryFlags, *engineRegistryFlags) {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		rf := addRegistryFlags(fs)
		ef := addEngineRegistryFlags(fs, rf)
		if err := fs.Parse(append([]string{"--registry-gc-interval", "0"}, args...)); err != nil {
			t.Fatal(err)
		}
		return rf, ef
	}

	// Defaulted: another loopback port, and the Hub stand-in follows it.
	rf, ef := parse()
	reg, _, stop, err := startRegistry(t.TempDir(), rf, log)
	if err != nil {
		t.Fatalf("startRegistry with the default address busy: %v", err)
	}
	defer stop(context.Background())
	if reg == nil || reg.Addr() == registry.DefaultAddr || !strings.HasPrefix(reg.Addr(), "127.0.0.1:") {
		t.Fatalf("registry address = %v; want another loopback port", reg)
	}
	if got := ef.options().HubStandIn; got != reg.Addr() {
		t.Errorf("engine Hub stand-in = %q; want the registry's address %q", got, reg.Addr())
	}
	wantRegistryAt(t, reg.Addr())

	// Given, by flag or environment: a clear error, no registry.
	rf, _ = parse("--registry-addr", registry.DefaultAddr)
	if _, _, _, err := startRegistry(t.TempDir(), rf, log); err == nil || !strings.Contains(err.Error(), registry.DefaultAddr+" is in use") {
		t.Errorf("startRegistry --registry-addr %s (busy) = %v; want an error saying it is in use", registry.DefaultAddr, err)
	}
	t.Setenv("LABD_REGISTRY_ADDR", registry.DefaultAddr)
	rf, _ = parse()
	if _, _, _, err := startRegistry(t.TempDir(), rf, log); err == nil || !strings.Contains(err.Error(), "is in use") {
		t.Errorf("startRegistry with LABD_REGISTRY_ADDR busy = %v; want an error", err)
	}
}

var (
	registryServingRE = regexp.MustCompile(`msg="registry serving" addr=http://(\S+)`)
	hubStandInRE      = regexp.MustCompile(`msg="engine registry" hub_stand_in=(\S+)`)
)

// TestServeRegistryAddrBusy: labd serve with the default registry address
// taken serves the registry on another loopback port and points the
// engine's Docker Hub stand-in there; with the address given, it refuses
// to start.
func TestServeRegistryAddrBusy(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("labd serve's engine needs root (namespaces, overlay mounts)")
	}
	occupyDefaultRegistryAddr(t)
	content := t.TempDir()
	if err := os.Mkdir(filepath.Join(content, "hello"), 0o755); err != nil {
		t.Fatal(err)
	}
	md := "---\ntitle: Hello\nsummary: S\nduration: 5 min\nlevel: beginner\n---\nIntro.\n\n## Step\n\nText.\n"
	if err := os.WriteFile(filepath.Join(content, "hello", "lab.md"), []byte(md), 0o644); err != nil {
		t.Fatal(err)
	}
	serve := func(extra ...string) (*syncBuffer, chan error, context.CancelFunc) {
		ctx, cancel := context.WithCancel(context.Background())
		logs := &syncBuffer{}
		done := make(chan error, 1)
		args := append([]string{"--addr", "127.0.0.1:0", "--content", content, "--data", t.TempDir(),
			"--bootstrap", "none", "--registry-gc-interval", "0"}, extra...)
		go func() { done <- runServe(ctx, args, io.Discard, logs) }()
		return logs, done, cancel
	}

	logs, done, cancel := serve()
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(logs.String(), `msg="labd serving"`) {
		select {
		case err := <-done:
			cancel()
			t.Fatalf("labd serve ended before serving: %v\n%s", err, logs)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("labd serve did not serve within 60 s:\n%s", logs)
		}
	}
	out := logs.String()
	reg, hub := registryServingRE.FindStringSubmatch(out), hubStandInRE.FindStringSubmatch(out)
	if reg == nil || hub == nil {
		t.Errorf("no registry or engine registry line in the log:\n%s", out)
	} else {
		if reg[1] == registry.DefaultAddr || hub[1] != reg[1] {
			t.Errorf("registry on %s, engine Hub stand-in %s; want both on the same port other than %s\n%s", reg[1], hub[1], registry.DefaultAddr, out)
		}
		wantRegistryAt(t, reg[1])
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("labd serve: %v", err)
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("labd serve did not stop:\n%s", logs)
	}

	logs, done, cancel = serve("--registry-addr", registry.DefaultAddr)
	defer cancel()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), registry.DefaultAddr+" is in use") {
			t.Errorf("labd serve --registry-addr %s (busy) = %v; want an error saying it is in use", registry.DefaultAddr, err)
		}
		if strings.Contains(logs.String(), `msg="labd serving"`) {
			t.Errorf("labd serve served with its registry address busy:\n%s", logs)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("labd serve --registry-addr (busy) did not fail:\n%s", logs)
	}
}
