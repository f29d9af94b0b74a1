package web

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// portDialer is implemented by sandboxes whose ports labd can reach (the
// engine provider's: its published ports listen in the sandbox's network
// namespace, not on the host).
type portDialer interface {
	DialPort(ctx context.Context, port int) (net.Conn, error)
}

// previewCSP applies to every response of the path-based preview. The app
// is the learner's own code served from labd's origin: "sandbox" without
// allow-same-origin gives its documents an opaque origin, so its scripts
// (or a script injected through a hole in the app) cannot read labd's
// pages nor call labd's APIs as the learner. The price: browsers treat the
// page's own requests as cross-site (no SameSite cookie, CORS for fetch),
// which the capability URL and the CORS headers below make up for; apps
// that need their own cookies or to live at / use the host-based preview
// (docs/preview.md).
const previewCSP = "sandbox allow-scripts allow-forms allow-popups"

// previewHostSuffix makes the upstream host name unique per sandbox, so the
// shared Transport never hands one learner's pooled connection to another
// (its pool is keyed by host:port). The name is never resolved: dialPreview
// parses it back.
const previewHostSuffix = ".sandbox.labd.invalid"

// newPreviewProxy returns the reverse proxy of every preview route.
func (s *server) newPreviewProxy() *httputil.ReverseProxy {
	tr := &http.Transport{
		DialContext:           s.dialPreview,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: 2 * time.Minute, // a slow first request of a dev server is fine
		ForceAttemptHTTP2:     false,
	}
	return &httputil.ReverseProxy{
		Transport:      tr,
		Rewrite:        rewritePreview,
		ModifyResponse: modifyPreview,
		ErrorHandler:   s.previewError,
		// Streamed responses (server-sent events, logs) reach the browser
		// as they come.
		FlushInterval: -1,
	}
}

// dialPreview dials the port of the sandbox named in addr
// ("<sid>.sandbox.labd.invalid:<port>").
func (s *server) dialPreview(ctx context.Context, _, addr string) (net.Conn, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	sid, ok := strings.CutSuffix(host, previewHostSuffix)
	port, perr := strconv.Atoi(p)
	if !ok || perr != nil {
		return nil, fmt.Errorf("preview address %q: not a sandbox port", addr)
	}
	sb, _, ok := s.opts.Sandboxes.Get(sid)
	if !ok {
		return nil, errSandboxGone
	}
	d, ok := sb.(portDialer)
	if !ok {
		return nil, errNoPortDialer
	}
	return d.DialPort(ctx, port)
}

var (
	errSandboxGone  = errors.New("the sandbox has ended")
	errNoPortDialer = errors.New("this sandbox has no network that labd can reach")
)

// previewKey holds the request's previewTarget in its context, for
// Rewrite, ModifyResponse and ErrorHandler.
type previewKey struct{}

type previewTarget struct {
	sid  string
	port int
	// prefix is the app's root in labd's URL space
	// ("/sandboxes/<sid>/preview/<port>/<cap>"), "" on a preview host.
	prefix string
	// rest is the escaped path for the app, starting with "/".
	rest string
	// host: served on {port}-{sid}.{domain} (preview_host.go), a real
	// origin of its own; otherwise inside labd's origin, made opaque by
	// previewCSP.
	host bool
}

func targetOf(r *http.Request) previewTarget {
	t, _ := r.Context().Value(previewKey{}).(previewTarget)
	return t
}

func (s *server) proxyPreview(w http.ResponseWriter, r *http.Request, t previewTarget) {
	if t.rest == "" {
		t.rest = "/"
	}
	ctx := context.WithValue(r.Context(), previewKey{}, t)
	s.previewProxy.ServeHTTP(w, r.WithContext(ctx))
}

func entryPrefix(sid string, port int) string {
	return "/sandboxes/" + sid + "/ports/" + strconv.Itoa(port)
}

func capPrefix(sid string, port int, c string) string {
	return "/sandboxes/" + sid + "/preview/" + strconv.Itoa(port) + "/" + c
}

// restOf returns the escaped path after prefix ("/" when there is none or
// the path spells the prefix in another encoding) and whether the path
// went on past the prefix.
func restOf(r *http.Request, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), prefix)
	if !ok || !strings.HasPrefix(rest, "/") {
		return "/", false
	}
	return rest, true
}

func withQuery(u string, r *http.Request) string {
	if r.URL.RawQuery != "" {
		return u + "?" + r.URL.RawQuery
	}
	return u
}

func isUpgrade(r *http.Request) bool { return r.Header.Get("Upgrade") != "" }

// isDocumentLoad is true for a browser loading a page with GET or HEAD.
// Browsers send SameSite=Lax cookies with these even from an opaque
// origin, so labd's cookie is there when it is the owner's browser.
func isDocumentLoad(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) && r.Header.Get("Sec-Fetch-Mode") == "navigate"
}

// preview serves /sandboxes/{sid}/ports/{port}/{path...}, the entry of the
// path-based preview, for the owner (labd's cookie) only. Page loads are
// redirected into the same path under a capability
// (/sandboxes/{sid}/preview/{port}/{cap}/...): the app's documents have an
// opaque origin (previewCSP), so the browser sends no SameSite cookie with
// their stylesheets, scripts, images and fetches, and the capability in
// their URL (relative URLs keep it) is what authorizes those. Other methods
// and websockets from clients that have the cookie go straight through.
func (s *server) preview(w http.ResponseWriter, r *http.Request) {
	sid := r.PathValue("sid")
	port, ok := parsePort(r.PathValue("port"))
	if !ok {
		s.errorPage(w, r, http.StatusNotFound, errorData{
			Title:   "No such port",
			Message: "Ports are numbers from 1 to 65535.",
		})
		return
	}
	g, ok := s.access(w, r, routePreview, sid, port)
	if !ok {
		return
	}
	prefix := entryPrefix(sid, port)
	rest, _ := restOf(r, prefix)
	if (r.Method == http.MethodGet || r.Method == http.MethodHead) && !isUpgrade(r) {
		u := capPrefix(sid, port, s.signer.pathCap(sid, port, g.owner)) + rest
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, withQuery(u, r), http.StatusFound)
		return
	}
	// labd's own policy is for labd's pages; the app gets previewCSP
	// (ModifyResponse) and labd's returns only on labd's error page.
	w.Header().Del("Content-Security-Policy")
	s.proxyPreview(w, r, previewTarget{sid: sid, port: port, prefix: prefix, rest: rest})
}

// previewCapped serves /sandboxes/{sid}/preview/{port}/{cap}/{path...}.
// The capability names the sandbox, port and owner and expires (capTTL);
// page loads also need the owner's cookie, which browsers send with them,
// so another learner's browser is refused even with the URL (the
// instructor's is let through).
func (s *server) previewCapped(w http.ResponseWriter, r *http.Request) {
	sid, c := r.PathValue("sid"), r.PathValue("cap")
	port, ok := parsePort(r.PathValue("port"))
	if !ok {
		s.errorPage(w, r, http.StatusNotFound, errorData{
			Title:   "No such port",
			Message: "Ports are numbers from 1 to 65535.",
		})
		return
	}
	prefix := capPrefix(sid, port, c)
	rest, more := restOf(r, prefix)
	if v := s.check(r, routePreviewCap, sid, port); v.why != allowed {
		if v.why == badProof && (r.Method == http.MethodGet || r.Method == http.MethodHead) && !isUpgrade(r) {
			// The entry checks labd's cookie and hands out a new one.
			w.Header().Set("Cache-Control", "no-store")
			http.Redirect(w, r, withQuery(entryPrefix(sid, port)+rest, r), http.StatusFound)
			return
		}
		s.logRefusal(r, v)
		s.refuse(w, r, routePreviewCap, s.refusalOf(v))
		return
	}
	if !more {
		// Relative links of the app's page resolve against the
		// directory, so add it.
		http.Redirect(w, r, withQuery(prefix+"/", r), http.StatusFound)
		return
	}
	if r.Method == http.MethodOptions && r.Header.Get("Origin") == "null" && r.Header.Get("Access-Control-Request-Method") != "" {
		preflight(w, r)
		return
	}
	w.Header().Del("Content-Security-Policy")
	s.proxyPreview(w, r, previewTarget{sid: sid, port: port, prefix: prefix, rest: rest})
}

// preflight answers the CORS preflight of the app's own page: its opaque
// origin makes every fetch() to its own URL cross-origin, which the app
// (written for `curl localhost`) does not expect. Credentials stay off:
// the capability in the URL is the authorization.
func preflight(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", r.Header.Get("Access-Control-Request-Method"))
	if rh := r.Header.Get("Access-Control-Request-Headers"); rh != "" {
		h.Set("Access-Control-Allow-Headers", rh)
	}
	h.Set("Access-Control-Max-Age", "600")
	h.Add("Vary", "Origin")
	w.WriteHeader(http.StatusNoContent)
}

// previewForm serves the Ports box (?port=N): it sends the owner to the
// port's preview, on its own host with a fresh single-use token when
// labd has a preview domain.
func (s *server) previewForm(w http.ResponseWriter, r *http.Request) {
	sid := r.PathValue("sid")
	g, ok := s.access(w, r, routePorts, sid, 0)
	if !ok {
		return
	}
	port, ok := parsePort(strings.TrimSpace(r.URL.Query().Get("port")))
	if !ok {
		s.errorPage(w, r, http.StatusBadRequest, errorData{
			Title:   "No such port",
			Message: "Ports are numbers from 1 to 65535.",
		})
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	if s.previewDomain != "" {
		u := s.previewHostURL(r, sid, port) + authPath + "?token=" + s.signer.authToken(sid, port, g.owner)
		http.Redirect(w, r, u, http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, entryPrefix(sid, port)+"/", http.StatusSeeOther)
}

// parsePort accepts 1-65535 in plain decimal (no sign, no leading zeros),
// so that each port has one URL.
func parsePort(s string) (int, bool) {
	if s == "" || len(s) > 5 || s[0] == '0' {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != s {
		return 0, false
	}
	return n, true
}

func rewritePreview(pr *httputil.ProxyRequest) {
	t := targetOf(pr.In)
	port := strconv.Itoa(t.port)
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = t.sid + previewHostSuffix + ":" + port
	pr.Out.URL.RawPath = t.rest
	if p, err := url.PathUnescape(t.rest); err == nil {
		pr.Out.URL.Path = p
	} else {
		pr.Out.URL.Path = t.rest
	}
	if pr.Out.URL.Path == pr.Out.URL.RawPath {
		pr.Out.URL.RawPath = ""
	}
	pr.Out.URL.RawQuery = pr.In.URL.RawQuery
	// The app sees what `curl localhost:5001` in the terminal sends; the
	// browser's host is in X-Forwarded-Host.
	pr.Out.Host = "localhost:" + port
	pr.SetXForwarded()
	if isHTTPS(pr.In) {
		// The browser's scheme, as labd believes it (proxy.go).
		pr.Out.Header.Set("X-Forwarded-Proto", "https")
	}
	if t.prefix != "" {
		pr.Out.Header.Set("X-Forwarded-Prefix", t.prefix)
	}
	stripLabdCookies(pr.Out.Header)
}

// stripLabdCookies removes labd's cookies from the Cookie headers: they
// are labd's, not the app's, and must not leak to learner code (which
// could log them or send them elsewhere).
func stripLabdCookies(h http.Header) {
	var keep []string
	for _, line := range h.Values("Cookie") {
		for _, part := range strings.Split(line, ";") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			if name, _, _ := strings.Cut(part, "="); isLabdCookie(name) {
				continue
			}
			keep = append(keep, part)
		}
	}
	h.Del("Cookie")
	if len(keep) > 0 {
		h.Set("Cookie", strings.Join(keep, "; "))
	}
}

func modifyPreview(resp *http.Response) error {
	t := targetOf(resp.Request)
	h := resp.Header
	if loc := h.Get("Location"); loc != "" {
		h.Set("Location", rewriteLocation(loc, t))
	}
	// The app may not set labd's cookies, nor cookies for a parent domain
	// (other learners' preview hosts, labd's host): its cookies stay on
	// its own host, and over TLS they are Secure like labd's.
	if cs := h.Values("Set-Cookie"); len(cs) > 0 {
		h.Del("Set-Cookie")
		for _, c := range cs {
			if name, _, _ := strings.Cut(c, "="); !isLabdCookie(name) {
				h.Add("Set-Cookie", appCookie(c, isHTTPS(resp.Request)))
			}
		}
	}
	// HSTS is labd's to give (withClient) on every host it serves: an
	// app's max-age=0 on labd's host would undo it for the learner's
	// browser.
	h.Del("Strict-Transport-Security")
	if t.host {
		return nil // its own origin: the app's headers as they are
	}
	// labd's X-Frame-Options: DENY and Referrer-Policy: same-origin
	// (nothing is same-origin with an opaque origin, so the capability in
	// the URL is never sent as a Referer) stay; the app's own CSP adds to
	// previewCSP (browsers enforce every policy given).
	h.Del("X-Frame-Options")
	h.Del("Referrer-Policy")
	h.Add("Content-Security-Policy", previewCSP)
	// Requests of the app's own (opaque-origin) page: let it read the
	// answers, as it could at its own origin.
	if resp.Request.Header.Get("Origin") == "null" && h.Get("Access-Control-Allow-Origin") == "" {
		h.Set("Access-Control-Allow-Origin", "*")
		h.Add("Vary", "Origin")
	}
	return nil
}

// appCookie drops the Domain attribute of a Set-Cookie value of the app
// and, when secure, makes it Secure.
func appCookie(c string, secure bool) string {
	parts := strings.Split(c, ";")
	out := parts[:1]
	hasSecure := false
	for _, p := range parts[1:] {
		name, _, _ := strings.Cut(p, "=")
		switch name = strings.TrimSpace(name); {
		case strings.EqualFold(name, "domain"):
			continue
		case strings.EqualFold(name, "secure"):
			hasSecure = true
		}
		out = append(out, p)
	}
	if secure && !hasSecure {
		out = append(out, " Secure")
	}
	return strings.Join(out, ";")
}

// rewriteLocation maps a redirect of the app into its preview path: "/x"
// and "http://localhost:<port>/x" (or 127.0.0.1) become
// "<prefix>/x". Relative references ("x", "../x") resolve right as they
// are, and other hosts are left alone.
func rewriteLocation(loc string, t previewTarget) string {
	u, err := url.Parse(loc)
	if err != nil {
		return loc
	}
	switch {
	case u.Scheme == "" && u.Host == "":
		if !strings.HasPrefix(loc, "/") || strings.HasPrefix(loc, "//") {
			return loc
		}
	case (u.Scheme == "http" || u.Scheme == "https") && isLoopbackHost(u.Host, t.port):
		u.Scheme, u.Host, u.User = "", "", nil
	default:
		return loc
	}
	p := u.EscapedPath()
	if p == "" {
		p = "/"
	}
	out := t.prefix + p
	if u.RawQuery != "" || u.ForceQuery {
		out += "?" + u.RawQuery
	}
	if u.Fragment != "" {
		out += "#" + u.EscapedFragment()
	}
	return out
}

func isLoopbackHost(hostport string, port int) bool {
	host, p, err := net.SplitHostPort(hostport)
	if err != nil || p != strconv.Itoa(port) {
		return false
	}
	return host == "localhost" || host == "127.0.0.1" || host == "::1"
}

// previewError explains a failed proxy request on labd's own error page.
func (s *server) previewError(w http.ResponseWriter, r *http.Request, err error) {
	t := targetOf(r)
	if r.Context().Err() != nil {
		return // the browser went away
	}
	d := errorData{Title: fmt.Sprintf("Port %d is not answering", t.port)}
	switch {
	case errors.Is(err, errNoPortDialer):
		d.Message = "This sandbox runs without the container engine's network, so labd cannot open its ports."
	case errors.Is(err, errSandboxGone):
		d.Message = "The sandbox has ended. Open the lab page to start it again."
	case isNothingListening(err):
		d.Message = fmt.Sprintf("Nothing answers on port %d in your sandbox yet: is your container running with -p %s?", t.port, publishHint(t.port))
	default:
		s.log.Info("port preview", "sandbox", t.sid, "port", t.port, "err", err)
		d.Message = fmt.Sprintf("The app on port %d in your sandbox did not answer properly (%v). Check its logs (docker container logs) and reload.", t.port, err)
	}
	if t.host {
		hostErrorPage(w, http.StatusBadGateway, d)
		return
	}
	w.Header().Set("Content-Security-Policy", csp)
	w.Header().Set("Cache-Control", "no-store")
	s.errorPage(w, r, http.StatusBadGateway, d)
}

func publishHint(port int) string {
	if port == 5001 {
		return "5001:5000" // the Docker images lab's app
	}
	return strconv.Itoa(port) + ":<the port your app listens on>"
}

// isNothingListening is true for a refused connection: no process (and no
// published port) listens there.
func isNothingListening(err error) bool {
	var op *net.OpError
	return errors.Is(err, syscall.ECONNREFUSED) || errors.As(err, &op) && op.Op == "dial"
}
