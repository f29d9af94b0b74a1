package main

import (
	"flag"
	"strings"

	"github.com/labd/labd/sandbox/engine/distribution"
)

// engineRegistryFlags are the engine's registry client settings: Docker
// Hub's names go to the classroom registry (--registry-addr) unless
// --hub-upstream names a real one.
type engineRegistryFlags struct {
	reg         *registryFlags
	hubUpstream string
	insecure    []string
}

func addEngineRegistryFlags(fs *flag.FlagSet, reg *registryFlags) *engineRegistryFlags {
	f := &engineRegistryFlags{reg: reg}
	fs.StringVar(&f.hubUpstream, "hub-upstream", envDefault("LABD_HUB_UPSTREAM", ""), `registry that takes Docker Hub's names (e.g. registry-1.docker.io) instead of the classroom registry (env LABD_HUB_UPSTREAM)`)
	fs.Func("insecure-registry", "registry (host:port or CIDR) the engine may reach over plain HTTP, as dockerd's flag; loopback always may (repeatable)", func(s string) error {
		f.insecure = append(f.insecure, strings.TrimSpace(s))
		return nil
	})
	return f
}

func (f *engineRegistryFlags) options() distribution.Options {
	o := distribution.Options{HubUpstream: f.hubUpstream, InsecureRegistries: f.insecure}
	if f.reg != nil && f.reg.addr != "" && f.reg.addr != "off" {
		o.HubStandIn = f.reg.addr
	}
	return o
}
