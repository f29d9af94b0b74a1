package network

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/go-connections/nat"
)

// BindingsFromDocker turns a container's Config.ExposedPorts,
// HostConfig.PortBindings and HostConfig.PublishAllPorts (`-P`) into the
// bindings Attach takes: every HostConfig binding, and with publishAll an
// ephemeral binding on all addresses for each exposed port that has none.
// The result is sorted by container port, then protocol, so ephemeral ports
// are handed out in a stable order.
func BindingsFromDocker(exposed nat.PortSet, bindings nat.PortMap, publishAll bool) ([]PortBinding, error) {
	keys := map[nat.Port]bool{}
	for p := range bindings {
		keys[p] = true
	}
	if publishAll {
		for p := range exposed {
			keys[p] = true
		}
	}
	sorted := make([]nat.Port, 0, len(keys))
	for p := range keys {
		sorted = append(sorted, p)
	}
	nat.Sort(sorted, func(a, b nat.Port) bool {
		if a.Int() != b.Int() {
			return a.Int() < b.Int()
		}
		return a.Proto() < b.Proto()
	})
	var out []PortBinding
	for _, p := range sorted {
		cport, err := strconv.ParseUint(p.Port(), 10, 16)
		if err != nil || cport == 0 {
			return nil, fmt.Errorf("invalid port specification: %q", string(p))
		}
		proto := p.Proto()
		bs := bindings[p]
		if len(bs) == 0 {
			bs = []nat.PortBinding{{}} // -P, or "-p 5000" without a host port
		}
		for _, b := range bs {
			pb := PortBinding{Proto: proto, ContainerPort: uint16(cport)}
			if b.HostIP != "" {
				ip, err := netip.ParseAddr(b.HostIP)
				if err != nil {
					return nil, fmt.Errorf("invalid IP address: %s", b.HostIP)
				}
				pb.HostIP = ip.Unmap()
			}
			if b.HostPort != "" {
				lo, hi, found := strings.Cut(b.HostPort, "-")
				start, err := strconv.ParseUint(lo, 10, 16)
				if err != nil {
					return nil, fmt.Errorf("invalid hostPort: %s", b.HostPort)
				}
				pb.HostPort = uint16(start)
				if found {
					end, err := strconv.ParseUint(hi, 10, 16)
					if err != nil || end < start {
						return nil, fmt.Errorf("invalid hostPort: %s", b.HostPort)
					}
					pb.HostPortEnd = uint16(end)
				}
			}
			out = append(out, pb)
		}
	}
	return out, nil
}

// PortMap is NetworkSettings.Ports of `docker inspect`: each published
// binding under its container port, and exposed ports that are not
// published with a null list.
func PortMap(exposed nat.PortSet, pubs []PublishedPort) nat.PortMap {
	m := nat.PortMap{}
	for p := range exposed {
		m[p] = nil
	}
	for _, pub := range pubs {
		k := nat.Port(fmt.Sprintf("%d/%s", pub.ContainerPort, pub.Proto))
		m[k] = append(m[k], nat.PortBinding{HostIP: pub.HostIP.String(), HostPort: strconv.Itoa(int(pub.HostPort))})
	}
	return m
}

// APIPorts is the Ports list of GET /containers/json (what `docker ps`
// formats): published bindings with IP and PublicPort, exposed ports that are
// not published with only PrivatePort and Type.
func APIPorts(exposed nat.PortSet, pubs []PublishedPort) []container.Port {
	out := []container.Port{}
	published := map[nat.Port]bool{}
	for _, pub := range pubs {
		published[nat.Port(fmt.Sprintf("%d/%s", pub.ContainerPort, pub.Proto))] = true
		out = append(out, container.Port{IP: pub.HostIP.String(), PrivatePort: pub.ContainerPort, PublicPort: pub.HostPort, Type: pub.Proto})
	}
	var rest []nat.Port
	for p := range exposed {
		if !published[p] {
			rest = append(rest, p)
		}
	}
	sort.Slice(rest, func(i, j int) bool { return rest[i] < rest[j] })
	for _, p := range rest {
		out = append(out, container.Port{PrivatePort: uint16(p.Int()), Type: p.Proto()})
	}
	return out
}
