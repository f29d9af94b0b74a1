package network

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// PortBinding is one requested publication (`-p`, or one exposed port of
// `-P`).
type PortBinding struct {
	Proto         string     // "tcp" (also when "") or "udp"
	ContainerPort uint16     // required
	HostIP        netip.Addr // zero: all addresses (0.0.0.0, and :: where IPv6 works, as dockerd 20.10)
	HostPort      uint16     // 0: an ephemeral port (Options.PortRange, default 32768-60999)
	// HostPortEnd > HostPort asks for any free port of HostPort..HostPortEnd
	// (`-p 8000-8010:80`).
	HostPortEnd uint16
}

// PublishedPort is one listening binding, as NetworkSettings.Ports and the
// `docker ps` Ports list show it.
type PublishedPort struct {
	Proto         string // "tcp" or "udp"
	ContainerPort uint16
	HostIP        netip.Addr // 0.0.0.0, ::, or the address asked for
	HostPort      uint16
}

// PortAllocatedError is dockerd's error for a host port some other binding
// of this engine holds. dockerd prefixes it with "driver failed programming
// external connectivity on endpoint <name> (<endpoint id>): ".
type PortAllocatedError struct {
	HostIP   netip.Addr
	HostPort uint16
}

func (e *PortAllocatedError) Error() string {
	return fmt.Sprintf("Bind for %s failed: port is already allocated", net.JoinHostPort(e.HostIP.String(), strconv.Itoa(int(e.HostPort))))
}

// ProxyError is a listen that failed in the kernel (a port some process
// other than this engine holds), worded as dockerd words it, e.g.
// "Error starting userland proxy: listen tcp4 0.0.0.0:5001: bind: address
// already in use".
type ProxyError struct{ Err error }

func (e *ProxyError) Error() string { return "Error starting userland proxy: " + e.Err.Error() }
func (e *ProxyError) Unwrap() error { return e.Err }

var (
	ipv4Any = netip.IPv4Unspecified()
	ipv6Any = netip.IPv6Unspecified()
)

type portKey struct {
	proto string
	ip    netip.Addr
}

// portMap is dockerd's port allocator: per (protocol, host address); the
// ephemeral search continues after the last port it gave.
type portMap struct {
	lo, hi uint16
	used   map[portKey]map[uint16]bool
	last   map[portKey]uint16
}

func (m *portMap) taken(k portKey, p uint16) bool { return m.used[k][p] }

func (m *portMap) take(k portKey, p uint16) {
	if m.used[k] == nil {
		m.used[k] = map[uint16]bool{}
	}
	m.used[k][p] = true
}

func (m *portMap) free(k portKey, p uint16) { delete(m.used[k], p) }

// pick returns a free port of lo..hi, searching from after the last one
// handed out in that range, or 0.
func (m *portMap) pick(k portKey, lo, hi uint16, also func(uint16) bool) uint16 {
	last, ok := m.last[k]
	if !ok || last < lo || last > hi {
		last = hi
	}
	p := last
	for range int(hi-lo) + 1 {
		if p >= hi {
			p = lo
		} else {
			p++
		}
		if !m.taken(k, p) && (also == nil || also(p)) {
			m.last[k] = p
			return p
		}
	}
	return 0
}

// proxy is one published binding: a listener in the outside netns whose
// connections are relayed to the container from inside the bridge netns.
type proxy struct {
	pub    PublishedPort
	ln     net.Listener   // tcp
	pc     net.PacketConn // udp
	target string
	dial   func(ctx context.Context, network, addr string) (net.Conn, error)
	log    *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[io.Closer]struct{}
}

func (p *proxy) track(c io.Closer) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ctx.Err() != nil {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *proxy) untrack(c io.Closer) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

func (p *proxy) start() {
	p.wg.Add(1)
	if p.ln != nil {
		go p.serveTCP()
	} else {
		go p.serveUDP()
	}
}

// close stops the listener and drops every relayed connection, as killing
// docker-proxy does.
func (p *proxy) close() {
	p.cancel()
	if p.ln != nil {
		p.ln.Close()
	}
	if p.pc != nil {
		p.pc.Close()
	}
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *proxy) serveTCP() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if p.ctx.Err() != nil {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			p.log.Warn("proxy accept", "port", p.pub.HostPort, "err", err)
			time.Sleep(50 * time.Millisecond) // EMFILE and the like: do not spin
			continue
		}
		if !p.track(c) {
			c.Close()
			return
		}
		p.wg.Add(1)
		go p.relayTCP(c)
	}
}

func (p *proxy) relayTCP(in net.Conn) {
	defer p.wg.Done()
	defer p.untrack(in)
	defer in.Close()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	out, err := p.dial(ctx, "tcp4", p.target)
	cancel()
	if err != nil {
		// docker-proxy closes the client's connection the same way.
		p.log.Debug("proxy dial", "target", p.target, "err", err)
		return
	}
	if !p.track(out) {
		out.Close()
		return
	}
	defer p.untrack(out)
	defer out.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		halfCopy(out, in)
	}()
	halfCopy(in, out)
	<-done
}

// halfCopy copies src to dst, then passes the end of stream on (half-close)
// so request/response protocols that wait for EOF keep working.
func halfCopy(dst, src net.Conn) {
	io.Copy(dst, src)
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	if cr, ok := src.(interface{ CloseRead() error }); ok {
		cr.CloseRead()
	}
}

// udpIdle is how long a UDP "connection" (one client address) lives without
// traffic, as docker-proxy's UDPConnTrackTimeout.
const udpIdle = 90 * time.Second

func (p *proxy) serveUDP() {
	defer p.wg.Done()
	var mu sync.Mutex
	flows := map[string]net.Conn{}
	buf := make([]byte, 65507)
	for {
		n, from, err := p.pc.ReadFrom(buf)
		if err != nil {
			if p.ctx.Err() != nil {
				return
			}
			continue
		}
		key := from.String()
		mu.Lock()
		out, ok := flows[key]
		mu.Unlock()
		if !ok {
			ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
			out, err = p.dial(ctx, "udp4", p.target)
			cancel()
			if err != nil {
				continue
			}
			if !p.track(out) {
				out.Close()
				return
			}
			mu.Lock()
			flows[key] = out
			mu.Unlock()
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				defer p.untrack(out)
				defer func() {
					mu.Lock()
					delete(flows, key)
					mu.Unlock()
					out.Close()
				}()
				rb := make([]byte, 65507)
				for {
					out.SetReadDeadline(time.Now().Add(udpIdle))
					n, err := out.Read(rb)
					if err != nil {
						return
					}
					if _, err := p.pc.WriteTo(rb[:n], from); err != nil {
						return
					}
				}
			}()
		}
		out.Write(buf[:n])
	}
}
