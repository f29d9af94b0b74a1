package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/labd/labd/sandbox/engine/api"
)

// The /networks API: the engine has dockerd's three predefined networks
// and no others. bridge is the engine's bridge (when it has one), host is
// listed but refused at create, none is a netns with only lo.

// networksSince stands for the networks' creation time: they exist as
// long as the engine does.
var networksSince = time.Now().UTC()

// networkID is a stable 64-hex ID for a predefined network of the view.
func (e *Engine) networkID(name string) string {
	if name == "bridge" {
		if n, ok := e.net.(interface{ ID() string }); ok && n.ID() != "" {
			return n.ID()
		}
	}
	sum := sha256.Sum256([]byte("labd network " + e.name + " " + name))
	return hex.EncodeToString(sum[:])
}

func (e *Engine) networkNames() []string {
	if e.net != nil {
		return []string{"bridge", "host", "none"}
	}
	return []string{"host", "none"}
}

func (e *Engine) network(name string) network.Inspect {
	n := network.Inspect{
		Name: name, ID: e.networkID(name), Created: networksSince, Scope: "local",
		IPAM:       network.IPAM{Driver: "default", Config: []network.IPAMConfig{}},
		Containers: map[string]network.EndpointResource{},
		Options:    map[string]string{},
		Labels:     map[string]string{},
	}
	switch name {
	case "bridge":
		n.Driver = "bridge"
		n.Options = map[string]string{
			"com.docker.network.bridge.default_bridge":       "true",
			"com.docker.network.bridge.enable_icc":           "true",
			"com.docker.network.bridge.enable_ip_masquerade": "true",
			"com.docker.network.bridge.host_binding_ipv4":    "0.0.0.0",
			"com.docker.network.bridge.name":                 "docker0",
			"com.docker.network.driver.mtu":                  "1500",
		}
		if sn, ok := e.net.(interface {
			Subnet() netip.Prefix
			Gateway() netip.Addr
		}); ok {
			n.IPAM.Config = []network.IPAMConfig{{Subnet: sn.Subnet().String(), Gateway: sn.Gateway().String()}}
		}
	case "host":
		n.Driver = "host"
	case "none":
		n.Driver = "null"
	}
	for _, c := range e.ctrs.All() {
		c.Lock()
		mode := string(c.HostConfig.NetworkMode)
		if mode == "default" || mode == "" {
			mode = "bridge"
		}
		if c.Meta.State.Running && mode == name {
			r := network.EndpointResource{Name: c.Name()}
			if ep := c.Endpoint; ep != nil {
				r.EndpointID = ep.EndpointID
				r.MacAddress = ep.MacAddress.String()
				r.IPv4Address = fmt.Sprintf("%s/%d", ep.IP, ep.PrefixLen)
			}
			n.Containers[c.Meta.ID] = r
		}
		c.Unlock()
	}
	return n
}

var networkFilters = map[string]bool{"dangling": true, "driver": true, "id": true, "label": true, "name": true, "scope": true, "type": true}

// NetworkList implements api.NetworkBackend.
func (e *Engine) NetworkList(ctx context.Context, f filters.Args) ([]network.Summary, error) {
	if err := f.Validate(networkFilters); err != nil {
		return nil, api.InvalidParameterError(err)
	}
	for _, t := range f.Get("type") {
		if t != "custom" && t != "builtin" {
			return nil, api.InvalidParameterError(fmt.Errorf("invalid filter: 'type'='%s'", t))
		}
	}
	out := []network.Summary{}
	for _, name := range e.networkNames() {
		n := e.network(name)
		switch {
		case f.Contains("name") && !f.Match("name", n.Name),
			f.Contains("id") && !f.Match("id", n.ID),
			f.Contains("driver") && !f.ExactMatch("driver", n.Driver),
			f.Contains("scope") && !f.ExactMatch("scope", n.Scope),
			f.Contains("label") && !f.MatchKVList("label", n.Labels),
			f.Contains("type") && !f.ExactMatch("type", "builtin"):
			continue
		}
		if f.Contains("dangling") {
			if d, err := f.GetBoolOrDefault("dangling", false); err != nil {
				return nil, api.InvalidParameterError(err)
			} else if d {
				continue // predefined networks are never dangling
			}
		}
		// dockerd's list leaves Containers empty; inspect fills them.
		n.Containers = map[string]network.EndpointResource{}
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

type noSuchNetwork string

func (n noSuchNetwork) Error() string { return "network " + string(n) + " not found" }
func (noSuchNetwork) NotFound()       {}

func (e *Engine) findNetwork(ref string) (string, error) {
	var byPrefix []string
	for _, name := range e.networkNames() {
		id := e.networkID(name)
		if ref == name || ref == id {
			return name, nil
		}
		if ref != "" && strings.HasPrefix(id, ref) {
			byPrefix = append(byPrefix, name)
		}
	}
	if len(byPrefix) == 1 {
		return byPrefix[0], nil
	}
	if len(byPrefix) > 1 {
		return "", api.InvalidParameterError(fmt.Errorf("network %s is ambiguous (%d matches found based on ID prefix)", ref, len(byPrefix)))
	}
	return "", noSuchNetwork(ref)
}

// NetworkInspect implements api.NetworkBackend.
func (e *Engine) NetworkInspect(ctx context.Context, ref string) (*network.Inspect, error) {
	name, err := e.findNetwork(ref)
	if err != nil {
		return nil, err
	}
	n := e.network(name)
	return &n, nil
}

// NetworksPrune implements api.NetworkBackend: predefined networks are
// never pruned, and there are no others.
func (e *Engine) NetworksPrune(ctx context.Context, f filters.Args) (*network.PruneReport, error) {
	if err := f.Validate(map[string]bool{"until": true, "label": true, "label!": true}); err != nil {
		return nil, api.InvalidParameterError(err)
	}
	return &network.PruneReport{}, nil
}

// NetworkRefuse implements api.NetworkBackend.
func (e *Engine) NetworkRefuse(ctx context.Context, op, ref string) error {
	switch op {
	case "create":
		return api.ForbiddenError(errors.New("network create is not supported by this engine: containers use the default bridge network"))
	case "remove":
		name, err := e.findNetwork(ref)
		if err != nil {
			return err
		}
		return api.ForbiddenError(fmt.Errorf("%s is a pre-defined network and cannot be removed", name))
	}
	if _, err := e.findNetwork(ref); err != nil {
		return err
	}
	return api.ForbiddenError(fmt.Errorf("network %s is not supported by this engine", op))
}
