package web

import (
	"bytes"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labd/labd/grader"
	"github.com/labd/labd/labs"
	"github.com/labd/labd/metrics"
	"github.com/labd/labd/sandbox"
	"github.com/labd/labd/web/terminal"
)

// Options configures the handler returned by New.
type Options struct {
	// Catalog provides the labs. Required.
	Catalog *labs.Catalog
	// Sandboxes creates and finds learners' sandboxes. Required. The
	// handler registers an OnDestroy hook on it to tell attached browsers
	// why their terminal ends.
	Sandboxes *sandbox.Manager
	// Secret signs learner cookies and derives sandbox IDs. Required; 32
	// random bytes kept across restarts, so learners keep their identity.
	Secret []byte
	// AllowedOrigins lists extra Origins (e.g. "https://labs.example.com")
	// allowed to open websockets and post forms; the request's own host is
	// always allowed (access.go, sameOrigin).
	AllowedOrigins []string
	// TrustedProxies are the reverse proxies whose X-Forwarded-Proto and
	// X-Forwarded-For labd believes (proxy.go; ParseTrustedProxy); from
	// other peers those headers are ignored. None by default.
	TrustedProxies []netip.Prefix
	// HSTSIncludeSubdomains adds includeSubDomains to the HSTS header sent
	// over TLS: only when every host under labd's, preview hosts
	// included, is served over HTTPS.
	HSTSIncludeSubdomains bool
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Hub configures every terminal hub (scrollback size, stall timeout).
	Hub terminal.HubOptions
	// Grader re-evaluates the checks of live sandboxes and streams their
	// state to the lab page (web/grading.go); nil: checks stay "not
	// checked yet".
	Grader *grader.Live
	// InstructorToken opens /instructor (web/instructor.go); empty: no
	// instructor view.
	InstructorToken string
	// Accounts gives every learner a classroom registry account named by
	// their handle, shown on the lab page and put in the sandbox as
	// LABD_USER (web/registry.go); nil: no registry, no Registry box.
	Accounts LearnerAccounts
	// RegistryAddr is the registry's own address, shown for tools other
	// than the sandbox's docker (which needs none: the registry stands
	// in for Docker Hub); "" shows none.
	RegistryAddr string
	// PreviewDomain turns on host-based port previews: {port}-{sandbox}.{domain}
	// serves that port at / (web/preview_host.go, docs/preview.md). It
	// must have passed NormalizePreviewDomain; "" keeps path-based only.
	PreviewDomain string
	// MaxUpload bounds one upload into a workspace (web/files.go), all
	// its files together; 0 means DefaultMaxUpload (100 MiB).
	MaxUpload int64
	// BaseImages reports the background bootstrap of the base images
	// (web/bootstrap.go): a banner on every page while it runs, notes on
	// lab pages whose images are missing; nil: none.
	BaseImages BaseImages
	// ReadyChecks are what /readyz asks besides the base images.
	ReadyChecks []ReadyCheck
	// Metrics, when set, count requests and terminals and serve
	// GET /metrics.
	Metrics *metrics.Metrics
	// Admission bounds how fast one client address starts new learners
	// and sandboxes (web/admission.go); the zero value is the defaults.
	Admission AdmissionLimit

	// touchEvery overrides touchInterval (tests).
	touchEvery time.Duration
	// now is the admission buckets' clock (tests); nil: time.Now.
	now func() time.Time
}

// server holds the handler's state. Its exported surface is only
// ServeHTTP, through the mux returned by New.
type server struct {
	opts Options
	// settingUp holds the sandboxes running a step's setup (setup.go):
	// one at a time each, they share the workspace's snapshot.
	settingUp sync.Map
	log       *slog.Logger
	keys      keys
	static    *staticFiles
	pages     map[string]*template.Template
	mux       *http.ServeMux
	termsMu   sync.Mutex
	terms     map[string]*liveTerminal // sandbox ID -> hub of its live sandbox
	starts    startings                // lab pages' sandbox starts (starting.go)
	// previewProxy serves /sandboxes/{sid}/ports/{port}/ (preview.go).
	previewProxy *httputil.ReverseProxy
	// signer and previewDomain: the previews' proofs of ownership and
	// hosts (preview_auth.go, preview_host.go).
	signer        *previewSigner
	previewDomain string
	// admission: a token bucket per client (admission.go); nil: no limit.
	admission *limiter
	// fullLogged is when "the class is full" was last logged (unix nanos).
	fullLogged atomic.Int64
}

// New returns the web UI's handler. It panics if a required option is
// missing or the embedded templates do not parse (both programming errors).
func New(opts Options) http.Handler {
	if opts.Catalog == nil || opts.Sandboxes == nil || len(opts.Secret) == 0 {
		panic("web.New: Catalog, Sandboxes and Secret are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.touchEvery <= 0 {
		opts.touchEvery = touchInterval
	}
	static, err := newStaticFiles(map[string][]byte{
		"highlight.css": []byte(labs.HighlightCSS()),
	})
	if err != nil {
		panic("web.New: embedded static files: " + err.Error())
	}
	s := &server{
		opts:   opts,
		log:    opts.Logger,
		keys:   deriveKeys(opts.Secret),
		static: static,
		terms:  map[string]*liveTerminal{},
	}
	s.admission = newLimiter(opts.Admission, opts.now)
	s.pages = parsePages(static, s.bannerOf)
	s.previewProxy = s.newPreviewProxy()
	s.signer = newPreviewSigner(opts.Secret)
	if opts.PreviewDomain != "" {
		d, err := NormalizePreviewDomain(opts.PreviewDomain)
		if err != nil {
			panic("web.New: " + err.Error())
		}
		s.previewDomain = d
	}
	if !static.has("vendor/xterm.js") {
		s.log.Warn("web/static/vendor is empty: the terminal will not load; this tree lost the committed xterm.js files (make assets makes them)")
	}
	opts.Sandboxes.OnDestroy(s.sandboxDestroyed)
	opts.Sandboxes.OnWarn(s.sandboxWarned)
	if opts.Grader != nil {
		opts.Sandboxes.OnDestroy(func(sid string, _ sandbox.Reason) { opts.Grader.Stop(sid) })
	}

	s.mux = http.NewServeMux()
	routes := []struct {
		pattern string
		handler http.HandlerFunc
	}{
		{"GET /{$}", s.catalogue},
		{"GET /labs/{id}", s.labPage},
		{"GET /labs/{id}/files/{path...}", s.labFile},
		{"POST /registry/password", s.rotatePassword},
		{"GET /sandboxes/{sid}/terminal", s.terminal},
		{"GET /sandboxes/{sid}/status", s.status},
		{"POST /sandboxes/{sid}/touch", s.touch},
		{"POST /labs/{id}/reset", s.resetSandbox},
		{"POST /labs/{id}/steps/{n}/start", s.startFromStep},
		{"POST /labs/{id}/questions/{check}", s.answerQuestion},
		{"GET /sandboxes/{sid}/ports", s.previewForm},
		{"/sandboxes/{sid}/ports/{port}", s.preview},
		{"/sandboxes/{sid}/ports/{port}/{path...}", s.preview},
		{"/sandboxes/{sid}/preview/{port}/{cap}", s.previewCapped},
		{"/sandboxes/{sid}/preview/{port}/{cap}/{path...}", s.previewCapped},
		{"GET /sandboxes/{sid}/files", s.filesList},
		{"GET /sandboxes/{sid}/files/download", s.fileDownload},
		{"GET /sandboxes/{sid}/files/archive", s.filesArchive},
		{"POST /sandboxes/{sid}/files", s.filesUpload},
		{"GET /instructor", s.instructor},
		{"GET /instructor.csv", s.instructorCSV},
		{"GET /instructor.json", s.instructorJSON},
		{"GET /instructor.xml", s.instructorJUnit},
		{"POST /instructor/sandboxes/{sid}/{action}", s.instructorSandbox},
		{"GET /static/{path...}", s.static.ServeHTTP},
		{"GET /bootstrap/status", s.bootstrapStatus},
		{"GET /healthz", healthz},
		{"GET /readyz", s.readyz},
		{"/", s.notFound},
	}
	for _, r := range routes {
		s.mux.Handle(r.pattern, r.handler)
	}
	if opts.Metrics != nil {
		s.mux.Handle("GET /metrics", s.metricsAccess(opts.Metrics.Handler()))
	}
	if s.previewDomain != "" {
		return s.withClient(s.withPreviewHosts(securityHeaders(s.counted(s.mux))))
	}
	return s.withClient(securityHeaders(s.counted(s.mux)))
}

// parsePages builds one template per page, each on top of the shared layout.
func parsePages(static *staticFiles, banner func(any) *banner) map[string]*template.Template {
	funcs := template.FuncMap{"asset": static.url, "bootstrapBanner": banner}
	base := template.Must(template.New("").Funcs(funcs).ParseFS(embedded, "templates/layout.html"))
	pages := map[string]*template.Template{}
	for _, name := range []string{"catalogue", "lab", "error", "instructor"} {
		t := template.Must(base.Clone())
		pages[name] = template.Must(t.ParseFS(embedded, "templates/"+name+".html"))
	}
	return pages
}

// csp allows nothing from other origins. xterm.js sets inline styles, so
// style-src needs 'unsafe-inline'; 'self' in connect-src covers ws/wss to
// the same host in current browsers.
const csp = "default-src 'self'; connect-src 'self'; img-src 'self' data:; " +
	"style-src 'self' 'unsafe-inline'; object-src 'none'; base-uri 'none'; " +
	"form-action 'self'; frame-ancestors 'none'"

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("X-Frame-Options", "DENY")
		next.ServeHTTP(w, r)
	})
}

func healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write([]byte("ok\n"))
}

// render executes a page into a buffer first, so a template error becomes
// a clean 500 instead of half a page.
func (s *server) render(w http.ResponseWriter, r *http.Request, status int, page string, data any) {
	var buf bytes.Buffer
	if err := s.pages[page].ExecuteTemplate(&buf, "layout", data); err != nil {
		s.log.Error("render page", "page", page, "path", r.URL.Path, "err", err)
		http.Error(w, "internal error rendering page", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	// Pages name the learner's sandbox: never shared caches. A page may
	// ask for stricter (no-store where it shows a password).
	if h.Get("Cache-Control") == "" {
		h.Set("Cache-Control", "private, no-cache")
	}
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

type errorData struct {
	Title    string
	Message  string
	Problems []labs.Problem
}

func (s *server) errorPage(w http.ResponseWriter, r *http.Request, status int, d errorData) {
	s.render(w, r, status, "error", d)
}

func (s *server) notFound(w http.ResponseWriter, r *http.Request) {
	s.errorPage(w, r, http.StatusNotFound, errorData{
		Title:   "Page not found",
		Message: "There is nothing at " + r.URL.Path + ".",
	})
}

// labError maps a Catalog error to its page: unknown lab 404, broken lab
// 422 (the request was fine, the lab's content is not) with its problems.
func (s *server) labError(w http.ResponseWriter, r *http.Request, id string, err error) {
	var broken *labs.BrokenError
	switch {
	case errors.Is(err, labs.ErrNotFound):
		s.errorPage(w, r, http.StatusNotFound, errorData{
			Title:   "Lab not found",
			Message: "There is no lab called “" + id + "”.",
		})
	case errors.As(err, &broken):
		s.errorPage(w, r, http.StatusUnprocessableEntity, errorData{
			Title:    "This lab is broken",
			Message:  "The lab “" + id + "” cannot be shown until its author fixes it.",
			Problems: broken.Problems,
		})
	default:
		s.log.Error("load lab", "lab", id, "err", err)
		s.errorPage(w, r, http.StatusInternalServerError, errorData{
			Title:   "Could not load the lab",
			Message: "labd could not load this lab. The server log has details.",
		})
	}
}
