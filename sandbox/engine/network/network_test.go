package network

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

func TestAttachPublishAndConnect(t *testing.T) {
	requireRoot(t)
	n, out := newTestNetwork(t, "172.30.7.0/24")
	ctx := context.Background()
	outDial := dialer(t, out)
	before := count(t, n.opts.RunDir, out)

	c1, err := n.Attach(ctx, "c1", "c1host", []PortBinding{{ContainerPort: 5000, HostPort: 5001}})
	if err != nil {
		t.Fatal(err)
	}
	c2, err := n.Attach(ctx, "c2", "c2host", []PortBinding{{ContainerPort: 5000}, {ContainerPort: 7, HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 7007}})
	if err != nil {
		t.Fatal(err)
	}

	// What inspect shows.
	if c1.IP != netip.MustParseAddr("172.30.7.2") || c2.IP != netip.MustParseAddr("172.30.7.3") {
		t.Errorf("IPs %s %s, want .2 and .3", c1.IP, c2.IP)
	}
	if c1.Gateway != netip.MustParseAddr("172.30.7.1") || c1.PrefixLen != 24 {
		t.Errorf("gateway %s/%d", c1.Gateway, c1.PrefixLen)
	}
	if c1.MacAddress.String() != "02:42:ac:1e:07:02" {
		t.Errorf("MAC %s", c1.MacAddress)
	}
	if !strings.HasSuffix(string(c1.Hosts), "\n172.30.7.2\tc1host\n") || string(c1.Hostname) != "c1host\n" {
		t.Errorf("hosts %q hostname %q", c1.Hosts, c1.Hostname)
	}
	if len(c1.EndpointID) != 64 || !strings.HasPrefix(c1.HostVeth, "veth") || len(c1.HostVeth) != 11 {
		t.Errorf("endpoint id %q veth %q", c1.EndpointID, c1.HostVeth)
	}
	wantPorts := []PublishedPort{{"tcp", 5000, ipv4Any, 5001}}
	if n.ipv6 {
		wantPorts = append(wantPorts, PublishedPort{"tcp", 5000, ipv6Any, 5001})
	}
	if !equalPorts(c1.Ports, wantPorts) {
		t.Errorf("c1 ports %v, want %v", c1.Ports, wantPorts)
	}
	eph := c2.Ports[0].HostPort
	if eph < 32768 || eph > 60999 {
		t.Errorf("-P port %d outside 32768-60999", eph)
	}
	last := c2.Ports[len(c2.Ports)-1]
	if last.HostIP != netip.MustParseAddr("127.0.0.1") || last.HostPort != 7007 {
		t.Errorf("c2 last port %v", last)
	}

	// Inside the container's netns: eth0 with the address and MAC, lo up,
	// default route via the gateway.
	cns, err := netns.GetFromPath(c1.NetNSPath)
	if err != nil {
		t.Fatal(err)
	}
	cnl, err := netlink.NewHandleAt(cns)
	cns.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer cnl.Close()
	eth0, err := cnl.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if eth0.Attrs().HardwareAddr.String() != "02:42:ac:1e:07:02" || eth0.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("eth0 %v %v", eth0.Attrs().HardwareAddr, eth0.Attrs().Flags)
	}
	addrs, err := cnl.AddrList(eth0, netlink.FAMILY_V4)
	if err != nil || len(addrs) != 1 || addrs[0].IPNet.String() != "172.30.7.2/24" {
		t.Errorf("eth0 addresses %v %v", addrs, err)
	}
	routes, err := cnl.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	var gw string
	for _, r := range routes {
		if r.Dst == nil || r.Dst.String() == "0.0.0.0/0" {
			gw = r.Gw.String()
		}
	}
	if gw != "172.30.7.1" {
		t.Errorf("default route via %q, want 172.30.7.1 (%v)", gw, routes)
	}

	var fwd []byte
	if err := inPath(t, out, func() (err error) { fwd, err = os.ReadFile("/proc/sys/net/ipv4/ip_forward"); return }); err != nil || string(fwd) != "0\n" {
		t.Errorf("ip_forward in the bridge's netns: %q %v", fwd, err)
	}

	busyboxHTTPD(t, c1.NetNSPath, 5000, "hello from busybox\n")
	serveIn(t, c2.NetNSPath, 5000, "hello from c2")
	echoIn(t, c2.NetNSPath, 7)

	// Published: from the outside netns, as `curl localhost:5001` in the
	// learner's shell.
	if got := httpGet(t, outDial, "127.0.0.1:5001"); got != "hello from busybox\n" {
		t.Errorf("127.0.0.1:5001 answered %q", got)
	}
	if n.ipv6 {
		if got := httpGet(t, outDial, "[::1]:5001"); got != "hello from busybox\n" {
			t.Errorf("[::1]:5001 answered %q", got)
		}
	}
	if got := httpGet(t, outDial, "127.0.0.1:"+strconv.Itoa(int(eph))); got != "hello from c2" {
		t.Errorf("-P port answered %q", got)
	}
	if got := httpGet(t, n.DialContext, "127.0.0.1:5001"); got != "hello from busybox\n" {
		t.Errorf("Network.DialContext: %q", got)
	}
	// The bridge is in the outside netns (a sandbox): container IPs are
	// reachable from there too, as from a Docker host.
	if got := httpGet(t, outDial, "172.30.7.3:5000"); got != "hello from c2" {
		t.Errorf("c2 by IP from outside: %q", got)
	}
	// Container to container by IP over the bridge.
	if got := httpGet(t, dialer(t, c2.NetNSPath), "172.30.7.2:5000"); got != "hello from busybox\n" {
		t.Errorf("c2 → c1: %q", got)
	}

	// Half-close goes through the proxy.
	c, err := outDial(ctx, "tcp", "127.0.0.1:7007")
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(c, "ping")
	c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	c.Close()
	if string(b) != "got:ping" || err != nil {
		t.Errorf("echo through proxy: %q %v", b, err)
	}

	// A connection held open through the proxy is dropped by Detach.
	held, err := outDial(ctx, "tcp", "127.0.0.1:7007")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()

	if err := n.Detach(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if err := n.Detach(ctx, "c2"); err != nil {
		t.Fatal(err)
	}
	if err := n.Detach(ctx, "c2"); err != nil {
		t.Errorf("second Detach: %v", err)
	}
	held.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := held.Read(make([]byte, 1)); err == nil {
		t.Error("connection through the proxy survived Detach")
	}
	held.Close()
	ctx2, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := get(ctx2, outDial, "127.0.0.1:5001"); err == nil {
		t.Error("5001 still answers after Detach")
	}
	cnl.Close()
	waitCounts(t, n.opts.RunDir, out, before)
	if _, ok := n.Endpoint("c1"); ok {
		t.Error("Endpoint(c1) after Detach")
	}
	// Freed address and port are given again (the address once the veth
	// is gone: c1's netns was held by busybox, so after the fallback delete).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		n.mu.Lock()
		_, used := n.ips[c1.IP]
		n.mu.Unlock()
		if !used {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("c1's address never freed")
		}
	}
	c3, err := n.Attach(ctx, "c3", "c3", []PortBinding{{ContainerPort: 80, HostPort: 5001}})
	if err != nil {
		t.Fatal(err)
	}
	if c3.IP != netip.MustParseAddr("172.30.7.2") {
		t.Errorf("c3 got %s, want the freed .2", c3.IP)
	}
}

func equalPorts(a, b []PublishedPort) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestPortAllocation(t *testing.T) {
	requireRoot(t)
	n, out := newTestNetwork(t, "172.30.8.0/24")
	ctx := context.Background()
	if _, err := n.Attach(ctx, "a", "a", []PortBinding{{ContainerPort: 5000, HostPort: 5001}}); err != nil {
		t.Fatal(err)
	}
	before := count(t, n.opts.RunDir, out)
	tests := []struct {
		name string
		req  []PortBinding
		want string
	}{
		{"same port", []PortBinding{{ContainerPort: 80, HostPort: 5001}}, "Bind for 0.0.0.0:5001 failed: port is already allocated"},
		{"second binding of the request", []PortBinding{{ContainerPort: 80, HostPort: 6000}, {ContainerPort: 81, HostPort: 6000}}, "Bind for 0.0.0.0:6000 failed: port is already allocated"},
		{"unknown proto", []PortBinding{{Proto: "sctp", ContainerPort: 80}}, `invalid proto "sctp"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := n.Attach(ctx, "b", "b", tt.req)
			if err == nil || !strings.HasSuffix(err.Error(), tt.want) {
				t.Fatalf("got %v, want …%s", err, tt.want)
			}
			waitCounts(t, n.opts.RunDir, out, before)
		})
	}
	var pae *PortAllocatedError
	_, err := n.Attach(ctx, "b", "b", []PortBinding{{ContainerPort: 80, HostPort: 5001}})
	if !errors.As(err, &pae) || pae.HostPort != 5001 {
		t.Errorf("errors.As PortAllocatedError: %v", err)
	}
	// Same port on another address is the kernel's business, as in dockerd.
	_, err = n.Attach(ctx, "b", "b", []PortBinding{{ContainerPort: 80, HostPort: 5001, HostIP: netip.MustParseAddr("127.0.0.1")}})
	var pe *ProxyError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "Error starting userland proxy: listen tcp4 127.0.0.1:5001: bind: address already in use") {
		t.Errorf("got %v", err)
	}
	// -P: ephemeral ports are handed out in order, skipping one held by
	// another process.
	var squat net.Listener
	if err := inNetNS(n.outNS, func() (err error) { squat, err = net.Listen("tcp4", "0.0.0.0:32769"); return }); err != nil {
		t.Fatal(err)
	}
	defer squat.Close()
	e1, err := n.Attach(ctx, "e1", "e1", []PortBinding{{ContainerPort: 80}})
	if err != nil {
		t.Fatal(err)
	}
	e2, err := n.Attach(ctx, "e2", "e2", []PortBinding{{ContainerPort: 80}})
	if err != nil {
		t.Fatal(err)
	}
	if e1.Ports[0].HostPort != 32768 || e2.Ports[0].HostPort != 32770 {
		t.Errorf("ephemeral ports %d, %d; want 32768, 32770", e1.Ports[0].HostPort, e2.Ports[0].HostPort)
	}
	if _, err := n.Attach(ctx, "e1", "e1", nil); !errors.Is(err, ErrAttached) {
		t.Errorf("double attach: %v", err)
	}
	if _, err := n.Attach(ctx, "../x", "x", nil); err == nil {
		t.Error("bad id accepted")
	}
}

func TestSandboxesIsolated(t *testing.T) {
	requireRoot(t)
	a, outA := newTestNetwork(t, "172.30.9.0/24")
	b, outB := newTestNetwork(t, "172.30.10.0/24")
	ctx := context.Background()
	ca, err := a.Attach(ctx, "ca", "ca", []PortBinding{{ContainerPort: 5000, HostPort: 5001}})
	if err != nil {
		t.Fatal(err)
	}
	// The same host port in another sandbox: no collision.
	cb, err := b.Attach(ctx, "cb", "cb", []PortBinding{{ContainerPort: 5000, HostPort: 5001}})
	if err != nil {
		t.Fatal(err)
	}
	serveIn(t, ca.NetNSPath, 5000, "A")
	serveIn(t, cb.NetNSPath, 5000, "B")
	if got := httpGet(t, dialer(t, outA), "127.0.0.1:5001"); got != "A" {
		t.Errorf("sandbox A's 5001: %q", got)
	}
	if got := httpGet(t, dialer(t, outB), "127.0.0.1:5001"); got != "B" {
		t.Errorf("sandbox B's 5001: %q", got)
	}
	// Positive control: B's container is up and reachable in B.
	if got := httpGet(t, dialer(t, outB), cb.IP.String()+":5000"); got != "B" {
		t.Fatalf("B by IP in B: %q", got)
	}
	for _, from := range []struct{ name, ns string }{{"A's container", ca.NetNSPath}, {"A's sandbox", outA}} {
		ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		_, err := get(ctx, dialer(t, from.ns), cb.IP.String()+":5000")
		cancel()
		if err == nil {
			t.Errorf("%s reached B's container", from.name)
		}
	}
}

func TestPublishOnHost(t *testing.T) {
	requireRoot(t)
	// Standalone `labd engine`: the bridge in a netns of its own, ports on
	// labd's netns (only on 127.0.0.1 here: tests never listen elsewhere on
	// the host).
	runDir := filepath.Join(t.TempDir(), "net")
	before := count(t, runDir, "")
	n, err := New(Options{RunDir: runDir, Subnet: netip.MustParsePrefix("172.30.11.0/24"), PublishOnHost: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if n.NetNSPath() != filepath.Join(runDir, "netns", "bridge") {
		t.Errorf("NetNSPath %s", n.NetNSPath())
	}
	ep, err := n.Attach(ctx, "s1", "s1", []PortBinding{{ContainerPort: 5000, HostIP: netip.MustParseAddr("127.0.0.1")}})
	if err != nil {
		t.Fatal(err)
	}
	serveIn(t, ep.NetNSPath, 5000, "standalone")
	var d net.Dialer
	if got := httpGet(t, d.DialContext, "127.0.0.1:"+strconv.Itoa(int(ep.Ports[0].HostPort))); got != "standalone" {
		t.Errorf("host 127.0.0.1 → container: %q", got)
	}
	// The container's address is not reachable from labd's netns.
	ctx2, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, err := get(ctx2, d.DialContext, ep.IP.String()+":5000"); err == nil {
		t.Error("container IP reachable from the host netns")
	}
	if err := n.Close(ctx); err != nil {
		t.Fatal(err)
	}
	waitCounts(t, runDir, "", before)
}

func TestCloseLeavesNothing(t *testing.T) {
	requireRoot(t)
	out := outsideNetNS(t)
	runDir := filepath.Join(t.TempDir(), "net")
	before := count(t, runDir, out)
	for round := range 2 { // the second round also checks New after Close in the same dir
		n, err := New(Options{RunDir: runDir, Subnet: netip.MustParsePrefix("172.30.12.0/24"), NetNS: out})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		for _, id := range []string{"x1", "x2", "x3"} {
			ep, err := n.Attach(ctx, id, id, []PortBinding{{ContainerPort: 5000}, {Proto: "udp", ContainerPort: 53}})
			if err != nil {
				t.Fatal(err)
			}
			serveIn(t, ep.NetNSPath, 5000, id)
		}
		ep, _ := n.Endpoint("x2")
		if got := httpGet(t, dialer(t, out), "127.0.0.1:"+strconv.Itoa(int(ep.Ports[0].HostPort))); got != "x2" {
			t.Errorf("round %d: %q", round, got)
		}
		if err := n.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := n.Attach(ctx, "late", "late", nil); !errors.Is(err, ErrClosed) {
			t.Errorf("Attach after Close: %v", err)
		}
		waitCounts(t, runDir, out, before)
	}
}

func TestNewSweepsLeftovers(t *testing.T) {
	requireRoot(t)
	out := outsideNetNS(t)
	runDir := filepath.Join(t.TempDir(), "net")
	before := count(t, runDir, out)
	n, err := New(Options{RunDir: runDir, Subnet: netip.MustParsePrefix("172.30.13.0/24"), NetNS: out})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Attach(context.Background(), "y", "y", nil); err != nil {
		t.Fatal(err)
	}
	// A killed labd: nothing closed. Only the handles go (the process died).
	n.nl.Close()
	n.bridgeNS.Close()
	n.outNS.Close()
	n2, err := New(Options{RunDir: runDir, Subnet: netip.MustParsePrefix("172.30.13.0/24"), NetNS: out})
	if err != nil {
		t.Fatal(err)
	}
	if err := n2.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitCounts(t, runDir, out, before)
}

func TestUDP(t *testing.T) {
	requireRoot(t)
	n, out := newTestNetwork(t, "172.30.14.0/24")
	ep, err := n.Attach(context.Background(), "u", "u", []PortBinding{{Proto: "udp", ContainerPort: 9000, HostPort: 9001}})
	if err != nil {
		t.Fatal(err)
	}
	var pc net.PacketConn
	if err := inPath(t, ep.NetNSPath, func() (err error) { pc, err = net.ListenPacket("udp4", "0.0.0.0:9000"); return }); err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 100)
		for {
			k, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(append([]byte("re:"), buf[:k]...), from)
		}
	}()
	c, err := dialer(t, out)(context.Background(), "udp4", "127.0.0.1:9001")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 100)
	for i := 0; ; i++ { // datagrams may be lost: resend
		c.Write([]byte("hi"))
		c.SetReadDeadline(time.Now().Add(time.Second))
		k, err := c.Read(buf)
		if err == nil {
			if string(buf[:k]) != "re:hi" {
				t.Fatalf("got %q", buf[:k])
			}
			break
		}
		if i == 20 {
			t.Fatal("no UDP answer through the proxy")
		}
	}
}

func BenchmarkAttachDetach(b *testing.B) {
	requireRoot(b)
	n, _ := newTestNetwork(b, "172.30.15.0/24")
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := n.Attach(ctx, "bench", "bench", []PortBinding{{ContainerPort: 5000, HostPort: 5001}}); err != nil {
			b.Fatal(err)
		}
		if err := n.Detach(ctx, "bench"); err != nil {
			b.Fatal(err)
		}
	}
}
