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

// previewCSP applies to every proxied response. The app is the learner's
// own code served from labd's origin: "sandbox" without allow-same-origin
// gives its documents an opaque origin, so its scripts cannot read labd's
// cookies nor call labd's APIs as the learner.
const previewCSP = "sandbox allow-scripts allow-forms allow-popups"

// previewHostSuffix makes the upstream host name unique per sandbox, so the
// shared Transport never hands one learner's pooled connection to another
// (its pool is keyed by host:port). The name is never resolved: dialPreview
// parses it back.
const previewHostSuffix = ".sandbox.labd.invalid"

// newPreviewProxy returns the reverse proxy of /sandboxes/{sid}/ports/{port}/.
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

// previewPort is set in the request context by the handler for Rewrite,
// ModifyResponse and ErrorHandler.
type previewKey struct{}

type previewTarget struct {
	sid    string
	port   int
	prefix string // "/sandboxes/<sid>/ports/<port>"
}

func targetOf(r *http.Request) previewTarget {
	t, _ := r.Context().Value(previewKey{}).(previewTarget)
	return t
}

// preview proxies /sandboxes/{sid}/ports/{port}/{path...} to
// http://127.0.0.1:{port}/{path...} inside the owner's sandbox.
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
	if !s.ownsSandbox(w, r, sid) {
		return
	}
	prefix := "/sandboxes/" + sid + "/ports/" + strconv.Itoa(port)
	if !strings.HasPrefix(r.URL.EscapedPath(), prefix+"/") {
		// /sandboxes/{sid}/ports/5001 (no slash): relative links of the
		// app's page resolve against the directory, so add it.
		u := prefix + "/"
		if r.URL.RawQuery != "" {
			u += "?" + r.URL.RawQuery
		}
		http.Redirect(w, r, u, http.StatusMovedPermanently)
		return
	}
	// labd's own policy is for labd's pages; the app gets previewCSP
	// (ModifyResponse) and labd's returns only on labd's error page.
	w.Header().Del("Content-Security-Policy")
	ctx := context.WithValue(r.Context(), previewKey{}, previewTarget{sid: sid, port: port, prefix: prefix})
	s.previewProxy.ServeHTTP(w, r.WithContext(ctx))
}

// ownsSandbox answers 404 for an unknown sandbox and 403 for a learner who
// is not its owner, and reports whether the request may go on.
func (s *server) ownsSandbox(w http.ResponseWriter, r *http.Request, sid string) bool {
	_, owner, ok := s.opts.Sandboxes.Get(sid)
	if !ok {
		s.errorPage(w, r, http.StatusNotFound, errorData{
			Title:   "No such sandbox",
			Message: "This sandbox is not running. Open the lab page to start it, then open the port again.",
		})
		return false
	}
	if learner := s.keys.learnerFromRequest(r); learner == "" || learner != owner {
		s.errorPage(w, r, http.StatusForbidden, errorData{
			Title:   "Not your sandbox",
			Message: "Only the learner whose sandbox this is can open its ports.",
		})
		return false
	}
	return true
}

// previewForm turns the Ports box's form (?port=N) into the port's URL.
func (s *server) previewForm(w http.ResponseWriter, r *http.Request) {
	sid := r.PathValue("sid")
	if !s.ownsSandbox(w, r, sid) {
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
	http.Redirect(w, r, "/sandboxes/"+sid+"/ports/"+strconv.Itoa(port)+"/", http.StatusSeeOther)
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
	rest := strings.TrimPrefix(pr.In.URL.EscapedPath(), t.prefix) // starts with "/"
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = t.sid + previewHostSuffix + ":" + port
	pr.Out.URL.RawPath = rest
	if p, err := url.PathUnescape(rest); err == nil {
		pr.Out.URL.Path = p
	} else {
		pr.Out.URL.Path = rest
	}
	if pr.Out.URL.Path == pr.Out.URL.RawPath {
		pr.Out.URL.RawPath = ""
	}
	pr.Out.URL.RawQuery = pr.In.URL.RawQuery
	// The app sees what `curl localhost:5001` in the terminal sends.
	pr.Out.Host = "localhost:" + port
	pr.SetXForwarded()
	pr.Out.Header.Set("X-Forwarded-Prefix", t.prefix)
	stripLearnerCookie(pr.Out.Header)
}

// stripLearnerCookie removes labd's identity cookie from the Cookie
// headers: it is labd's, not the app's, and must not leak to learner code
// (which could log it or send it elsewhere).
func stripLearnerCookie(h http.Header) {
	var keep []string
	for _, line := range h.Values("Cookie") {
		for _, part := range strings.Split(line, ";") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			if name, _, _ := strings.Cut(part, "="); strings.TrimSpace(name) == cookieName {
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
	// The app may not overwrite the learner's labd identity.
	if cs := h.Values("Set-Cookie"); len(cs) > 0 {
		h.Del("Set-Cookie")
		for _, c := range cs {
			if name, _, _ := strings.Cut(c, "="); strings.TrimSpace(name) != cookieName {
				h.Add("Set-Cookie", c)
			}
		}
	}
	// labd's X-Frame-Options: DENY stays; the app's own policy adds to
	// previewCSP (browsers enforce every policy given).
	h.Del("X-Frame-Options")
	h.Add("Content-Security-Policy", previewCSP)
	return nil
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
	w.Header().Set("Content-Security-Policy", csp)
	w.Header().Set("Cache-Control", "no-store")
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
