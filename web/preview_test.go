package web

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/labd/labd/internal/testenv"
	"github.com/labd/labd/labs"
	"github.com/labd/labd/sandbox"
	"github.com/labd/labd/sandbox/engine"
	"github.com/labd/labd/sandbox/engine/image"
	"github.com/labd/labd/sandbox/enginebox"
	"github.com/labd/labd/sandbox/nsbox"
)

// portsProvider gives real nsbox sandboxes a DialPort that reaches local
// listeners: it stands in for the engine's network (whose published ports
// listen in the sandbox's netns) so the proxy's mechanics can be tested
// without a container runtime.
type portsProvider struct {
	inner sandbox.Provider
	mu    sync.Mutex
	ports map[int]string // port -> 127.0.0.1 address that answers for it
}

func (p *portsProvider) Create(ctx context.Context, spec sandbox.Spec) (sandbox.Sandbox, error) {
	sb, err := p.inner.Create(ctx, spec)
	if err != nil {
		return nil, err
	}
	return &portsSandbox{Sandbox: sb, p: p}, nil
}

func (p *portsProvider) set(port int, addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ports[port] = addr
}

type portsSandbox struct {
	sandbox.Sandbox
	p *portsProvider
}

func (s *portsSandbox) DialPort(ctx context.Context, port int) (net.Conn, error) {
	s.p.mu.Lock()
	addr, ok := s.p.ports[port]
	s.p.mu.Unlock()
	if !ok {
		// A port nobody listens on: the same refusal as in a netns.
		addr = closedAddr
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

// closedAddr is a loopback port that was listened on and closed, so
// dialing it is refused.
var closedAddr = func() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "127.0.0.1:1"
	}
	a := l.Addr().String()
	l.Close()
	return a
}()

// opts adjust the Options; they get the server's address (host:port).
func newPreviewServer(t *testing.T, opts ...func(o *Options, addr string)) (*testServer, *portsProvider) {
	t.Helper()
	testenv.Root(t, "sandboxes (namespaces)")
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	pp := &portsProvider{inner: nsbox.New(nsbox.Options{}), ports: map[int]string{}}
	mgr := sandbox.NewManager(pp, sandbox.ManagerOptions{DataDir: t.TempDir(), Logger: quiet})
	o := Options{
		Logger:    quiet,
		Catalog:   labs.NewCatalog("testdata/content"),
		Sandboxes: mgr,
		Secret:    testSecret,
	}
	srv := httptest.NewUnstartedServer(nil)
	for _, f := range opts {
		f(&o, srv.Listener.Addr().String())
	}
	srv.Config.Handler = New(o)
	srv.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := mgr.Close(ctx); err != nil {
			t.Errorf("close manager: %v", err)
		}
		srv.Close()
	})
	return &testServer{Server: srv, mgr: mgr}, pp
}

var testSecret = []byte("0123456789abcdef0123456789abcdef")

// skewedSigner signs as the server does, at another time (expired proofs).
func skewedSigner(d time.Duration) *previewSigner {
	p := newPreviewSigner(testSecret)
	p.now = func() time.Time { return time.Now().Add(d) }
	return p
}

// capURL opens a port through its entry and returns the capability URL it
// redirects to, without the app's path ("http://.../preview/5001/<cap>").
func capURL(t *testing.T, c *http.Client, base, sid string, port int) string {
	t.Helper()
	resp, body := get(t, c, fmt.Sprintf("%s/sandboxes/%s/ports/%d/", base, sid, port))
	loc := resp.Header.Get("Location")
	m := regexp.MustCompile(fmt.Sprintf(`^/sandboxes/%s/preview/%d/[0-9]+\.[A-Za-z0-9_-]{22}/$`, sid, port)).FindString(loc)
	if resp.StatusCode != http.StatusFound || m == "" {
		t.Fatalf("entry of port %d: got %d Location %q, want 302 to a capability URL\n%s", port, resp.StatusCode, loc, body)
	}
	return base + strings.TrimSuffix(loc, "/")
}

// learnerApp is the learner's app: it echoes what it received, redirects,
// sets cookies and speaks websocket.
func learnerApp(t *testing.T) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "img-src 'self'")
		w.Header().Set("X-Frame-Options", "SAMEORIGIN")
		w.Header().Set("Referrer-Policy", "unsafe-url")
		fmt.Fprintf(w, "hello world!\nmethod=%s\npath=%s\nquery=%s\nhost=%s\ncookie=%s\nprefix=%s\n",
			r.Method, r.URL.Path, r.URL.RawQuery, r.Host, r.Header.Get("Cookie"), r.Header.Get("X-Forwarded-Prefix"))
	})
	mux.HandleFunc("/go-abs", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/login?next=%2Fx", http.StatusFound)
	})
	mux.HandleFunc("/go-url", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "http://"+r.Host+"/done#top")
		w.WriteHeader(http.StatusFound)
	})
	mux.HandleFunc("/go-rel", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "sub/page")
		w.WriteHeader(http.StatusFound)
	})
	mux.HandleFunc("/go-away", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "http://example.com/x")
		w.WriteHeader(http.StatusFound)
	})
	mux.HandleFunc("/cookies", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "session", Value: "app", Path: "/"})
		http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "evil", Path: "/"})
		http.SetCookie(w, &http.Cookie{Name: previewCookie, Value: "evil", Path: "/"})
		http.SetCookie(w, &http.Cookie{Name: instructorCookie, Value: "evil", Path: "/"})
		w.Header().Add("Set-Cookie", "wide=1; Path=/; Domain=preview.test; HttpOnly")
	})
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			mt, m, err := c.ReadMessage()
			if err != nil {
				return
			}
			c.WriteMessage(mt, append([]byte("echo: "), m...))
		}
	})
	app := httptest.NewServer(mux)
	t.Cleanup(app.Close)
	return app
}

func TestPreview(t *testing.T) {
	s, pp := newPreviewServer(t)
	app := learnerApp(t)
	pp.set(5001, app.Listener.Addr().String())

	owner, other := s.client(t), s.client(t)
	sid := sandboxOf(t, owner, s.URL)
	otherSid := sandboxOf(t, other, s.URL) // the other learner has an identity (and a sandbox) too
	base := s.URL + "/sandboxes/" + sid + "/ports/"
	ownerID := learnerOf(t, owner, s.URL)
	// follow is the owner's browser following redirects.
	follow := &http.Client{Jar: owner.Jar, Timeout: waitTimeout}
	u, _ := url.Parse(s.URL)
	owner.Jar.SetCookies(u, []*http.Cookie{{Name: "theme", Value: "dark", Path: "/"}})
	capped := capURL(t, owner, s.URL, sid, 5001)
	capPath := strings.TrimPrefix(capped, s.URL)

	t.Run("owner gets the app", func(t *testing.T) {
		resp, body := get(t, follow, base+"5001/some/where%2Fx?a=1&b=2")
		if resp.StatusCode != 200 {
			t.Fatalf("status = %d, want 200:\n%s", resp.StatusCode, body)
		}
		if p := resp.Request.URL.EscapedPath(); !strings.HasPrefix(p, "/sandboxes/"+sid+"/preview/5001/") || !strings.HasSuffix(p, "/some/where%2Fx") {
			t.Errorf("final URL %s, want the path under the capability prefix", resp.Request.URL)
		}
		for _, want := range []string{
			"hello world!", "method=GET", "path=/some/where/x", "query=a=1&b=2",
			"host=localhost:5001", "prefix=/sandboxes/" + sid + "/preview/5001/",
			"cookie=theme=dark\n",
		} {
			if !strings.Contains(body, want) {
				t.Errorf("app got a request without %q:\n%s", want, body)
			}
		}
		if strings.Contains(body, cookieName) {
			t.Errorf("labd's cookie %s reached the app:\n%s", cookieName, body)
		}
		csps := resp.Header.Values("Content-Security-Policy")
		if !slices.Contains(csps, previewCSP) {
			t.Errorf("CSP = %q, want %q among them", csps, previewCSP)
		}
		if slices.Contains(csps, csp) {
			t.Errorf("labd's own CSP is on a proxied response: %q", csps)
		}
		if !slices.Contains(csps, "img-src 'self'") {
			t.Errorf("the app's own CSP was dropped: %q", csps)
		}
		if got := resp.Header.Values("X-Frame-Options"); len(got) != 1 || got[0] != "DENY" {
			t.Errorf("X-Frame-Options = %q, want labd's DENY only", got)
		}
		// The app's unsafe-url would send the capability to other sites.
		if got := resp.Header.Values("Referrer-Policy"); len(got) != 1 || got[0] != "same-origin" {
			t.Errorf("Referrer-Policy = %q, want labd's same-origin only", got)
		}
	})

	t.Run("POST passes", func(t *testing.T) {
		for _, u := range []string{base + "5001/form", capped + "/form"} {
			resp, err := owner.Post(u, "application/x-www-form-urlencoded", strings.NewReader("x=1"))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !strings.Contains(string(b), "method=POST\npath=/form\n") {
				t.Errorf("POST %s = %d:\n%s", u, resp.StatusCode, b)
			}
		}
	})

	t.Run("entry and slash redirects", func(t *testing.T) {
		resp, _ := get(t, owner, base+"5001?q=1")
		re := regexp.MustCompile(`^/sandboxes/` + sid + `/preview/5001/[^/]+/\?q=1$`)
		if resp.StatusCode != http.StatusFound || !re.MatchString(resp.Header.Get("Location")) {
			t.Errorf("got %d Location %q, want 302 matching %s", resp.StatusCode, resp.Header.Get("Location"), re)
		}
		resp, _ = get(t, owner, capped+"?q=1")
		if want := capPath + "/?q=1"; resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != want {
			t.Errorf("got %d Location %q, want 302 %q", resp.StatusCode, resp.Header.Get("Location"), want)
		}
	})

	t.Run("redirects are rewritten", func(t *testing.T) {
		for path, want := range map[string]string{
			"/go-abs":  capPath + "/login?next=%2Fx",
			"/go-url":  capPath + "/done#top",
			"/go-rel":  "sub/page",
			"/go-away": "http://example.com/x",
		} {
			resp, body := get(t, owner, capped+path)
			if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != want {
				t.Errorf("%s: got %d Location %q, want 302 %q\n%s", path, resp.StatusCode, resp.Header.Get("Location"), want, body)
			}
		}
	})

	t.Run("app cannot set labd's cookies nor a domain's", func(t *testing.T) {
		resp, _ := get(t, owner, capped+"/cookies")
		got := resp.Header.Values("Set-Cookie")
		if len(got) != 2 || !strings.HasPrefix(got[0], "session=app") || got[1] != "wide=1; Path=/; HttpOnly" {
			t.Errorf("Set-Cookie = %q, want the app's session cookie and wide=1 without Domain", got)
		}
	})

	t.Run("the page's own requests", func(t *testing.T) {
		// What the opaque-origin page sends: no cookie, Origin null.
		anon := &http.Client{Timeout: waitTimeout, CheckRedirect: owner.CheckRedirect}
		req, _ := http.NewRequest("GET", capped+"/data.json", nil)
		req.Header.Set("Origin", "null")
		req.Header.Set("Sec-Fetch-Mode", "cors")
		resp, err := anon.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), "path=/data.json") || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("fetch from the page: %d, ACAO %q:\n%s", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"), b)
		}
		req, _ = http.NewRequest("OPTIONS", capped+"/api", nil)
		req.Header.Set("Origin", "null")
		req.Header.Set("Access-Control-Request-Method", "PUT")
		req.Header.Set("Access-Control-Request-Headers", "content-type")
		resp, err = anon.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Methods") != "PUT" || resp.Header.Get("Access-Control-Allow-Headers") != "content-type" {
			t.Errorf("preflight: %d %v", resp.StatusCode, resp.Header)
		}
	})

	t.Run("websocket", func(t *testing.T) {
		wsBase := "ws" + strings.TrimPrefix(s.URL, "http")
		for _, tc := range []struct {
			name string
			url  string
			jar  http.CookieJar
		}{
			{"entry with the cookie", wsBase + "/sandboxes/" + sid + "/ports/5001/ws", owner.Jar},
			{"from the page (capability, no cookie)", wsBase + capPath + "/ws", nil},
		} {
			d := websocket.Dialer{Jar: tc.jar, HandshakeTimeout: waitTimeout}
			ws, resp, err := d.Dial(tc.url, http.Header{"Origin": {"null"}})
			if err != nil {
				if resp != nil {
					t.Fatalf("%s: dial: %v (status %d)", tc.name, err, resp.StatusCode)
				}
				t.Fatalf("%s: dial: %v", tc.name, err)
			}
			if err := ws.WriteMessage(websocket.TextMessage, []byte("ping")); err != nil {
				t.Fatal(err)
			}
			_, m, err := ws.ReadMessage()
			if err != nil || string(m) != "echo: ping" {
				t.Errorf("%s: read = %q, %v; want \"echo: ping\"", tc.name, m, err)
			}
			ws.Close()
		}
	})

	t.Run("nothing listening", func(t *testing.T) {
		resp, body := get(t, follow, base+"5002/")
		want := "Nothing answers on port 5002 in your sandbox yet"
		if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, want) {
			t.Errorf("got %d, want 502 with %q:\n%s", resp.StatusCode, want, body)
		}
		if got := resp.Header.Get("Content-Security-Policy"); got != csp {
			t.Errorf("error page CSP = %q, want labd's", got)
		}
	})

	t.Run("nothing on 5001 names -p 5001:5000", func(t *testing.T) {
		pp.set(5001, closedAddr)
		defer pp.set(5001, app.Listener.Addr().String())
		app.CloseClientConnections() // the app stopped: its kept-alive connections end
		resp, body := get(t, follow, base+"5001/")
		want := "Nothing answers on port 5001 in your sandbox yet: is your container running with -p 5001:5000?"
		if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, want) {
			t.Errorf("got %d, want 502 with %q:\n%s", resp.StatusCode, want, body)
		}
	})

	t.Run("access", func(t *testing.T) {
		anon := &http.Client{CheckRedirect: owner.CheckRedirect, Timeout: waitTimeout}
		expired := s.URL + capPrefix(sid, 5001, skewedSigner(-capTTL-time.Minute).pathCap(sid, 5001, ownerID))
		other5002 := s.URL + capPrefix(sid, 5002, strings.TrimPrefix(capPath, "/sandboxes/"+sid+"/preview/5001/"))
		otherSandbox := s.URL + capPrefix(otherSid, 5001, strings.TrimPrefix(capPath, "/sandboxes/"+sid+"/preview/5001/"))
		tests := []struct {
			name     string
			c        *http.Client
			method   string
			url      string
			navigate bool
			status   int
			want     string // in the body, or the Location of a redirect
		}{
			{"other learner", other, "GET", base + "5001/", false, http.StatusForbidden, "Not your sandbox"},
			{"no cookie", anon, "GET", base + "5001/", false, http.StatusForbidden, "Not your sandbox"},
			{"other learner POST", other, "POST", base + "5001/", false, http.StatusForbidden, "Not your sandbox"},
			{"unknown sandbox", owner, "GET", s.URL + "/sandboxes/sb-0000000000000000/ports/5001/", false, http.StatusNotFound, "No such sandbox"},
			{"port 0", owner, "GET", base + "0/", false, http.StatusNotFound, "1 to 65535"},
			{"port 65536", owner, "GET", base + "65536/", false, http.StatusNotFound, "1 to 65535"},
			{"leading zero", owner, "GET", base + "05001/", false, http.StatusNotFound, "1 to 65535"},
			{"not a number", owner, "GET", base + "web/", false, http.StatusNotFound, "1 to 65535"},
			// The capability URL in another learner's browser: the
			// cookie says who it is.
			{"other learner with the capability", other, "GET", capped + "/", false, http.StatusForbidden, "Not your sandbox"},
			{"other learner with the capability POST", other, "POST", capped + "/", false, http.StatusForbidden, "Not your sandbox"},
			// A page load without the owner's cookie (a pasted link).
			{"page load without cookie", anon, "GET", capped + "/", true, http.StatusForbidden, "Not your sandbox"},
			{"expired capability", owner, "GET", expired + "/x?y=1", false, http.StatusFound, "/sandboxes/" + sid + "/ports/5001/x?y=1"},
			{"expired capability POST", owner, "POST", expired + "/x", false, http.StatusForbidden, "no longer valid"},
			{"forged capability POST", owner, "POST", capped + "x/x", false, http.StatusForbidden, "no longer valid"},
			{"capability of another port", owner, "POST", other5002 + "/x", false, http.StatusForbidden, "no longer valid"},
			{"capability of another sandbox", other, "POST", otherSandbox + "/x", false, http.StatusForbidden, "no longer valid"},
			{"expired capability without cookie", anon, "POST", expired + "/x", false, http.StatusForbidden, "no longer valid"},
		}
		for _, tt := range tests {
			req, _ := http.NewRequest(tt.method, tt.url, nil)
			if tt.navigate {
				req.Header.Set("Sec-Fetch-Mode", "navigate")
			}
			resp, err := tt.c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body := string(b)
			got := body
			if resp.StatusCode == http.StatusFound {
				got = resp.Header.Get("Location")
			}
			if resp.StatusCode != tt.status || !strings.Contains(got, tt.want) {
				t.Errorf("%s: got %d, want %d with %q:\n%s", tt.name, resp.StatusCode, tt.status, tt.want, got)
			}
			if strings.Contains(body, "hello world!") {
				t.Errorf("%s: got the app's page", tt.name)
			}
		}
		// Page loads of the owner's browser carry its cookie.
		req, _ := http.NewRequest("GET", capped+"/", nil)
		req.Header.Set("Sec-Fetch-Mode", "navigate")
		resp, err := owner.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("owner's page load with the capability = %d, want 200", resp.StatusCode)
		}
	})

	t.Run("ports box and form", func(t *testing.T) {
		_, page := get(t, owner, s.URL+"/labs/hello-shell")
		for _, want := range []string{
			`href="/sandboxes/` + sid + `/ports?port=5001" target="_blank"`,
			">Open port 5001</a>",
			`action="/sandboxes/` + sid + `/ports" target="_blank"`,
		} {
			if !strings.Contains(page, want) {
				t.Errorf("lab page lacks %q", want)
			}
		}
		resp, _ := get(t, owner, base[:len(base)-1]+"?port=8080")
		if want := "/sandboxes/" + sid + "/ports/8080/"; resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != want {
			t.Errorf("form: got %d Location %q, want 303 %q", resp.StatusCode, resp.Header.Get("Location"), want)
		}
		if resp, _ := get(t, owner, base[:len(base)-1]+"?port=70000"); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("form with port 70000 = %d, want 400", resp.StatusCode)
		}
		if resp, _ := get(t, other, base[:len(base)-1]+"?port=8080"); resp.StatusCode != http.StatusForbidden {
			t.Errorf("form of another learner's sandbox = %d, want 403", resp.StatusCode)
		}
	})
}

// A sandbox without a network labd can reach (nsbox alone) says so.
func TestPreviewWithoutNetwork(t *testing.T) {
	s := newTestServer(t, "")
	c := s.client(t)
	sid := sandboxOf(t, c, s.URL)
	follow := &http.Client{Jar: c.Jar, Timeout: waitTimeout}
	resp, body := get(t, follow, s.URL+"/sandboxes/"+sid+"/ports/5001/")
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "cannot open its ports") {
		t.Errorf("got %d, want 502 saying the ports cannot be opened:\n%s", resp.StatusCode, body)
	}
}

func TestParsePort(t *testing.T) {
	for in, want := range map[string]int{"1": 1, "5001": 5001, "65535": 65535, "0": 0, "65536": 0, "-1": 0, "+80": 0, "080": 0, "": 0, "5e3": 0, "123456": 0} {
		got, ok := parsePort(in)
		if ok != (want != 0) || got != want {
			t.Errorf("parsePort(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
}

// TestPreviewEngine goes through the real engine provider: a busybox httpd
// published with -p 5001:5000 in the learner's sandbox answers on the
// preview, which dials it in the sandbox's network namespace.
func TestPreviewEngine(t *testing.T) {
	testenv.Root(t, "sandboxes (namespaces, containers)")
	testenv.Command(t, "docker", "docker.io")
	ctx := context.Background()
	data := t.TempDir()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	shared, err := engine.OpenShared(data, engine.SharedOptions{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := image.BootstrapBusybox(ctx, shared.Store); err != nil {
		t.Fatal(err)
	}
	mgr := sandbox.NewManager(&enginebox.Provider{Inner: nsbox.New(nsbox.Options{}), Shared: shared, Logger: quiet},
		sandbox.ManagerOptions{DataDir: data, Logger: quiet})
	srv := httptest.NewServer(New(Options{
		Logger:    quiet,
		Catalog:   labs.NewCatalog("testdata/content"),
		Sandboxes: mgr,
		Secret:    []byte("0123456789abcdef0123456789abcdef"),
	}))
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(ctx, waitTimeout)
		defer cancel()
		if err := mgr.Close(cctx); err != nil {
			t.Errorf("close manager: %v", err)
		}
		// Ended sandboxes' disks stay mounted for their kept workspaces
		// until the engine closes, as when labd stops.
		shared.Close()
		srv.Close()
	})
	s := &testServer{Server: srv, mgr: mgr}
	owner, other := s.client(t), s.client(t)
	sid := sandboxOf(t, owner, s.URL)
	sandboxOf(t, other, s.URL)
	url := s.URL + "/sandboxes/" + sid + "/ports/5001/"
	follow := &http.Client{Jar: owner.Jar, Timeout: waitTimeout}

	resp, body := get(t, follow, url)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "Nothing answers on port 5001 in your sandbox yet: is your container running with -p 5001:5000?") {
		t.Fatalf("before the container: got %d, want 502 with the hint:\n%s", resp.StatusCode, body)
	}

	sb, _, ok := waitSandbox(t, mgr, sid)
	if !ok {
		t.Fatal("sandbox not running after the lab page")
	}
	var out strings.Builder
	rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	code, err := sb.Exec(rctx, sandbox.ExecSpec{Cmd: []string{"sh", "-c",
		`docker run -d -p 5001:5000 busybox sh -c 'mkdir /w && echo "hello world!" > /w/index.html && exec httpd -f -p 5000 -h /w' >/dev/null &&
for i in $(seq 200); do busybox wget -qO- http://127.0.0.1:5001/ 2>/dev/null && break; sleep 0.1; done`},
		Stdout: &out, Stderr: &out})
	if err != nil || code != 0 || !strings.Contains(out.String(), "hello world!") {
		t.Fatalf("docker run -p 5001:5000 in the sandbox: exit %d, %v\n%s", code, err, out.String())
	}

	resp, body = get(t, follow, url)
	if resp.StatusCode != 200 || body != "hello world!\n" {
		t.Errorf("owner: got %d %q, want 200 \"hello world!\\n\"", resp.StatusCode, body)
	}
	if got := resp.Header.Get("Content-Security-Policy"); got != previewCSP {
		t.Errorf("CSP = %q, want %q", got, previewCSP)
	}
	if resp, body := get(t, other, url); resp.StatusCode != http.StatusForbidden || strings.Contains(body, "hello world!") {
		t.Errorf("other learner: got %d, want 403:\n%s", resp.StatusCode, body)
	}
}

// hostClient is a browser stand-in that reaches every host name on the
// test server's address (as wildcard DNS would), so its cookie jar keeps
// labd's host and each preview host apart.
func hostClient(t *testing.T, srv *httptest.Server, jar http.CookieJar) *http.Client {
	t.Helper()
	if jar == nil {
		jar, _ = cookiejar.New(nil)
	}
	addr := srv.Listener.Addr().String()
	var d net.Dialer
	return &http.Client{
		Jar:     jar,
		Timeout: waitTimeout,
		Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func TestPreviewHost(t *testing.T) {
	// The domain names the port browsers use (the test server's).
	s, pp := newPreviewServer(t, func(o *Options, addr string) {
		_, port, _ := net.SplitHostPort(addr)
		o.PreviewDomain = "Preview.Test:" + port
		// The test's client stands in for a TLS proxy too ("https").
		o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	ln := s.Server.Listener
	_, srvPort, _ := net.SplitHostPort(ln.Addr().String())
	domain := "preview.test:" + srvPort

	app := learnerApp(t)
	pp.set(5001, app.Listener.Addr().String())

	owner, other := hostClient(t, s.Server, nil), hostClient(t, s.Server, nil)
	labdURL := "http://" + ln.Addr().String()
	sid := sandboxOf(t, owner, labdURL)
	otherSid := sandboxOf(t, other, labdURL)
	ownerID := learnerOf(t, owner, labdURL)
	host := func(port int, sid string) string { return fmt.Sprintf("http://%d-%s.%s", port, sid, domain) }
	preview := host(5001, sid)

	// token asks labd (the Ports box's link) for a way into a port.
	token := func(c *http.Client, sid string, port int) (int, string) {
		resp, _ := get(t, c, fmt.Sprintf("%s/sandboxes/%s/ports?port=%d", labdURL, sid, port))
		return resp.StatusCode, resp.Header.Get("Location")
	}
	tokenOf := func(loc string) string {
		u, err := url.Parse(loc)
		if err != nil {
			t.Fatal(err)
		}
		return u.Query().Get("token")
	}

	t.Run("nothing before the token", func(t *testing.T) {
		resp, body := get(t, owner, preview+"/")
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "Ports box of your lab page") {
			t.Errorf("got %d, want 403:\n%s", resp.StatusCode, body)
		}
		// labd's own cookie, sent by hand, opens nothing here.
		req, _ := http.NewRequest("GET", preview+"/", nil)
		for _, c := range owner.Jar.Cookies(&url.URL{Scheme: "http", Host: ln.Addr().String()}) {
			req.AddCookie(c)
		}
		resp, err := owner.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("with labd's cookie on the preview host: %d, want 403", resp.StatusCode)
		}
	})

	status, loc := token(owner, sid, 5001)
	if want := preview + authPath + "?token="; status != http.StatusSeeOther || !strings.HasPrefix(loc, want) {
		t.Fatalf("Ports box link: got %d Location %q, want 303 to %s...", status, loc, want)
	}
	tok := tokenOf(loc)

	t.Run("token opens the port at /", func(t *testing.T) {
		resp, body := get(t, owner, loc)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
			t.Fatalf("auth link: got %d Location %q, want 303 /:\n%s", resp.StatusCode, resp.Header.Get("Location"), body)
		}
		sc := resp.Header.Get("Set-Cookie")
		for _, want := range []string{previewCookie + "=", "Path=/", "HttpOnly", "SameSite=Lax"} {
			if !strings.Contains(sc, want) {
				t.Errorf("Set-Cookie %q lacks %q", sc, want)
			}
		}
		if strings.Contains(sc, "Domain") || strings.Contains(sc, "Secure") {
			t.Errorf("Set-Cookie %q: want host-only and not Secure over http", sc)
		}
		if resp.Header.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("auth response Referrer-Policy = %q, want no-referrer", resp.Header.Get("Referrer-Policy"))
		}
		u, _ := url.Parse(preview)
		owner.Jar.SetCookies(u, []*http.Cookie{{Name: "theme", Value: "dark", Path: "/"}})
		req, _ := http.NewRequest("GET", preview+"/?a=1", nil)
		req.AddCookie(&http.Cookie{Name: cookieName, Value: "forged"})
		resp, err := owner.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
		if resp.StatusCode != 200 {
			t.Fatalf("owner: %d, want 200:\n%s", resp.StatusCode, body)
		}
		for _, want := range []string{"hello world!", "path=/\n", "query=a=1", "host=localhost:5001", "prefix=\n", "cookie=theme=dark\n"} {
			if !strings.Contains(body, want) {
				t.Errorf("app got a request without %q:\n%s", want, body)
			}
		}
		// Its own origin: the app's headers as they are, no sandbox.
		if got := resp.Header.Values("Content-Security-Policy"); len(got) != 1 || got[0] != "img-src 'self'" {
			t.Errorf("CSP = %q, want the app's own only", got)
		}
		if got := resp.Header.Get("X-Frame-Options"); got != "SAMEORIGIN" {
			t.Errorf("X-Frame-Options = %q, want the app's SAMEORIGIN", got)
		}
	})

	t.Run("token refused", func(t *testing.T) {
		fresh := hostClient(t, s.Server, nil) // no preview cookie yet
		_, loc5002 := token(owner, sid, 5002)
		expired := skewedSigner(-2*authTokenTTL).authToken(sid, 5001, ownerID)
		_, otherLoc := token(other, otherSid, 5001)
		tests := []struct {
			name, url, want string
		}{
			{"replayed", preview + authPath + "?token=" + tok, "works once"},
			{"other port's token", preview + authPath + "?token=" + tokenOf(loc5002), "does not open this port"},
			{"token on another port", host(5002, sid) + authPath + "?token=" + tok, "does not open this port"},
			{"other sandbox's token", preview + authPath + "?token=" + tokenOf(otherLoc), "does not open this port"},
			{"token on another sandbox", host(5001, otherSid) + authPath + "?token=" + tok, "does not open this port"},
			{"expired", preview + authPath + "?token=" + expired, "for a minute only"},
			{"no token", preview + authPath, "does not open this port"},
			{"garbage", preview + authPath + "?token=1.2.3", "does not open this port"},
		}
		for _, tt := range tests {
			resp, body := get(t, fresh, tt.url)
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, tt.want) || resp.Header.Get("Set-Cookie") != "" {
				t.Errorf("%s: got %d (Set-Cookie %q), want 403 with %q:\n%s", tt.name, resp.StatusCode, resp.Header.Get("Set-Cookie"), tt.want, body)
			}
		}
		if resp, _ := get(t, fresh, preview+"/"); resp.StatusCode != http.StatusForbidden {
			t.Errorf("after refused tokens: %d, want 403", resp.StatusCode)
		}
	})

	t.Run("another learner", func(t *testing.T) {
		if status, _ := token(other, sid, 5001); status != http.StatusForbidden {
			t.Errorf("other learner asking for a token of the owner's port: %d, want 403", status)
		}
		if resp, body := get(t, other, preview+"/"); resp.StatusCode != http.StatusForbidden || strings.Contains(body, "hello world!") {
			t.Errorf("other learner: %d, want 403:\n%s", resp.StatusCode, body)
		}
		// The other learner's own preview cookie, for their own sandbox,
		// replayed on the owner's host (or tossed to the whole domain).
		_, otherLoc := token(other, otherSid, 5001)
		if resp, _ := get(t, other, otherLoc); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("other learner's own token: %d", resp.StatusCode)
		}
		u, _ := url.Parse(host(5001, otherSid))
		var own *http.Cookie
		for _, c := range other.Jar.Cookies(u) {
			if c.Name == previewCookie {
				own = c
			}
		}
		if own == nil {
			t.Fatal("no preview cookie after the other learner's own token")
		}
		req, _ := http.NewRequest("GET", preview+"/", nil)
		req.AddCookie(own)
		resp, err := other.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("other learner's preview cookie on the owner's host: %d, want 403", resp.StatusCode)
		}
		// A tossed invalid cookie does not shadow the owner's own.
		req, _ = http.NewRequest("GET", preview+"/", nil)
		req.AddCookie(own)
		resp, err = owner.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("owner with a tossed cookie beside their own: %d, want 200", resp.StatusCode)
		}
	})

	t.Run("no labd on preview hosts", func(t *testing.T) {
		// With the owner's preview cookie every path is the app's.
		for _, p := range []string{"/labs/hello-shell", "/static/app.js", "/sandboxes/" + sid + "/terminal", "/sandboxes/" + sid + "/ports/5001/", "/healthz", "/instructor", "/registry/password", "/v2/"} {
			resp, body := get(t, owner, preview+p)
			if resp.StatusCode != 200 || !strings.Contains(body, "hello world!\nmethod=GET\npath="+p+"\n") {
				t.Errorf("%s on the preview host: %d, want the app's answer:\n%s", p, resp.StatusCode, body)
			}
		}
		if resp, body := get(t, owner, preview+"/.labd/other"); resp.StatusCode != http.StatusNotFound || strings.Contains(body, "hello world!") {
			t.Errorf("/.labd/other: %d, want 404", resp.StatusCode)
		}
		// Hosts under the domain that are not previews, and the wrong port.
		for _, h := range []string{
			"5001-sb-XYZ." + domain, "5001-sb-0123." + domain, "05001-" + sid + "." + domain, "70000-" + sid + "." + domain,
			"5001-" + sid + "x." + domain, "a.5001-" + sid + "." + domain, sid + "." + domain, "www." + domain,
			"5001-" + sid + ".preview.test:1", // another port than the domain's
		} {
			for _, p := range []string{"/", "/labs/hello-shell", "/healthz"} {
				resp, body := get(t, owner, "http://"+h+p)
				if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "No such preview") {
					t.Errorf("http://%s%s: %d, want 404 No such preview:\n%s", h, p, resp.StatusCode, body)
				}
			}
		}
		// Upper case is the same host.
		if resp, body := get(t, owner, strings.ToUpper(preview[:7])+strings.ToUpper(preview[7:])+"/"); resp.StatusCode != 200 || !strings.Contains(body, "hello world!") {
			t.Errorf("upper-case preview host: %d:\n%s", resp.StatusCode, body)
		}
		// labd itself answers on its own host and on the domain itself.
		for _, u := range []string{labdURL + "/healthz", "http://" + domain + "/healthz"} {
			if resp, body := get(t, owner, u); resp.StatusCode != 200 || body != "ok\n" {
				t.Errorf("%s: %d %q, want labd's ok", u, resp.StatusCode, body)
			}
		}
	})

	t.Run("redirects keep the root", func(t *testing.T) {
		for path, want := range map[string]string{
			"/go-abs":  "/login?next=%2Fx",
			"/go-url":  "/done#top",
			"/go-rel":  "sub/page",
			"/go-away": "http://example.com/x",
		} {
			resp, body := get(t, owner, preview+path)
			if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != want {
				t.Errorf("%s: got %d Location %q, want 302 %q\n%s", path, resp.StatusCode, resp.Header.Get("Location"), want, body)
			}
		}
		resp, _ := get(t, owner, preview+"/cookies")
		got := resp.Header.Values("Set-Cookie")
		if len(got) != 2 || !strings.HasPrefix(got[0], "session=app") || got[1] != "wide=1; Path=/; HttpOnly" {
			t.Errorf("Set-Cookie = %q, want the app's session cookie and wide=1 without Domain", got)
		}
	})

	t.Run("websocket", func(t *testing.T) {
		addr := ln.Addr().String()
		var nd net.Dialer
		d := websocket.Dialer{Jar: owner.Jar, HandshakeTimeout: waitTimeout,
			NetDialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return nd.DialContext(ctx, network, addr)
			}}
		wsURL := "ws" + strings.TrimPrefix(preview, "http") + "/ws"
		ws, resp, err := d.Dial(wsURL, http.Header{"Origin": {preview}})
		if err != nil {
			if resp != nil {
				t.Fatalf("dial: %v (status %d)", err, resp.StatusCode)
			}
			t.Fatalf("dial: %v", err)
		}
		defer ws.Close()
		if err := ws.WriteMessage(websocket.TextMessage, []byte("ping")); err != nil {
			t.Fatal(err)
		}
		if _, m, err := ws.ReadMessage(); err != nil || string(m) != "echo: ping" {
			t.Errorf("read = %q, %v; want \"echo: ping\"", m, err)
		}
		// Another learner's browser cannot open it.
		d.Jar = other.Jar
		if ws, resp, err := d.Dial(wsURL, nil); err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			if ws != nil {
				ws.Close()
			}
			t.Errorf("other learner's websocket: %v, %v; want 403", resp, err)
		}
	})

	t.Run("nothing listening", func(t *testing.T) {
		_, loc := token(owner, sid, 5002)
		if resp, _ := get(t, owner, loc); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("token for 5002: %d", resp.StatusCode)
		}
		resp, body := get(t, owner, host(5002, sid)+"/")
		if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "Nothing answers on port 5002") {
			t.Errorf("got %d, want 502:\n%s", resp.StatusCode, body)
		}
		if got := resp.Header.Get("Content-Security-Policy"); got != hostErrorCSP {
			t.Errorf("error page CSP = %q, want %q", got, hostErrorCSP)
		}
		if strings.Contains(body, "/static/") {
			t.Errorf("the preview host's error page loads labd's assets:\n%s", body)
		}
	})

	t.Run("https", func(t *testing.T) {
		// Behind a trusted TLS proxy the link and the cookie say so
		// (proxy_test.go: not when the proxy is not trusted).
		req, _ := http.NewRequest("GET", labdURL+"/sandboxes/"+sid+"/ports?port=5001", nil)
		req.Header.Set("X-Forwarded-Proto", "https")
		resp, err := owner.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		if !strings.HasPrefix(loc, "https://5001-"+sid+"."+domain+authPath) {
			t.Fatalf("link behind https: %q", loc)
		}
		req, _ = http.NewRequest("GET", "http"+strings.TrimPrefix(loc, "https"), nil)
		req.Header.Set("X-Forwarded-Proto", "https")
		resp, err = hostClient(t, s.Server, nil).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if sc := resp.Header.Get("Set-Cookie"); resp.StatusCode != http.StatusSeeOther || !strings.Contains(sc, "; Secure") {
			t.Errorf("auth over https: %d Set-Cookie %q, want Secure", resp.StatusCode, sc)
		}
	})
}

func TestPreviewHostOf(t *testing.T) {
	s := &server{previewDomain: "preview.example.com"}
	sp := &server{previewDomain: "localhost:8080"}
	const sid = "sb-0123456789abcdef"
	tests := []struct {
		s    *server
		host string
		kind hostKind
		port int
	}{
		{s, "5001-" + sid + ".preview.example.com", hostPreview, 5001},
		{s, "5001-" + sid + ".preview.example.com:443", hostPreview, 5001},
		{s, "5001-" + sid + ".preview.example.com.", hostPreview, 5001},
		{s, "5001-SB-0123456789ABCDEF.Preview.Example.Com", hostPreview, 5001},
		{s, "65535-" + sid + ".preview.example.com", hostPreview, 65535},
		{s, "preview.example.com", hostLabd, 0},
		{s, "labs.example.com", hostLabd, 0},
		{s, "127.0.0.1:8080", hostLabd, 0},
		{s, "xpreview.example.com", hostLabd, 0},
		{s, "5001-" + sid + ".xpreview.example.com", hostLabd, 0},
		{s, "5001-" + sid + "0.preview.example.com", hostInvalid, 0},
		{s, "5001-sb-0123456789abcdeg.preview.example.com", hostInvalid, 0},
		{s, "5001-xb-0123456789abcdef.preview.example.com", hostInvalid, 0},
		{s, "0-" + sid + ".preview.example.com", hostInvalid, 0},
		{s, "+80-" + sid + ".preview.example.com", hostInvalid, 0},
		{s, "5001" + sid + ".preview.example.com", hostInvalid, 0},
		{s, "x.5001-" + sid + ".preview.example.com", hostInvalid, 0},
		{s, ".preview.example.com", hostInvalid, 0},
		{sp, "5001-" + sid + ".localhost:8080", hostPreview, 5001},
		{sp, "5001-" + sid + ".localhost:8081", hostInvalid, 0},
		{sp, "5001-" + sid + ".localhost", hostInvalid, 0},
		{sp, "localhost:8080", hostLabd, 0},
		{&server{}, "5001-" + sid + ".preview.example.com", hostLabd, 0},
	}
	for _, tt := range tests {
		kind, gotSid, port := tt.s.previewHostOf(tt.host)
		if kind != tt.kind || port != tt.port || kind == hostPreview && gotSid != sid {
			t.Errorf("%s (domain %q): got %v %q %d, want %v %d", tt.host, tt.s.previewDomain, kind, gotSid, port, tt.kind, tt.port)
		}
	}
}

func TestNormalizePreviewDomain(t *testing.T) {
	for in, want := range map[string]string{
		"preview.example.com":   "preview.example.com",
		" Preview.Example.COM.": "preview.example.com",
		"localhost:8080":        "localhost:8080",
		"localhost":             "localhost",
		"http://x.example":      "",
		"*.example.com":         "",
		"example.com/x":         "",
		"":                      "",
		"a..b":                  "",
		"-a.b":                  "",
		"a_b.example":           "",
		"localhost:0":           "",
		"localhost:99999":       "",
	} {
		got, err := NormalizePreviewDomain(in)
		if got != want || (err == nil) != (want != "") {
			t.Errorf("NormalizePreviewDomain(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestPreviewTokens(t *testing.T) {
	p := newPreviewSigner(testSecret)
	const sid, owner = "sb-0123456789abcdef", "0123456789abcdef0123456789abcdef"
	tok := p.authToken(sid, 5001, owner)
	for _, tt := range []struct {
		name  string
		tok   string
		sid   string
		port  int
		owner string
		want  error
	}{
		{"another owner", tok, sid, 5001, "ffffffffffffffffffffffffffffffff", errProofInvalid},
		{"another port", tok, sid, 5002, owner, errProofInvalid},
		{"another sandbox", tok, "sb-0123456789abcdee", 5001, owner, errProofInvalid},
		{"path cap as token", p.pathCap(sid, 5001, owner), sid, 5001, owner, errProofInvalid},
		{"longer expiry", later(tok), sid, 5001, owner, errProofInvalid},
		{"good", tok, sid, 5001, owner, nil},
		{"replay", tok, sid, 5001, owner, errProofUsed},
	} {
		if err := p.useAuthToken(tt.tok, tt.sid, tt.port, tt.owner); err != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	// Signed for one purpose, refused for the others.
	c := p.hostCookie(sid, 5001, owner)
	if err := p.checkPathCap(c, sid, 5001, owner); err != errProofInvalid {
		t.Errorf("host cookie as path cap: %v", err)
	}
	if err := p.checkPathCap(p.pathCap(sid, 5001, owner), sid, 5001, owner); err != nil {
		t.Errorf("path cap: %v", err)
	}
	if err := p.checkPathCap(skewedSigner(-capTTL-time.Second).pathCap(sid, 5001, owner), sid, 5001, owner); err != errProofExpired {
		t.Errorf("old path cap: %v, want expired", err)
	}
}

// later moves a proof's expiry on by an hour, keeping its MAC.
func later(v string) string {
	exp, rest, _ := strings.Cut(v, ".")
	n, _ := strconv.ParseInt(exp, 10, 64)
	return strconv.FormatInt(n+3600, 10) + "." + rest
}

// The instructor may open any learner's ports (to help with an app), with
// the instructor cookie or token; a forged instructor cookie gets nothing.
func TestPreviewInstructor(t *testing.T) {
	const token = "instructor-s3cret"
	s, pp := newPreviewServer(t, func(o *Options, _ string) { o.InstructorToken = token })
	app := learnerApp(t)
	pp.set(5001, app.Listener.Addr().String())
	owner := s.client(t)
	sid := sandboxOf(t, owner, s.URL)
	entry := s.URL + "/sandboxes/" + sid + "/ports/5001/"
	u, _ := url.Parse(s.URL)
	key := (&server{opts: Options{Secret: testSecret, InstructorToken: token}}).instructorKey()

	tests := []struct {
		name   string
		cookie string // instructor cookie value, "" none
		bearer string
		status int
		want   string
	}{
		{"instructor cookie", key, "", 200, "hello world!"},
		{"instructor token", "", token, 200, "hello world!"},
		{"forged instructor cookie", strings.Repeat("0", len(key)), "", http.StatusForbidden, "Not your sandbox"},
		{"wrong token", "", "guess", http.StatusForbidden, "Not your sandbox"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The instructor's browser is also a learner of its own.
			c := s.client(t)
			sandboxOf(t, c, s.URL)
			if tt.cookie != "" {
				c.Jar.SetCookies(u, []*http.Cookie{{Name: instructorCookie, Value: tt.cookie, Path: "/"}})
			}
			follow := &http.Client{Jar: c.Jar, Timeout: waitTimeout}
			req, _ := http.NewRequest("GET", entry, nil)
			req.Header.Set("Sec-Fetch-Mode", "navigate")
			if tt.bearer != "" {
				req.Header.Set("Authorization", "Bearer "+tt.bearer)
				// Redirects keep the header only on the same host, as
				// here.
			}
			resp, err := follow.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status || !strings.Contains(string(b), tt.want) {
				t.Errorf("got %d, want %d with %q:\n%s", resp.StatusCode, tt.status, tt.want, b)
			}
		})
	}
}
