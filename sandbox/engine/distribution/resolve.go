package distribution

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/distribution/reference"
)

// Options configure where names go and which registries may be reached
// over plain HTTP.
type Options struct {
	// HubStandIn is the registry (host:port) that takes Docker Hub's names
	// (alice/app, docker.io/library/busybox), e.g. the classroom registry.
	HubStandIn string
	// HubUpstream, when set, takes Docker Hub's names instead of HubStandIn
	// (e.g. "registry-1.docker.io" or a mirror).
	HubUpstream string
	// InsecureRegistries may be reached over HTTP (hosts or CIDRs), as
	// dockerd's --insecure-registry; loopback registries always may.
	InsecureRegistries []string
	// AllowedRegistries (host[:port]) may be reached beside HubStandIn and
	// the registry of Docker Hub's names (labd's --allowed-registry). No
	// other registry is ever contacted (allow.go).
	AllowedRegistries []string
}

// DefaultHub is where Docker Hub's names go when neither HubUpstream nor
// HubStandIn is set.
const DefaultHub = "registry-1.docker.io"

const dockerHubDomain = "docker.io"

// Repo is a repository resolved to the registry that serves it.
type Repo struct {
	Named reference.Named // the name as Docker shows it (docker.io/alice/app)
	Host  string          // registry host[:port] to contact
	Path  string          // repository path at that registry (alice/app, library/busybox)
}

// Scope is the token scope for actions ("pull" or "pull,push").
func (r Repo) Scope(actions string) string { return "repository:" + r.Path + ":" + actions }

func (o Options) hubHost() string {
	switch {
	case o.HubUpstream != "":
		return o.HubUpstream
	case o.HubStandIn != "":
		return o.HubStandIn
	}
	return DefaultHub
}

// Resolve maps a normalised name to its registry.
func (o Options) Resolve(named reference.Named) Repo {
	host := reference.Domain(named)
	if host == dockerHubDomain {
		host = o.hubHost()
	}
	return Repo{Named: reference.TrimNamed(named), Host: host, Path: reference.Path(named)}
}

// LoginHost maps a login server address (the CLI sends
// "https://index.docker.io/v1/" for Docker Hub, else host[:port]) to the
// registry to check credentials against.
func (o Options) LoginHost(server string) (string, error) {
	s := strings.TrimSpace(server)
	if s == "" {
		return o.hubHost(), nil
	}
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			return "", fmt.Errorf("unable to parse server address: %w", err)
		}
		s = u.Host
	} else {
		s, _, _ = strings.Cut(s, "/")
	}
	if s == "" {
		return "", errors.New("unable to parse server address: no host")
	}
	switch s {
	case "docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com":
		return o.hubHost(), nil
	}
	return s, nil
}

// insecure reports whether host may be reached over plain HTTP: loopback
// and configured insecure registries, as dockerd's defaults.
func (o Options) insecure(host string) bool {
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	if ip != nil && ip.IsLoopback() {
		return true
	}
	for _, e := range o.InsecureRegistries {
		if e == host || e == h {
			return true
		}
		if _, n, err := net.ParseCIDR(e); err == nil && ip != nil && n.Contains(ip) {
			return true
		}
	}
	return false
}
