package web

import (
	"bytes"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"strconv"
	"strings"
)

// Host-based preview: with Options.PreviewDomain, a request whose Host is
// {port}-{sid}.{domain} goes to that port of that sandbox at path /, for
// apps that must live at the root. The preview host is an origin of its
// own: labd's cookie (host-only on labd's host) never reaches it and is
// never accepted there; the owner proves ownership with the host's own
// cookie, set by a single-use link that labd hands out on its own host
// (previewForm). Nothing of labd (pages, API, terminal) is served on
// preview hosts. docs/preview.md has the design and a deployment note.

// authPath is the preview host's one route of its own: it turns a token
// into the host's cookie. Everything under /.labd/ is reserved.
const authPath = "/.labd/auth"

// NormalizePreviewDomain checks a --preview-domain value ("preview.example.com",
// or "localhost:8080" with the port the browser uses) and returns it in the
// form labd matches Host headers against.
func NormalizePreviewDomain(d string) (string, error) {
	d = strings.ToLower(strings.TrimSpace(d))
	if strings.ContainsAny(d, "/*@") {
		return "", fmt.Errorf("preview domain %q: give the domain alone, e.g. preview.example.com or localhost:8080, without scheme, path or *.", d)
	}
	name, port := d, ""
	if h, p, err := net.SplitHostPort(d); err == nil {
		name, port = h, p
		if _, ok := parsePort(p); !ok {
			return "", fmt.Errorf("preview domain %q: port %q is not 1-65535", d, p)
		}
	}
	name = strings.TrimSuffix(name, ".")
	if name == "" {
		return "", fmt.Errorf("preview domain %q: empty", d)
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 || strings.HasPrefix(label, "-") || strings.HasSuffix(label, "-") {
			return "", fmt.Errorf("preview domain %q: %q is not a DNS label (give the domain alone, e.g. preview.example.com, without scheme or *.)", d, label)
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return "", fmt.Errorf("preview domain %q: %q is not a DNS label (give the domain alone, e.g. preview.example.com, without scheme or *.)", d, label)
			}
		}
	}
	if port != "" {
		return name + ":" + port, nil
	}
	return name, nil
}

// hostKind is what a Host header names.
type hostKind int

const (
	hostLabd    hostKind = iota // anything not under the preview domain
	hostPreview                 // {port}-{sid}.{domain}
	hostInvalid                 // under the preview domain, but not a preview
)

// previewHostOf classifies host. Every host under the preview domain is
// either a well-formed preview host or refused: labd never answers as
// itself there.
func (s *server) previewHostOf(host string) (kind hostKind, sid string, port int) {
	if s.previewDomain == "" {
		return hostLabd, "", 0
	}
	host = strings.ToLower(host)
	name, hport := host, ""
	if h, p, err := net.SplitHostPort(host); err == nil {
		name, hport = h, p
	}
	name = strings.TrimSuffix(name, ".")
	dname, dport := s.previewDomain, ""
	if h, p, err := net.SplitHostPort(s.previewDomain); err == nil {
		dname, dport = h, p
	}
	label, ok := strings.CutSuffix(name, "."+dname)
	if !ok {
		return hostLabd, "", 0
	}
	if dport != "" && hport != dport {
		return hostInvalid, "", 0
	}
	p, sid, ok := strings.Cut(label, "-")
	port, pok := parsePort(p)
	if !ok || !pok || !validSandboxID(sid) {
		return hostInvalid, "", 0
	}
	return hostPreview, sid, port
}

// validSandboxID is exactly the form keys.sandboxID makes.
func validSandboxID(sid string) bool {
	hexPart, ok := strings.CutPrefix(sid, sandboxIDPrefix)
	return ok && len(hexPart) == 16 && isHex(hexPart)
}

// withPreviewHosts routes preview hosts before labd's own handler.
func (s *server) withPreviewHosts(labd http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch kind, sid, port := s.previewHostOf(r.Host); kind {
		case hostLabd:
			labd.ServeHTTP(w, r)
		case hostPreview:
			s.servePreviewHost(w, r, sid, port)
		default:
			hostErrorPage(w, http.StatusNotFound, errorData{
				Title:   "No such preview",
				Message: "Preview addresses are {port}-{sandbox}." + s.previewDomain + "; open your app from the Ports box of your lab page.",
			})
		}
	})
}

func (s *server) servePreviewHost(w http.ResponseWriter, r *http.Request, sid string, port int) {
	if r.URL.Path == authPath {
		s.previewHostAuth(w, r, sid, port)
		return
	}
	if strings.HasPrefix(r.URL.Path, "/.labd/") {
		hostErrorPage(w, http.StatusNotFound, errorData{Title: "Not found", Message: "Paths under /.labd/ belong to labd's preview."})
		return
	}
	if _, ok := s.access(w, r, routePreviewHost, sid, port); !ok {
		return
	}
	s.proxyPreview(w, r, previewTarget{sid: sid, port: port, rest: r.URL.EscapedPath(), host: true})
}

// previewHostAuth spends a token from previewForm and gives this host its
// cookie: host-only (no Domain), so neither labd nor another preview host
// ever receives it.
func (s *server) previewHostAuth(w http.ResponseWriter, r *http.Request, sid string, port int) {
	w.Header().Set("Referrer-Policy", "no-referrer") // the token stays here
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		hostErrorPage(w, http.StatusMethodNotAllowed, errorData{Title: "Method not allowed", Message: "Open this link with GET."})
		return
	}
	g, ok := s.access(w, r, routePreviewHostAuth, sid, port)
	if !ok {
		return
	}
	setCookie(w, r, &http.Cookie{
		Name:     previewCookie,
		Value:    s.signer.hostCookie(sid, port, g.owner),
		Path:     "/",
		MaxAge:   int(hostCookieTTL.Seconds()),
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	})
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// previewHostURL is the origin of a port's preview host, with the scheme
// the browser used to reach labd.
func (s *server) previewHostURL(r *http.Request, sid string, port int) string {
	scheme := "http"
	if isHTTPS(r) {
		scheme = "https"
	}
	return scheme + "://" + strconv.Itoa(port) + "-" + sid + "." + s.previewDomain
}

// hostErrorCSP: the page is self-contained, so that nothing it loads comes
// from the preview host (which is the learner's app).
const hostErrorCSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

var hostErrorTmpl = template.Must(template.New("").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} · labd</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#1f2328}h1{font-size:1.5rem}</style>
</head><body><main class="error-page"><h1>{{.Title}}</h1><p>{{.Message}}</p></main></body></html>
`))

// hostErrorPage is labd's error page on a preview host: it does not use
// labd's layout, whose assets live on labd's host.
func hostErrorPage(w http.ResponseWriter, status int, d errorData) {
	var buf bytes.Buffer
	if err := hostErrorTmpl.Execute(&buf, d); err != nil {
		http.Error(w, d.Title, status)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", hostErrorCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}
