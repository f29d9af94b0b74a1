package main

import (
	"flag"
	"os"
	"strings"
	"unicode"

	"github.com/labd/labd/sandbox/engine/distribution"
)

// engineRegistryFlags are the engine's registry client settings: Docker
// Hub's names go to the classroom registry (--registry-addr) unless
// --hub-upstream names a real one. The engine contacts those two and the
// --allowed-registry ones, no other registry.
type engineRegistryFlags struct {
	reg         *registryFlags
	hubUpstream string
	insecure    []string
	allowed     []string
}

func addEngineRegistryFlags(fs *flag.FlagSet, reg *registryFlags) *engineRegistryFlags {
	f := &engineRegistryFlags{reg: reg}
	fs.StringVar(&f.hubUpstream, "hub-upstream", envDefault("LABD_HUB_UPSTREAM", ""), `registry that takes Docker Hub's names (e.g. registry-1.docker.io) instead of the classroom registry (env LABD_HUB_UPSTREAM)`)
	fs.Func("insecure-registry", "registry (host:port or CIDR) the engine may reach over plain HTTP, as dockerd's flag; loopback always may (repeatable)", func(s string) error {
		f.insecure = append(f.insecure, strings.TrimSpace(s))
		return nil
	})
	// The environment's entries come first; a bad one stops the engine
	// at start (distribution.New says which).
	f.allowed = strings.FieldsFunc(os.Getenv("LABD_ALLOWED_REGISTRIES"), func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
	fs.Func("allowed-registry", "another registry (host[:port]) the engine may reach, beside the classroom registry and --hub-upstream; every other registry is refused (repeatable; env LABD_ALLOWED_REGISTRIES, comma-separated, adds to them)", func(s string) error {
		r, err := distribution.NormalizeRegistry(strings.TrimSpace(s))
		if err != nil {
			return err
		}
		f.allowed = append(f.allowed, r)
		return nil
	})
	return f
}

func (f *engineRegistryFlags) options() distribution.Options {
	o := distribution.Options{HubUpstream: f.hubUpstream, InsecureRegistries: f.insecure, AllowedRegistries: f.allowed}
	if f.reg != nil && f.reg.addr != "" && f.reg.addr != "off" {
		o.HubStandIn = f.reg.addr
	}
	return o
}
