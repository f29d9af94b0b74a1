package web

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// Behind a TLS-terminating reverse proxy labd sees plain HTTP from the
// proxy's address. The proxy's X-Forwarded-Proto (and X-Forwarded-For, for
// logs) are believed only when the request's peer is one of
// Options.TrustedProxies; from anyone else they are ignored, since any
// client can send them. X-Forwarded-Host is never read: labd needs the
// Host the browser used (preview hosts, the Origin check), and the proxy
// must pass it through as it is (docs/preview.md, README).

// hstsMaxAge is a year, the usual minimum for HSTS preload lists.
const hstsMaxAge = 365 * 24 * 60 * 60

// ParseTrustedProxy reads one --trusted-proxy value: an IP address
// ("10.0.0.5", "::1") or a CIDR prefix ("10.0.0.0/8").
func ParseTrustedProxy(v string) (netip.Prefix, error) {
	v = strings.TrimSpace(v)
	if strings.Contains(v, "/") {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("trusted proxy %q: not an IP address or CIDR prefix (e.g. 127.0.0.1, ::1 or 10.0.0.0/8)", v)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(v)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("trusted proxy %q: not an IP address or CIDR prefix (e.g. 127.0.0.1, ::1 or 10.0.0.0/8)", v)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// clientInfo is what labd believes about the browser end of a request.
type clientInfo struct {
	// https: the browser reached labd (or the trusted proxy) over TLS.
	https bool
	// addr is the client's IP address for logs: the peer's, or the one
	// the trusted proxies recorded in X-Forwarded-For.
	addr string
}

type clientKey struct{}

// trusted reports whether addr is one of the configured proxies.
func (s *server) trusted(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, p := range s.opts.TrustedProxies {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// clientOf works out the clientInfo of r from its connection and, when
// the peer is a trusted proxy, its forwarded headers.
func (s *server) clientOf(r *http.Request) clientInfo {
	c := clientInfo{https: r.TLS != nil, addr: r.RemoteAddr}
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return c
	}
	c.addr = peer.Addr().Unmap().String()
	if !s.trusted(peer.Addr()) {
		return c
	}
	// The last value is the one the trusted proxy itself set or appended;
	// values before it came from further away (possibly the client).
	if v := lastValue(r.Header.Values("X-Forwarded-Proto")); v != "" {
		c.https = strings.EqualFold(v, "https")
	}
	// Right to left through the proxies: the first address that is not
	// a trusted proxy is the client.
	hops := splitValues(r.Header.Values("X-Forwarded-For"))
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(hops[i])
		if err != nil {
			break
		}
		c.addr = a.Unmap().String()
		if !s.trusted(a) {
			break
		}
	}
	return c
}

func splitValues(vs []string) []string {
	var out []string
	for _, v := range vs {
		for _, part := range strings.Split(v, ",") {
			if part = strings.TrimSpace(part); part != "" {
				out = append(out, part)
			}
		}
	}
	return out
}

func lastValue(vs []string) string {
	all := splitValues(vs)
	if len(all) == 0 {
		return ""
	}
	return all[len(all)-1]
}

// withClient records the clientInfo of every request for isHTTPS and
// clientAddr, and adds HSTS to every answer of a request that came over
// TLS: labd's pages and the previews (path- and host-based) alike.
func (s *server) withClient(next http.Handler) http.Handler {
	hsts := fmt.Sprintf("max-age=%d", hstsMaxAge)
	if s.opts.HSTSIncludeSubdomains {
		hsts += "; includeSubDomains"
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := s.clientOf(r)
		if c.https {
			w.Header().Set("Strict-Transport-Security", hsts)
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), clientKey{}, c)))
	})
}

// isHTTPS is true when the browser reached labd over TLS, directly or
// through a trusted proxy (X-Forwarded-Proto: https). It makes labd's
// cookies Secure, picks the scheme of preview links and holds the Origin
// check to https origins.
func isHTTPS(r *http.Request) bool {
	if c, ok := r.Context().Value(clientKey{}).(clientInfo); ok {
		return c.https
	}
	return r.TLS != nil
}

// clientAddr is the client's address for logs.
func clientAddr(r *http.Request) string {
	if c, ok := r.Context().Value(clientKey{}).(clientInfo); ok {
		return c.addr
	}
	return r.RemoteAddr
}

// setCookie sets one of labd's cookies: Secure whenever the browser came
// over TLS, so that none of them ever travels in clear text afterwards.
func setCookie(w http.ResponseWriter, r *http.Request, c *http.Cookie) {
	c.Secure = isHTTPS(r)
	http.SetCookie(w, c)
}
