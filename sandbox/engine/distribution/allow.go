package distribution

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// The engine reaches only the registries labd's operator configured: the
// classroom registry (HubStandIn), the upstream for Docker Hub's names
// (HubUpstream, or Docker Hub itself when neither is set) and
// AllowedRegistries. A learner names registries (docker pull
// 127.0.0.1:8080/x, FROM, docker login HOST), so anything else is refused
// before any DNS lookup or dial, with the same words whatever listens
// there: the engine must not be a port scanner of labd's host.
//
// Hosts compare by their written form after normalisation (lower case, no
// trailing dot, IP literals in canonical form, IPv4-mapped IPv6 as IPv4,
// ports without leading zeros), never by the address a name resolves
// to: localhost is not 127.0.0.1, and names only resolvers read as
// numbers (127.1, 2130706433, 0x7f.0.0.1) are never allowed. What is
// dialled is the normalised form, so a spelling that normalises to an
// allowed host reaches exactly that host.

// dockerHubHosts are Docker Hub's own registry names.
var dockerHubHosts = []string{"registry-1.docker.io", "index.docker.io", "docker.io", "registry.hub.docker.com"}

// dockerHubServices are the hosts Docker Hub sends its clients to: its
// token service (the WWW-Authenticate realm) and the stores its blob
// requests redirect to. They are allowed as realms and redirect targets,
// never as registry names, when Docker Hub is the configured upstream.
// Docker moves its blob storage now and then; a refused redirect names the
// new host, and --allowed-registry adds it.
var dockerHubServices = []string{
	"auth.docker.io",
	"production.cloudflare.docker.com",
	"production.cloudfront.docker.com",
	"docker-images-prod.6aa30f8b08e16409b46e0173d6de2f56.r2.cloudflarestorage.com",
}

// hostPort is a normalised registry address.
type hostPort struct {
	host string // lower case; IP literals canonical, IPv6 without brackets
	port string // decimal without leading zeros, or "" (the scheme's default)
}

func (h hostPort) String() string {
	host := h.host
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if h.port == "" {
		return host
	}
	return host + ":" + h.port
}

// NormalizeRegistry returns the form in which the engine compares a
// registry address (host[:port]), or why it is not one: labd checks
// --allowed-registry values with it.
func NormalizeRegistry(s string) (string, error) {
	hp, err := parseHostPort(s)
	if err != nil {
		return "", err
	}
	return hp.String(), nil
}

func parseHostPort(s string) (hostPort, error) {
	if s == "" {
		return hostPort{}, errors.New("empty registry address")
	}
	if strings.Contains(s, "://") || strings.ContainsAny(s, "/?#@ \t\r\n") {
		return hostPort{}, fmt.Errorf("%q is not a registry address: want host[:port]", s)
	}
	var host, port string
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.Index(s, "]")
		if end < 0 {
			return hostPort{}, fmt.Errorf("%q is not a registry address: missing ']'", s)
		}
		host = s[1:end]
		rest := s[end+1:]
		if rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return hostPort{}, fmt.Errorf("%q is not a registry address: want [ipv6]:port", s)
			}
			port = rest[1:]
			if port == "" {
				return hostPort{}, fmt.Errorf("%q is not a registry address: empty port", s)
			}
		}
		if _, err := netip.ParseAddr(host); err != nil {
			return hostPort{}, fmt.Errorf("%q is not a registry address: %q in brackets is not an IPv6 address", s, host)
		}
	case strings.Count(s, ":") > 1:
		host = s // a bare IPv6 address: no port possible
	default:
		var ok bool
		host, port, ok = strings.Cut(s, ":")
		if ok && port == "" {
			return hostPort{}, fmt.Errorf("%q is not a registry address: empty port", s)
		}
	}
	if port != "" {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 || strings.TrimLeft(port, "0123456789") != "" {
			return hostPort{}, fmt.Errorf("%q is not a registry address: bad port %q", s, port)
		}
		port = strconv.FormatUint(n, 10)
	}
	h, err := normalizeHostName(host)
	if err != nil {
		return hostPort{}, fmt.Errorf("%q is not a registry address: %w", s, err)
	}
	return hostPort{host: h, port: port}, nil
}

// normalizeHostName lower-cases a host, drops one trailing dot and writes
// IP literals canonically. Names made only of numbers (127.1,
// 2130706433, 0x7f000001, 0177.0.0.1) are refused: some resolvers read
// them as IPv4 addresses, others send them to DNS, so what they reach
// depends on the resolver.
func normalizeHostName(host string) (string, error) {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if ip, err := netip.ParseAddr(h); err == nil {
		ip = ip.Unmap()
		if ip.Zone() != "" {
			return "", fmt.Errorf("IPv6 zone in %q", host)
		}
		return ip.String(), nil
	}
	if h == "" {
		return "", errors.New("empty host")
	}
	labels := strings.Split(h, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return "", fmt.Errorf("bad host name %q", host)
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", fmt.Errorf("bad host name %q", host)
			}
		}
	}
	if numericLabel(labels[len(labels)-1]) {
		return "", fmt.Errorf("%q is not a canonical IP address (write IPv4 as four decimal numbers, e.g. 127.0.0.1)", host)
	}
	return h, nil
}

// numericLabel reports a label inet_aton would read as a number: decimal,
// octal or 0x hex. (No top-level domain is numeric.)
func numericLabel(l string) bool {
	if strings.HasPrefix(l, "0x") {
		l = l[2:]
		return strings.Trim(l, "0123456789abcdef") == ""
	}
	return strings.Trim(l, "0123456789") == ""
}

// allowlist is what the client may contact.
type allowlist struct {
	registries []hostPort // names may point here (pull, push, login)
	followers  []hostPort // registries plus the hosts they send clients to (realms, redirects)
	described  string     // "127.0.0.1:5000 (the classroom registry, …)", for refusals
}

func newAllowlist(o Options) (*allowlist, error) {
	a := &allowlist{}
	var desc []string
	add := func(addr, role string) error {
		hp, err := parseHostPort(addr)
		if err != nil {
			return err
		}
		if slices.Contains(a.registries, hp) {
			return nil
		}
		a.registries = append(a.registries, hp)
		if role != "" {
			desc = append(desc, hp.String()+" ("+role+")")
		} else {
			desc = append(desc, hp.String())
		}
		return nil
	}
	hub := o.hubHost()
	if o.HubStandIn != "" {
		role := "the classroom registry"
		if hub == o.HubStandIn {
			role += ", for names without a registry such as alice/app"
		}
		if err := add(o.HubStandIn, role); err != nil {
			return nil, fmt.Errorf("classroom registry: %w", err)
		}
	}
	if hub != o.HubStandIn {
		if err := add(hub, "for names without a registry such as busybox"); err != nil {
			return nil, fmt.Errorf("hub upstream: %w", err)
		}
	}
	for _, r := range o.AllowedRegistries {
		if err := add(r, ""); err != nil {
			return nil, fmt.Errorf("allowed registry (--allowed-registry, LABD_ALLOWED_REGISTRIES): %w", err)
		}
	}
	a.followers = slices.Clone(a.registries)
	if hubHP, err := parseHostPort(hub); err == nil && hubHP.port == "" && slices.Contains(dockerHubHosts, hubHP.host) {
		for _, s := range dockerHubServices {
			a.followers = append(a.followers, hostPort{host: s})
		}
	}
	a.described = "this engine reaches only " + desc[0]
	if len(desc) > 1 {
		a.described = "this engine reaches only " + strings.Join(desc[:len(desc)-1], ", ") + " and " + desc[len(desc)-1]
	}
	return a, nil
}

// NotAllowedError is the refusal to contact a host the operator did not
// allow; the API answers it with 403, as dockerd answers a forbidden
// operation.
type NotAllowedError struct{ msg string }

func (e *NotAllowedError) Error() string { return e.msg }

// Forbidden marks the error for the API's status mapping.
func (*NotAllowedError) Forbidden() {}

// registry checks a registry a name or login points to and returns the
// normalised address to contact.
func (a *allowlist) registry(addr string) (string, error) {
	hp, err := parseHostPort(addr)
	if err == nil && slices.Contains(a.registries, hp) {
		return hp.String(), nil
	}
	// The learner's text is echoed as given: the answer must not depend
	// on anything but the text.
	return "", a.refusal("registry " + addr)
}

// allowsURL reports whether a URL's host is one the client may follow to
// (a token realm, a redirect, an upload location). A configured address
// without a port stands for the scheme's default port.
func (a *allowlist) allowsURL(u *url.URL) bool {
	var def string
	switch u.Scheme {
	case "https":
		def = "443"
	case "http":
		def = "80"
	default:
		return false
	}
	if u.User != nil {
		return false
	}
	hp, err := parseHostPort(u.Host)
	if err != nil {
		return false
	}
	port := hp.port
	if port == "" {
		port = def
	}
	for _, f := range a.followers {
		if f.host == hp.host && (f.port == port || f.port == "" && port == def) {
			return true
		}
	}
	return false
}

// refusal is the error for subject ("registry 127.0.0.1:8080").
func (a *allowlist) refusal(subject string) error {
	return &NotAllowedError{msg: subject + " is not allowed: " + a.described}
}

// redactURL is a URL without query and user information (a realm's query
// may carry a scope, an upload location its state).
func redactURL(u *url.URL) string {
	c := *u
	c.User = nil
	c.RawQuery = ""
	c.Fragment = ""
	return c.String()
}

// guard is the last check before any request leaves: whatever built the
// URL (a realm, a redirect, an upload Location), a host that is not
// allowed is never resolved or dialled.
type guard struct {
	a    *allowlist
	next http.RoundTripper
}

func (g guard) RoundTrip(req *http.Request) (*http.Response, error) {
	if !g.a.allowsURL(req.URL) {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, g.a.refusal("host " + req.URL.Host)
	}
	return g.next.RoundTrip(req)
}

// checkRedirect refuses a redirect to a host that is not allowed, so the
// message says it was a redirect; guard would refuse it too.
func (a *allowlist) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	if !a.allowsURL(req.URL) {
		return a.refusal("redirect from " + via[len(via)-1].URL.Host + " to " + redactURL(req.URL))
	}
	return nil
}

// checkRealm refuses a token realm on a host that is not allowed: a
// registry could otherwise send the engine, with the learner's
// credentials, anywhere.
func (a *allowlist) checkRealm(registry, realm string) error {
	u, err := url.Parse(realm)
	if err != nil || !u.IsAbs() {
		return fmt.Errorf("bad token realm %q of registry %s", realm, registry)
	}
	if !a.allowsURL(u) {
		return a.refusal("token realm " + redactURL(u) + " of registry " + registry)
	}
	return nil
}
