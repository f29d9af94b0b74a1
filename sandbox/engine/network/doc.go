// Package network is the embedded engine's container networking: Docker's
// default bridge network, rebuilt so that a learner's containers never
// reach the host's network, labd's data or another learner.
//
// One Network per engine (per sandbox, or the one of a standalone `labd
// engine`):
//
//   - a bridge ("docker0") with the gateway address (first address of the
//     subnet) inside a network namespace: the sandbox's (Options.NetNS), or
//     one New creates under RunDir (NetNSPath; a sandbox's shell can join
//     it). Subnets come from a Pool (172.30.0.0/16 in /24s by default),
//     persisted so two sandboxes never share one.
//   - per container (Attach): a netns bind-mounted at
//     RunDir/netns/c-<id> (runtime.Spec.NetNS), a veth pair (eth0 inside with
//     the next free address, MAC 02:42:<IPv4 bytes>, lo up, default route via
//     the gateway; the other end "veth<7 hex>" on the bridge), and the
//     contents of /etc/hosts, /etc/hostname, /etc/resolv.conf as dockerd
//     writes them (runtime.Spec.Hosts, ResolvConf).
//   - published ports: an in-process proxy per binding, like docker-proxy
//     (accept, dial the container's IP from inside the bridge's netns, two
//     copies with half-close; UDP by client address with a 90 s idle
//     timeout). Listeners live in the "outside" namespace: the bridge's
//     own for a sandbox (`curl localhost:5001` in the learner's shell), labd's
//     own with Options.PublishOnHost for a standalone engine (as dockerd
//     publishes on the host). An empty host IP binds 0.0.0.0 and, where
//     IPv6 works in the outside netns, :: on the same port (dockerd 20.10).
//     -P / HostPort 0 take ephemeral ports from 32768-60999 in dockerd's order.
//
// There is no NAT, no masquerading and no forwarding: ip_forward stays off
// in every namespace this package makes, the bridge's namespace has no link
// to anywhere, so containers reach their bridge, each other, the gateway
// address (the sandbox itself, as a Docker host's docker0 address) and
// nothing else. resolv.conf names 8.8.8.8/8.8.4.4 as dockerd does when the
// host has no usable resolver, but no packet can get there.
//
// Use by the engine (docker run):
//
//	mode, err := network.ParseMode(hc.NetworkMode)   // ErrHostNetwork for "host"
//	binds, err := network.BindingsFromDocker(cfg.ExposedPorts, hc.PortBindings, hc.PublishAllPorts)
//	ep, err := net.Attach(ctx, id, hostname, binds)   // before the process starts
//	spec.NetNS, spec.Hosts, spec.ResolvConf = ep.NetNSPath, ep.Hosts, ep.ResolvConf
//	... inspect: ep.IP, ep.Gateway, ep.PrefixLen, ep.MacAddress, ep.EndpointID,
//	    network.PortMap(cfg.ExposedPorts, ep.Ports); ps: network.APIPorts(...)
//	net.Detach(ctx, id)                               // when the container has stopped
//
// For NetworkMode "none" the engine does not call Attach: the runtime's own
// new netns has only lo, and HostsFile(hostname, netip.Addr{}) gives the
// localhost-only /etc/hosts. A *PortAllocatedError reads "Bind for
// 0.0.0.0:5001 failed: port is already allocated"; dockerd prefixes it with
// "driver failed programming external connectivity on endpoint NAME (EPID): ".
//
// Everything here needs root.
package network
