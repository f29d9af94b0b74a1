package network

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labd/labd/sandbox/engine/userns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

var (
	// ErrHostNetwork is for callers refusing NetworkMode "host": a
	// learner's container must never share labd's network namespace.
	ErrHostNetwork = errors.New(`network mode "host" is not allowed`)
	// ErrAttached is returned by Attach for a container already attached.
	ErrAttached = errors.New("container already attached")
	// ErrClosed is returned once Close has been called.
	ErrClosed = errors.New("network closed")
	// ErrSubnetFull is returned when every address of the subnet is in use.
	ErrSubnetFull = errors.New("no free address in subnet")
)

// Mode is a container's NetworkMode as labd supports it.
type Mode string

const (
	ModeBridge Mode = "bridge" // the engine's bridge (Docker's "default" too)
	ModeNone   Mode = "none"   // only lo: the runtime's own new netns, no Attach
)

// ParseMode maps HostConfig.NetworkMode to a Mode: "", "default" and
// "bridge" are the bridge; "none" is none; "host" is ErrHostNetwork; any
// other name is dockerd's "network X not found" (user-defined networks and
// container:<id> are not supported).
func ParseMode(s string) (Mode, error) {
	switch s {
	case "", "default", "bridge":
		return ModeBridge, nil
	case "none":
		return ModeNone, nil
	case "host":
		return "", ErrHostNetwork
	}
	if strings.HasPrefix(s, "container:") {
		return "", fmt.Errorf("network mode %q is not supported", s)
	}
	return "", fmt.Errorf("network %s not found", s)
}

// Options configures a Network.
type Options struct {
	// RunDir is this network's own directory (created; on a tmpfs such as
	// /run is best). netns/ in it becomes a shared mount holding the netns
	// bind mounts. Whatever a killed labd left there is swept by New.
	RunDir string
	// Subnet is the bridge's IPv4 subnet (Pool.Allocate gives one); the
	// gateway is its first address, containers get the following ones.
	Subnet netip.Prefix
	// NetNS is the path of an existing network namespace to put the bridge
	// in (a sandbox's). "" creates one at RunDir/netns/bridge, removed by
	// Close; NetNSPath returns it.
	NetNS string
	// PublishOnHost makes published ports listen in the network namespace
	// labd runs in (standalone `labd engine`, as dockerd publishes on the
	// host). Otherwise they listen in the bridge's namespace (a sandbox:
	// `curl localhost:5001` from the learner's shell).
	PublishOnHost bool
	// BridgeName is the bridge device's name; default "docker0".
	BridgeName string
	// MTU of the bridge and veths; default 1500.
	MTU int
	// UserNS is the pinned user namespace of the sandbox's containers
	// (package userns): the bridge's namespace (unless NetNS) and every
	// container's are then owned by it, so container root can mount sysfs
	// and use the network as root does under dockerd. "" owns them by the
	// host's.
	UserNS string
	// PortRange is the ephemeral range for -P and HostPort 0; default
	// 32768-60999 (Linux's ip_local_port_range default, which dockerd reads).
	PortRange [2]uint16
	Logger    *slog.Logger
}

// Network is one engine's bridge network: a bridge in a network namespace,
// the containers attached to it and their published ports. Its methods are
// safe for concurrent use.
type Network struct {
	opts     Options
	id       string
	nsDir    string
	nsPath   string // bridge netns path
	ownNS    bool
	bridgeNS netns.NsHandle
	outNS    netns.NsHandle
	nl       *netlink.Handle // in bridgeNS
	bridge   int             // link index
	gateway  netip.Addr
	ipv6     bool // :: listenable in the outside netns
	log      *slog.Logger

	pending sync.WaitGroup // veth deletions in the background
	ops     sync.WaitGroup // Attach and Detach calls in progress

	mu     sync.Mutex
	closed bool
	ips    map[netip.Addr]string
	ports  portMap
	eps    map[string]*endpoint
}

type endpoint struct {
	Endpoint
	ranges  [][2]uint16 // per Ports entry: where to look again after a failed listen; zero = fixed port
	proxies []*proxy
}

// Endpoint is a container's attachment: what the runtime needs
// (NetNSPath, Hosts, Hostname, ResolvConf) and what inspect shows.
type Endpoint struct {
	ContainerID string
	// NetNSPath is the container's network namespace (a bind mount under
	// RunDir/netns): runtime.Spec.NetNS. It exists until Detach.
	NetNSPath  string
	EndpointID string // 64 hex digits (NetworkSettings.Networks["bridge"].EndpointID)
	IP         netip.Addr
	PrefixLen  int
	Gateway    netip.Addr
	MacAddress net.HardwareAddr // 02:42 + the IPv4 address, as dockerd derives it
	HostVeth   string           // the bridge side of the veth pair ("veth" + 7 hex)
	Ports      []PublishedPort  // in request order; the :: twin right after its 0.0.0.0 binding
	// Hosts, Hostname and ResolvConf are the contents of /etc/hosts,
	// /etc/hostname and /etc/resolv.conf (runtime.Spec.Hosts, ResolvConf).
	Hosts, Hostname, ResolvConf []byte
}

// New sets up the bridge: the namespace (unless Options.NetNS), lo up, the
// bridge device with the gateway address, up.
func New(opts Options) (n *Network, err error) {
	if opts.RunDir == "" {
		return nil, errors.New("new network: no run directory")
	}
	sub := opts.Subnet.Masked()
	if !sub.IsValid() || !sub.Addr().Is4() || sub.Bits() > 30 || sub.Bits() < 8 {
		return nil, fmt.Errorf("new network: subnet %s: want an IPv4 prefix of /8 to /30", opts.Subnet)
	}
	opts.Subnet = sub
	if opts.BridgeName == "" {
		opts.BridgeName = "docker0"
	}
	if opts.MTU == 0 {
		opts.MTU = 1500
	}
	if opts.PortRange == [2]uint16{} {
		opts.PortRange = [2]uint16{32768, 60999}
	}
	if opts.PortRange[0] == 0 || opts.PortRange[0] > opts.PortRange[1] {
		return nil, fmt.Errorf("new network: bad port range %d-%d", opts.PortRange[0], opts.PortRange[1])
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	n = &Network{
		opts:     opts,
		id:       randomHex(32),
		nsDir:    filepath.Join(opts.RunDir, "netns"),
		gateway:  sub.Addr().Next(),
		log:      log,
		bridgeNS: netns.None(),
		outNS:    netns.None(),
		ips:      map[netip.Addr]string{},
		eps:      map[string]*endpoint{},
		ports:    portMap{lo: opts.PortRange[0], hi: opts.PortRange[1], used: map[portKey]map[uint16]bool{}, last: map[portKey]uint16{}},
	}
	defer func() {
		if err != nil {
			n.teardown()
			err = fmt.Errorf("new network in %s: %w", opts.RunDir, err)
		}
	}()
	if err := os.MkdirAll(n.nsDir, 0o700); err != nil {
		return n, err
	}
	if err := sweep(n.nsDir); err != nil {
		return n, err
	}
	if err := makeSharedDir(n.nsDir); err != nil {
		return n, err
	}
	n.nsPath = opts.NetNS
	if n.nsPath == "" {
		n.nsPath = filepath.Join(n.nsDir, "bridge")
		if err := n.newNetNS(n.nsPath); err != nil {
			return n, err
		}
		n.ownNS = true
	}
	if n.bridgeNS, err = netns.GetFromPath(n.nsPath); err != nil {
		return n, fmt.Errorf("open netns %s: %w", n.nsPath, err)
	}
	if opts.PublishOnHost {
		n.outNS, err = currentNetNS()
	} else {
		n.outNS, err = netns.GetFromPath(n.nsPath)
	}
	if err != nil {
		return n, fmt.Errorf("open outside netns: %w", err)
	}
	if n.nl, err = netlink.NewHandleAt(n.bridgeNS); err != nil {
		return n, fmt.Errorf("netlink handle: %w", err)
	}
	if err := n.setupBridge(); err != nil {
		return n, err
	}
	// No routing between the bridge and anything else, whatever the
	// namespace's creator set.
	err = inNetNS(n.bridgeNS, func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("0\n"), 0o644)
	})
	if err != nil {
		return n, fmt.Errorf("turn forwarding off: %w", err)
	}
	n.ipv6 = inNetNS(n.outNS, func() error {
		ln, err := net.Listen("tcp6", "[::1]:0")
		if err == nil {
			ln.Close()
		}
		return err
	}) == nil
	return n, nil
}

// sweep removes the netns bind mounts and files a killed labd left in dir.
func sweep(dir string) error {
	if err := unmountAllUnder(dir); err != nil {
		return err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("sweep %s: %w", dir, err)
	}
	for _, e := range ents {
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("sweep %s: %w", dir, err)
		}
	}
	return nil
}

// currentNetNS opens the namespace labd's threads run in.
func currentNetNS() (netns.NsHandle, error) {
	runtime.LockOSThread() // Get reads the calling thread's netns
	defer runtime.UnlockOSThread()
	return netns.Get()
}

func (n *Network) setupBridge() error {
	lo, err := n.nl.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo: %w", err)
	}
	if err := n.nl.LinkSetUp(lo); err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	// A bridge (and veths) left by a killed labd in a sandbox's netns.
	if old, err := n.nl.LinkByName(n.opts.BridgeName); err == nil {
		links, _ := retryDump(n.nl.LinkList)
		for _, l := range links {
			if l.Type() == "veth" && l.Attrs().MasterIndex == old.Attrs().Index {
				n.nl.LinkDel(l)
			}
		}
		if err := n.nl.LinkDel(old); err != nil {
			return fmt.Errorf("remove stale bridge: %w", err)
		}
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: n.opts.BridgeName, MTU: n.opts.MTU, TxQLen: -1}}
	if err := n.nl.LinkAdd(br); err != nil {
		return fmt.Errorf("add bridge %s: %w", n.opts.BridgeName, err)
	}
	l, err := n.nl.LinkByName(n.opts.BridgeName)
	if err != nil {
		return fmt.Errorf("find bridge: %w", err)
	}
	n.bridge = l.Attrs().Index
	addr := &netlink.Addr{IPNet: ipNet(n.gateway, n.opts.Subnet.Bits())}
	if err := n.nl.AddrAdd(l, addr); err != nil {
		return fmt.Errorf("address bridge: %w", err)
	}
	if err := n.nl.LinkSetUp(l); err != nil {
		return fmt.Errorf("set bridge up: %w", err)
	}
	return nil
}

func ipNet(a netip.Addr, bits int) *net.IPNet {
	return &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(bits, a.BitLen())}
}

func randomHex(nbytes int) string {
	b := make([]byte, nbytes)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func retryDump[T any](f func() (T, error)) (T, error) {
	var v T
	var err error
	for range 10 {
		v, err = f()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, err
}

// ID is the network's ID (64 hex digits, new at each New), for `docker
// network ls` and NetworkSettings.Networks["bridge"].NetworkID.
func (n *Network) ID() string { return n.id }

// Subnet is the bridge's subnet; Gateway its first address (the bridge's).
func (n *Network) Subnet() netip.Prefix { return n.opts.Subnet }
func (n *Network) Gateway() netip.Addr  { return n.gateway }

// BridgeName is the bridge device's name in NetNSPath.
func (n *Network) BridgeName() string { return n.opts.BridgeName }

// NetNSPath is the namespace holding the bridge: Options.NetNS, or the one
// New created (the sandbox network namespace, for the learner's shell).
func (n *Network) NetNSPath() string { return n.nsPath }

// MacAddress is dockerd's MAC for a container address: 02:42 then the four
// bytes of the IPv4 address.
func MacAddress(ip netip.Addr) net.HardwareAddr {
	b := ip.As4()
	return net.HardwareAddr{0x02, 0x42, b[0], b[1], b[2], b[3]}
}

func validID(id string) bool {
	if id == "" || len(id) > 128 || id == "." || id == ".." {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// Attach connects a container: a new network namespace (bind-mounted at
// Endpoint.NetNSPath, for runtime.Spec.NetNS), a veth pair (eth0 inside with
// the next free address, MAC from it, default route via the gateway, lo
// up; the other end on the bridge) and one proxy listener per published
// binding. Either all of it is done or nothing is left. Call it before the
// container's process starts.
func (n *Network) Attach(ctx context.Context, containerID, hostname string, ports []PortBinding) (*Endpoint, error) {
	if !validID(containerID) {
		return nil, fmt.Errorf("attach %q: bad container id", containerID)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("attach %s: %w", containerID, err)
	}
	if !n.begin() {
		return nil, fmt.Errorf("attach %s: %w", containerID, ErrClosed)
	}
	defer n.ops.Done()
	ep := &endpoint{Endpoint: Endpoint{
		ContainerID: containerID,
		NetNSPath:   filepath.Join(n.nsDir, "c-"+containerID),
		EndpointID:  randomHex(32),
		PrefixLen:   n.opts.Subnet.Bits(),
		Gateway:     n.gateway,
		ResolvConf:  ResolvConf(),
		Hostname:    HostnameFile(hostname),
	}}
	if err := n.reserve(ep, ports); err != nil {
		return nil, fmt.Errorf("attach %s: %w", containerID, err)
	}
	ep.MacAddress = MacAddress(ep.IP)
	ep.Hosts = HostsFile(hostname, ep.IP)
	err := n.plumb(ep)
	if err == nil {
		err = n.publish(ep)
	}
	if err != nil {
		n.take(containerID)
		if rerr := n.release(ep); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return nil, fmt.Errorf("attach %s: %w", containerID, err)
	}
	out := ep.Endpoint
	out.Ports = append([]PublishedPort(nil), ep.Ports...)
	return &out, nil
}

// reserve takes the address and the host ports under the lock, so two
// concurrent Attach calls never get the same ones.
func (n *Network) reserve(ep *endpoint, reqs []PortBinding) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.eps[ep.ContainerID]; ok {
		return ErrAttached
	}
	last := lastAddr(n.opts.Subnet)
	for a := n.gateway.Next(); a.Less(last); a = a.Next() {
		if _, used := n.ips[a]; !used {
			ep.IP = a
			break
		}
	}
	if !ep.IP.IsValid() {
		return ErrSubnetFull
	}
	var pubs []PublishedPort
	var ranges [][2]uint16
	undo := func() {
		for _, p := range pubs {
			n.ports.free(portKey{p.Proto, p.HostIP}, p.HostPort)
		}
	}
	for _, r := range reqs {
		proto := r.Proto
		if proto == "" {
			proto = "tcp"
		}
		if proto != "tcp" && proto != "udp" {
			undo()
			return fmt.Errorf("invalid proto %q", r.Proto)
		}
		if r.ContainerPort == 0 {
			undo()
			return errors.New("invalid container port 0")
		}
		hostIP := r.HostIP
		twin := false
		if !hostIP.IsValid() || hostIP == ipv4Any {
			hostIP, twin = ipv4Any, n.ipv6
		}
		k := portKey{proto, hostIP}
		k6 := portKey{proto, ipv6Any}
		free6 := func(p uint16) bool { return !twin || !n.ports.taken(k6, p) }
		var port uint16
		var rng [2]uint16
		switch {
		case r.HostPort == 0:
			rng = [2]uint16{n.ports.lo, n.ports.hi}
			port = n.ports.pick(k, rng[0], rng[1], free6)
		case r.HostPortEnd > r.HostPort:
			rng = [2]uint16{r.HostPort, r.HostPortEnd}
			port = n.ports.pick(k, rng[0], rng[1], free6)
		default:
			if n.ports.taken(k, r.HostPort) {
				undo()
				return &PortAllocatedError{hostIP, r.HostPort}
			}
			if twin && n.ports.taken(k6, r.HostPort) {
				undo()
				return &PortAllocatedError{ipv6Any, r.HostPort}
			}
			port = r.HostPort
		}
		if port == 0 {
			undo()
			return &PortAllocatedError{hostIP, r.HostPort}
		}
		n.ports.take(k, port)
		pubs = append(pubs, PublishedPort{proto, r.ContainerPort, hostIP, port})
		ranges = append(ranges, rng)
		if twin {
			n.ports.take(k6, port)
			pubs = append(pubs, PublishedPort{proto, r.ContainerPort, ipv6Any, port})
			ranges = append(ranges, rng)
		}
	}
	ep.Ports, ep.ranges = pubs, ranges
	n.ips[ep.IP] = ep.ContainerID
	n.eps[ep.ContainerID] = ep
	return nil
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= 1<<(32-p.Bits()) - 1
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// newNetNS makes a network namespace pinned at path, owned by the
// sandbox's user namespace when there is one.
func (n *Network) newNetNS(path string) error {
	if n.opts.UserNS == "" {
		return newNetNSAt(path)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return userns.NewNetNS(ctx, n.opts.UserNS, path)
}

// plumb makes the container's netns and the veth pair.
func (n *Network) plumb(ep *endpoint) error {
	if err := n.newNetNS(ep.NetNSPath); err != nil {
		return err
	}
	cns, err := netns.GetFromPath(ep.NetNSPath)
	if err != nil {
		return fmt.Errorf("open container netns: %w", err)
	}
	defer cns.Close()
	var veth *netlink.Veth
	for range 5 {
		veth = &netlink.Veth{
			LinkAttrs:        netlink.LinkAttrs{Name: "veth" + randomHex(4)[:7], MTU: n.opts.MTU, MasterIndex: n.bridge, TxQLen: -1},
			PeerName:         "eth0",
			PeerHardwareAddr: ep.MacAddress,
			PeerNamespace:    netlink.NsFd(int(cns)),
			PeerMTU:          uint32(n.opts.MTU),
		}
		err = n.nl.LinkAdd(veth)
		if !errors.Is(err, unix.EEXIST) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("add veth: %w", err)
	}
	ep.HostVeth = veth.Name
	if err := n.nl.LinkSetUp(veth); err != nil {
		return fmt.Errorf("set %s up: %w", veth.Name, err)
	}
	cnl, err := netlink.NewHandleAt(cns)
	if err != nil {
		return fmt.Errorf("netlink handle in container netns: %w", err)
	}
	defer cnl.Close()
	for _, name := range []string{"lo", "eth0"} {
		l, err := cnl.LinkByName(name)
		if err != nil {
			return fmt.Errorf("find %s: %w", name, err)
		}
		if name == "eth0" {
			if err := cnl.AddrAdd(l, &netlink.Addr{IPNet: ipNet(ep.IP, ep.PrefixLen)}); err != nil {
				return fmt.Errorf("address eth0: %w", err)
			}
		}
		if err := cnl.LinkSetUp(l); err != nil {
			return fmt.Errorf("set %s up: %w", name, err)
		}
		if name == "eth0" {
			r := &netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.IP(n.gateway.AsSlice())}
			if err := cnl.RouteAdd(r); err != nil {
				return fmt.Errorf("default route: %w", err)
			}
		}
	}
	return nil
}

// publish starts the proxies. A port some other process holds fails the
// Attach, except that an ephemeral one is retried with the next free port,
// as dockerd does.
func (n *Network) publish(ep *endpoint) error {
	for i := 0; i < len(ep.Ports); i++ {
		pub := ep.Ports[i]
		twin := i+1 < len(ep.Ports) && pub.HostIP == ipv4Any && ep.Ports[i+1].HostIP == ipv6Any &&
			ep.Ports[i+1].HostPort == pub.HostPort && ep.Ports[i+1].ContainerPort == pub.ContainerPort && ep.Ports[i+1].Proto == pub.Proto
		var err error
		for attempt := 0; ; attempt++ {
			var p, p6 *proxy
			p, err = n.listen(ep, pub)
			if err == nil && twin {
				if p6, err = n.listen(ep, ep.Ports[i+1]); err != nil {
					p.close()
				}
			}
			if err == nil {
				ep.proxies = append(ep.proxies, p)
				if p6 != nil {
					ep.proxies = append(ep.proxies, p6)
				}
				break
			}
			if ep.ranges[i] == [2]uint16{} || attempt >= 9 {
				break
			}
			if !n.repick(ep, i, twin) {
				break
			}
			pub = ep.Ports[i]
		}
		if err != nil {
			return err
		}
		if twin {
			i++
		}
	}
	return nil
}

// repick moves Ports[i] (and its :: twin) to another free port of its range
// after the kernel refused the first one.
func (n *Network) repick(ep *endpoint, i int, twin bool) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	pub := ep.Ports[i]
	k, k6 := portKey{pub.Proto, pub.HostIP}, portKey{pub.Proto, ipv6Any}
	free6 := func(p uint16) bool { return !twin || !n.ports.taken(k6, p) }
	// The refused port stays taken while we search, so it is not picked again.
	port := n.ports.pick(k, ep.ranges[i][0], ep.ranges[i][1], free6)
	if port == 0 {
		return false
	}
	n.ports.free(k, pub.HostPort)
	n.ports.take(k, port)
	ep.Ports[i].HostPort = port
	if twin {
		n.ports.free(k6, pub.HostPort)
		n.ports.take(k6, port)
		ep.Ports[i+1].HostPort = port
	}
	return true
}

// listen creates pub's socket in the outside netns and starts its proxy.
func (n *Network) listen(ep *endpoint, pub PublishedPort) (*proxy, error) {
	netw := pub.Proto + "4"
	if pub.HostIP.Is6() {
		netw = pub.Proto + "6"
	}
	addr := net.JoinHostPort(pub.HostIP.String(), strconv.Itoa(int(pub.HostPort)))
	ctx, cancel := context.WithCancel(context.Background())
	p := &proxy{
		pub:    pub,
		target: net.JoinHostPort(ep.IP.String(), strconv.Itoa(int(pub.ContainerPort))),
		dial:   n.DialBridge,
		log:    n.log,
		ctx:    ctx,
		cancel: cancel,
		conns:  map[io.Closer]struct{}{},
	}
	err := inNetNS(n.outNS, func() error {
		var err error
		if pub.Proto == "udp" {
			p.pc, err = net.ListenPacket(netw, addr)
		} else {
			p.ln, err = net.Listen(netw, addr)
		}
		return err
	})
	if err != nil {
		cancel()
		return nil, &ProxyError{err}
	}
	p.start()
	return p, nil
}

// release undoes whatever of Attach was done for ep. The ports, the
// container ID and the netns file are free when it returns. The veth pair
// goes in the background: once nothing holds the container's netns any
// more the kernel removes it with the namespace, in batches (≈2 ms per
// container); deleting it ourselves costs ≈20 ms under the rtnl lock, so
// that is only the fallback after 500 ms (a process still in the netns).
// The address is reused only once the veth is gone. Close waits for it.
func (n *Network) release(ep *endpoint) error {
	for _, p := range ep.proxies {
		p.close()
	}
	ep.proxies = nil
	var errs []error
	if err := removeNetNSAt(ep.NetNSPath); err != nil {
		errs = append(errs, err)
	}
	n.mu.Lock()
	for _, p := range ep.Ports {
		n.ports.free(portKey{p.Proto, p.HostIP}, p.HostPort)
	}
	if ep.HostVeth == "" {
		delete(n.ips, ep.IP)
		n.mu.Unlock()
		return errors.Join(errs...)
	}
	n.pending.Add(1)
	n.mu.Unlock()
	go func() {
		defer n.pending.Done()
		for range 50 { // 500 ms
			if _, err := n.nl.LinkByName(ep.HostVeth); err != nil {
				n.mu.Lock()
				delete(n.ips, ep.IP)
				n.mu.Unlock()
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		// Deleting one end removes the pair.
		if l, err := n.nl.LinkByName(ep.HostVeth); err == nil {
			if err := n.nl.LinkDel(l); err != nil {
				n.log.Error("remove veth", "container", ep.ContainerID, "veth", ep.HostVeth, "err", err)
				return // the address stays taken: it may still be in use
			}
		}
		n.mu.Lock()
		delete(n.ips, ep.IP)
		n.mu.Unlock()
	}()
	return errors.Join(errs...)
}

// Detach undoes Attach: the listeners stop (relayed connections are
// dropped), the veth pair and the netns bind mount go, the address and the
// ports are free again. Detaching a container that is not attached is a
// no-op, so it is safe on every cleanup path.
func (n *Network) Detach(ctx context.Context, containerID string) error {
	if !n.begin() {
		return nil // Close released everything
	}
	defer n.ops.Done()
	ep := n.take(containerID)
	if ep == nil {
		return nil
	}
	if err := n.release(ep); err != nil {
		return fmt.Errorf("detach %s: %w", containerID, err)
	}
	return nil
}

// begin registers an Attach or Detach in progress, unless closed.
func (n *Network) begin() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return false
	}
	n.ops.Add(1)
	return true
}

// take removes a container's endpoint from the table: whoever took it
// releases it, exactly once.
func (n *Network) take(containerID string) *endpoint {
	n.mu.Lock()
	defer n.mu.Unlock()
	ep := n.eps[containerID]
	delete(n.eps, containerID)
	return ep
}

// Endpoint returns a copy of a container's attachment.
func (n *Network) Endpoint(containerID string) (*Endpoint, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	ep, ok := n.eps[containerID]
	if !ok {
		return nil, false
	}
	out := ep.Endpoint
	out.Ports = append([]PublishedPort(nil), ep.Ports...)
	return &out, true
}

// Close detaches every container and removes the bridge, and the bridge's
// namespace when New created it. The Network is unusable afterwards.
func (n *Network) Close(ctx context.Context) error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	n.mu.Unlock()
	n.ops.Wait() // no Attach or Detach can begin any more
	n.mu.Lock()
	eps := make([]*endpoint, 0, len(n.eps))
	for id, ep := range n.eps {
		eps = append(eps, ep)
		delete(n.eps, id)
	}
	n.mu.Unlock()
	var errs []error
	for _, ep := range eps {
		if err := n.release(ep); err != nil {
			errs = append(errs, err)
		}
	}
	n.pending.Wait()
	errs = append(errs, n.teardown())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close network %s: %w", n.opts.RunDir, err)
	}
	return nil
}

func (n *Network) teardown() error {
	var errs []error
	if n.nl != nil {
		if !n.ownNS && n.bridge != 0 {
			if l, err := n.nl.LinkByIndex(n.bridge); err == nil {
				if err := n.nl.LinkDel(l); err != nil {
					errs = append(errs, fmt.Errorf("remove bridge: %w", err))
				}
			}
		}
		n.nl.Close()
		n.nl = nil
	}
	if n.bridgeNS.IsOpen() {
		n.bridgeNS.Close()
	}
	if n.outNS.IsOpen() {
		n.outNS.Close()
	}
	if n.ownNS {
		if err := removeNetNSAt(n.nsPath); err != nil {
			errs = append(errs, err)
		}
	}
	if err := unmountAllUnder(n.nsDir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// DialContext dials from the outside namespace: where published ports
// listen (the sandbox's netns, or labd's own with PublishOnHost). labd's
// grader and browser preview use it to reach "localhost:5001" as the
// learner's shell sees it (an http.Transport's DialContext).
func (n *Network) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return dialIn(ctx, n.outNS, network, addr)
}

// DialBridge dials from the bridge's namespace, where container addresses
// are reachable whatever the mode.
func (n *Network) DialBridge(ctx context.Context, network, addr string) (net.Conn, error) {
	return dialIn(ctx, n.bridgeNS, network, addr)
}

func dialIn(ctx context.Context, ns netns.NsHandle, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := inNetNS(ns, func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}
