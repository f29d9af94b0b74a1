package main

import (
	"context"
	"flag"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestAllowedRegistryFlag: --allowed-registry (repeatable) and
// LABD_ALLOWED_REGISTRIES reach the engine's options normalised; a value
// that is not host[:port] stops the command, naming the flag.
func TestAllowedRegistryFlag(t *testing.T) {
	tests := []struct {
		name string
		env  string
		args []string
		want []string
		err  string
	}{
		{name: "none", want: nil},
		{name: "flags", args: []string{"--allowed-registry", "Reg.Example:05000", "--allowed-registry", "[::ffff:127.0.0.1]:5001"}, want: []string{"reg.example:5000", "127.0.0.1:5001"}},
		{name: "environment", env: "reg.a:5000, reg.b\nreg.c", want: []string{"reg.a:5000", "reg.b", "reg.c"}},
		{name: "environment and flags", env: "reg.a", args: []string{"--allowed-registry", "reg.b"}, want: []string{"reg.a", "reg.b"}},
		{name: "a URL", args: []string{"--allowed-registry", "https://reg.example"}, err: `invalid value "https://reg.example" for flag -allowed-registry: "https://reg.example" is not a registry address: want host[:port]`},
		{name: "a numeric host", args: []string{"--allowed-registry", "127.1:5000"}, err: "-allowed-registry: \"127.1:5000\" is not a registry address: \"127.1\" is not a canonical IP address"},
		{name: "a bad port", args: []string{"--allowed-registry", "reg:x"}, err: "-allowed-registry: \"reg:x\" is not a registry address: bad port"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("LABD_ALLOWED_REGISTRIES", tc.env)
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			rf := addRegistryFlags(fs)
			ef := addEngineRegistryFlags(fs, rf)
			err := fs.Parse(tc.args)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("parse %q = %v; want an error containing %q", tc.args, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := ef.options().AllowedRegistries; !slices.Equal(got, tc.want) {
				t.Errorf("AllowedRegistries = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestEngineRefusesBadAllowedRegistries: a LABD_ALLOWED_REGISTRIES entry
// that is not host[:port] stops labd engine at start, saying which.
func TestEngineRefusesBadAllowedRegistries(t *testing.T) {
	t.Setenv("LABD_ALLOWED_REGISTRIES", "reg.example:5000,https://reg.example")
	dir := t.TempDir()
	err := runEngine(context.Background(), []string{"--data", dir, "--socket", filepath.Join(dir, "e.sock"), "--registry-addr", "off", "--no-runtime"}, io.Discard, io.Discard)
	want := `allowed registry (--allowed-registry, LABD_ALLOWED_REGISTRIES): "https://reg.example" is not a registry address: want host[:port]`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("labd engine = %v; want an error containing %q", err, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "e.sock")); !os.IsNotExist(err) {
		t.Errorf("the engine socket exists after the refusal: %v", err)
	}
}
