package web

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/labd/labd/sandbox"
)

// Who may touch a learner's sandbox, and how a refusal is answered, is
// decided here and nowhere else: every route that reaches a sandbox
// (terminal, status, ports, previews, files) or a learner's registry
// account names its routeKind and asks access. The rule of each kind is in
// the rules table; decide applies it; refuse answers a refusal. The one
// Origin check, sameOrigin, is here too, and terminal.Upgrade is handed it.
//
// Refusals are consistent across routes: 404 when there is no such sandbox
// (never started, reaped, or its shell exited), 403 when there is one but
// the request may not touch it (someone else's, a foreign Origin, a bad
// or expired preview proof). They are labd's error page for a page load,
// the same in JSON ({"status","title","error"}) for scripts, and the
// preview host's own page on preview hosts.
//
// Whether a page load may start something new (a learner identity, a
// sandbox) is admission's decision, in admission.go: a rate per client
// and the server's maximum.

// routeKind is what a request wants from a sandbox.
type routeKind int

const (
	routeTerminal        routeKind = iota // GET /sandboxes/{sid}/terminal (websocket)
	routeStatus                           // GET /sandboxes/{sid}/status (websocket; the Check buttons)
	routeBanner                           // GET /bootstrap/status?sandbox= (the sandbox's notes, else none)
	routePorts                            // GET /sandboxes/{sid}/ports?port=N (the Ports box)
	routePreview                          // /sandboxes/{sid}/ports/{port}/... (path-based preview entry)
	routePreviewCap                       // /sandboxes/{sid}/preview/{port}/{cap}/...
	routePreviewHost                      // {port}-{sid}.{domain}/... (host-based preview)
	routePreviewHostAuth                  // {port}-{sid}.{domain}/.labd/auth?token=
	routeFilesRead                        // GET /sandboxes/{sid}/files[/download|/archive]
	routeFilesWrite                       // POST /sandboxes/{sid}/files (upload)
	routeRegistry                         // POST /registry/password (the learner's own account)
	routeTouch                            // POST /sandboxes/{sid}/touch (the idle warning's "I'm still here")
	routeAdmin                            // POST /instructor/sandboxes/{sid}/stop|remove
	routeReset                            // POST /labs/{id}/reset ("Reset my sandbox": the learner's own)
	routeStartStep                        // POST /labs/{id}/steps/{n}/start ("Start from this step": the learner's own)
	routeAnswer                           // POST /labs/{id}/questions/{check} (an answer: the learner's own)
)

// who says whose request a route accepts.
type who int

const (
	// whoOwner: the learner whose sandbox it is (labd's cookie).
	whoOwner who = iota
	// whoOwnerOrInstructor: the owner, or the instructor helping them
	// (instructor cookie or bearer token).
	whoOwnerOrInstructor
	// whoKeptWorkspace: as whoOwnerOrInstructor, and the instructor also
	// reaches the workspace an ended sandbox left on disk.
	whoKeptWorkspace
	// whoLearner: any learner with a valid cookie, for something of their
	// own that is not a sandbox (their registry account).
	whoLearner
	// whoCapability: the path capability in the URL; a request that
	// carries another learner's cookie, and a page load without the
	// owner's, are refused all the same (preview.go).
	whoCapability
	// whoHostCookie: the preview host's own cookie (preview_host.go).
	whoHostCookie
	// whoAuthToken: the single-use token that opens a preview host.
	whoAuthToken
	// whoInstructor: the instructor alone, whether the sandbox runs or
	// not (the handler tells a missing one).
	whoInstructor
)

// originRule is what a route needs of the Origin header.
type originRule int

const (
	// originAny: no check. Page loads and links (other sites may link to
	// labd), and previews, whose requests are the learner's app's.
	originAny originRule = iota
	// originWebsocket: an Origin, when sent, must be labd's own; browsers
	// send one on every websocket handshake, so a request without one is
	// not from a browser and rides no one's cookie.
	originWebsocket
	// originForm: a state change by a browser: Origin (or, failing that,
	// Referer) must be sent and be labd's own.
	originForm
)

// rule is one routeKind's access rule. The origin rule applies only when
// a cookie, which a browser sends on its own, is what authorized the
// request; a bearer token is sent deliberately.
type rule struct {
	who    who
	origin originRule
	// what the route reaches, for the refusal's message ("its terminal").
	what string
	// host: answered on a preview host, whose pages cannot use labd's.
	host bool
}

var rules = map[routeKind]rule{
	routeTerminal:        {who: whoOwner, origin: originWebsocket, what: "its terminal"},
	routeStatus:          {who: whoOwner, origin: originWebsocket, what: "its checks"},
	routeBanner:          {who: whoOwner, what: "its notes"},
	routePorts:           {who: whoOwnerOrInstructor, what: "its ports"},
	routePreview:         {who: whoOwnerOrInstructor, what: "its ports"},
	routePreviewCap:      {who: whoCapability, what: "its ports"},
	routePreviewHost:     {who: whoHostCookie, what: "its ports", host: true},
	routePreviewHostAuth: {who: whoAuthToken, what: "its ports", host: true},
	routeFilesRead:       {who: whoKeptWorkspace, what: "its files"},
	routeFilesWrite:      {who: whoKeptWorkspace, origin: originForm, what: "its files"},
	routeRegistry:        {who: whoLearner, origin: originForm, what: "a registry account"},
	routeTouch:           {who: whoOwner, origin: originForm, what: "its idle timer"},
	routeAdmin:           {who: whoInstructor, origin: originForm, what: "stop or remove sandboxes"},
	routeReset:           {who: whoLearner, origin: originForm, what: "your sandbox"},
	routeStartStep:       {who: whoLearner, origin: originForm, what: "your sandbox"},
	routeAnswer:          {who: whoLearner, origin: originForm, what: "your answers"},
}

// reason is decide's verdict.
type reason int

const (
	allowed       reason = iota
	noSandbox            // 404: not running (nor a kept workspace, for the instructor)
	notYours             // 403: someone else's
	foreignOrigin        // 403: the Origin (or Referer) is not labd's
	badProof             // 403: a preview capability or token that is forged, expired or spent
	noLearner            // 403: no learner cookie where the learner's own thing is asked for
)

// sandboxState is what the Manager says about the sandbox asked for.
type sandboxState struct {
	live  bool
	owner string
	kept  bool // not live, but its workspace is on disk
}

// asker is what the request proves about its sender.
type asker struct {
	learner    string // from labd's cookie; "" none or invalid
	instructor bool   // instructor cookie or bearer token
	bearer     bool   // ... by the Authorization header
	originOK   bool   // sameOrigin under the route's origin rule
	proof      error  // whoCapability/HostCookie/AuthToken: the proof checked against the owner
	pageLoad   bool   // a browser loading a page (isDocumentLoad)
}

// decide applies k's rule. It is pure, so that its table can be tested
// whole (access_test.go); access gathers its inputs.
func decide(k routeKind, st sandboxState, a asker) reason {
	r := rules[k]
	owner := st.live && a.learner != "" && a.learner == st.owner
	// Which credential carried the request: the owner's cookie first,
	// as the instructor is usually also a learner with a cookie.
	byCookie := true
	switch r.who {
	case whoLearner:
		if a.learner == "" {
			return noLearner
		}
	case whoOwner:
		if !st.live {
			return noSandbox
		}
		if !owner {
			return notYours
		}
	case whoOwnerOrInstructor, whoKeptWorkspace:
		if !st.live && !(r.who == whoKeptWorkspace && st.kept && a.instructor) {
			return noSandbox
		}
		if !owner && !a.instructor {
			return notYours
		}
		byCookie = owner || !a.bearer
	case whoCapability:
		if !st.live {
			return noSandbox
		}
		if a.proof != nil {
			return badProof
		}
		// Without any cookie a subresource of the app's page (opaque
		// origin: browsers send none) is authorized by the capability.
		if !owner && !a.instructor && (a.learner != "" || a.pageLoad) {
			return notYours
		}
	case whoHostCookie:
		if !st.live {
			return noSandbox
		}
		if a.proof != nil {
			return notYours
		}
	case whoAuthToken:
		if !st.live {
			return noSandbox
		}
		if a.proof != nil {
			return badProof
		}
	case whoInstructor:
		if !a.instructor {
			return notYours
		}
		byCookie = !a.bearer
	}
	if r.origin != originAny && byCookie && !a.originOK {
		return foreignOrigin
	}
	return allowed
}

// grant is what an allowed request may use.
type grant struct {
	sb      sandbox.Sandbox // nil for a kept workspace and routeRegistry
	owner   string
	learner string
	// workspace is the sandbox's workspace, or the kept one on disk.
	workspace string
}

// verdict is check's answer: the grant, or why not.
type verdict struct {
	grant
	why   reason
	rule  rule
	proof error
}

// check gathers decide's inputs for a request to sandbox sid (port: the
// preview's, else 0) and decides.
func (s *server) check(r *http.Request, k routeKind, sid string, port int) verdict {
	rl := rules[k]
	v := verdict{rule: rl}
	var st sandboxState
	if rl.who != whoLearner {
		// A sandbox its lab page is still starting is waited for: the
		// page answers before the shell is up (starting.go).
		_ = s.starts.await(r.Context(), sid)
		v.sb, st.owner, st.live = s.opts.Sandboxes.Get(sid)
	}
	a := asker{pageLoad: isDocumentLoad(r)}
	if !rl.host {
		// labd's cookies are host-only on labd's host; on a preview host
		// they are never read, whatever a client sends.
		a.learner = s.keys.learnerFromRequest(r)
		a.instructor, a.bearer = s.isInstructor(r)
		a.originOK = s.sameOrigin(r, rl.origin)
	}
	if st.live {
		switch rl.who {
		case whoCapability:
			a.proof = s.signer.checkPathCap(r.PathValue("cap"), sid, port, st.owner)
		case whoHostCookie:
			if !s.signer.hostCookieOK(r, sid, port, st.owner) {
				a.proof = errProofInvalid
			}
		case whoAuthToken:
			a.proof = s.signer.useAuthToken(r.URL.Query().Get("token"), sid, port, st.owner)
		}
	} else if rl.who == whoKeptWorkspace && a.instructor && sandbox.ValidID(sid) {
		d := s.opts.Sandboxes.WorkspaceDir(sid)
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			st.kept = true
			v.workspace = d
		}
	}
	v.why = decide(k, st, a)
	v.proof = a.proof
	if st.kept && v.why == allowed {
		// An ended sandbox's workspace may need mounting (its disk):
		// for as long as the request runs.
		dir, release, err := s.opts.Sandboxes.OpenWorkspace(r.Context(), sid)
		if err != nil {
			s.log.Error("open kept workspace", "sandbox", sid, "err", err)
			v.why = noSandbox
		} else {
			v.workspace = dir
			context.AfterFunc(r.Context(), release)
		}
	}
	v.owner, v.learner = st.owner, a.learner
	if v.sb != nil {
		v.workspace = v.sb.Workspace()
	}
	if v.why != allowed {
		v.grant = grant{}
	}
	return v
}

// access is check that answers a refusal itself: on false the request
// has been answered.
func (s *server) access(w http.ResponseWriter, r *http.Request, k routeKind, sid string, port int) (grant, bool) {
	v := s.check(r, k, sid, port)
	if v.why != allowed {
		s.logRefusal(r, v)
		s.refuse(w, r, k, s.refusalOf(v))
		return grant{}, false
	}
	return v.grant, true
}

// logRefusal notes refusals that may be an attack (a missing sandbox is
// everyday: a reaped one, a stale tab), with the client's address.
func (s *server) logRefusal(r *http.Request, v verdict) {
	switch v.why {
	case foreignOrigin:
		s.log.Warn("request refused: foreign origin", "path", r.URL.Path, "origin", r.Header.Get("Origin"),
			"referer", r.Header.Get("Referer"), "client", clientAddr(r))
	case notYours, badProof, noLearner:
		s.log.Info("request refused", "path", r.URL.Path, "host", r.Host, "why", s.refusalOf(v).Title, "client", clientAddr(r))
	}
}

// allows is check for routes that degrade quietly instead of refusing.
func (s *server) allows(r *http.Request, k routeKind, sid string) bool {
	return s.check(r, k, sid, 0).why == allowed
}

// refusal is a refused request's answer; its JSON form is what scripts
// (the lab page's fetches, curl) get.
type refusal struct {
	Status  int    `json:"status"`
	Title   string `json:"title"`
	Message string `json:"error"`
}

// refusalOf words v's refusal.
func (s *server) refusalOf(v verdict) refusal {
	switch v.why {
	case noSandbox:
		return refusal{http.StatusNotFound, "No such sandbox",
			"This sandbox is not running. Open its lab page to start it, then try again."}
	case notYours:
		if v.rule.who == whoInstructor {
			return refusal{http.StatusForbidden, "Instructor only", "Only the instructor can " + v.rule.what + "."}
		}
		who := "the learner whose sandbox this is"
		switch v.rule.who {
		case whoOwnerOrInstructor, whoKeptWorkspace, whoCapability:
			who += ", or the instructor,"
		}
		msg := "Only " + who + " can open " + v.rule.what + "."
		if v.rule.host {
			msg = "Only the learner whose sandbox this is can open its ports: open this port from the Ports box of your lab page."
		}
		return refusal{http.StatusForbidden, "Not your sandbox", msg}
	case foreignOrigin:
		return refusal{http.StatusForbidden, "Request refused",
			"This request does not come from labd's own pages, so it may not change " + v.rule.what + ". Use the lab page."}
	case badProof:
		if v.rule.who == whoAuthToken {
			msg := "This link does not open this port. Open the port from the Ports box of your lab page."
			if errors.Is(v.proof, errProofExpired) || errors.Is(v.proof, errProofUsed) {
				msg = "This link works once and for a minute only. Open the port again from the Ports box of your lab page."
			}
			return refusal{http.StatusForbidden, "Preview link not valid", msg}
		}
		return refusal{http.StatusForbidden, "Preview link expired",
			"This preview link is no longer valid. Open the port again from your lab page."}
	case noLearner:
		return refusal{http.StatusForbidden, "Request refused",
			"Open a lab first: your registry account comes with it."}
	}
	return refusal{http.StatusInternalServerError, "Internal error", "labd could not decide on this request."}
}

// refuse answers a refusal for route kind k: on a preview host its own
// page; labd's error page for a page load; JSON otherwise. Routes answer
// their own later refusals (a sandbox that ended meanwhile) through it
// too.
func (s *server) refuse(w http.ResponseWriter, r *http.Request, k routeKind, ref refusal) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	d := errorData{Title: ref.Title, Message: ref.Message}
	switch {
	case rules[k].host:
		hostErrorPage(w, ref.Status, d)
	case wantsPage(r):
		// labd's policy, whatever the route did to the header.
		h.Set("Content-Security-Policy", csp)
		s.errorPage(w, r, ref.Status, d)
	default:
		h.Set("Content-Type", "application/json")
		h.Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(ref.Status)
		json.NewEncoder(w).Encode(ref)
	}
}

// wantsPage is true for a browser loading a page (labd's error page
// shows), false for scripts, fetches and websocket handshakes (JSON).
func wantsPage(r *http.Request) bool {
	if m := r.Header.Get("Sec-Fetch-Mode"); m != "" {
		return m == "navigate"
	}
	return !isUpgrade(r) && strings.Contains(r.Header.Get("Accept"), "text/html")
}

// sameOrigin is labd's one Origin check. Under originWebsocket a request
// without Origin passes (not a browser); under originForm it needs
// Origin, or failing that Referer. The origin must be labd's own, as the
// browser sees it (scheme and the Host it sent; https when the request
// came over TLS, directly or per a trusted proxy, see proxy.go), or one
// of Options.AllowedOrigins (a full origin or host[:port]). The opaque
// origin "null" is never labd's.
func (s *server) sameOrigin(r *http.Request, rl originRule) bool {
	if rl == originAny {
		return true
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		if rl != originForm {
			return true
		}
		ref, err := url.Parse(r.Header.Get("Referer"))
		if err != nil || ref.Host == "" {
			return false
		}
		origin = ref.Scheme + "://" + ref.Host
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	// Without TLS in sight, a proxy labd does not trust may still have
	// served the page over https: either scheme is the page's own.
	if strings.EqualFold(u.Host, r.Host) && (u.Scheme == "https" || !isHTTPS(r)) {
		return true
	}
	for _, a := range s.opts.AllowedOrigins {
		if strings.EqualFold(a, origin) || strings.EqualFold(a, u.Host) {
			return true
		}
	}
	return false
}
