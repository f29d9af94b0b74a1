package web

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/labd/labd/labs"
	"github.com/labd/labd/sandbox"
	"github.com/labd/labd/sandbox/engine"
	"github.com/labd/labd/sandbox/engine/image"
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

func newPreviewServer(t *testing.T) (*testServer, *portsProvider) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("sandboxes need root (namespaces)")
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	pp := &portsProvider{inner: nsbox.New(nsbox.Options{}), ports: map[int]string{}}
	mgr := sandbox.NewManager(pp, sandbox.ManagerOptions{DataDir: t.TempDir(), Logger: quiet})
	srv := httptest.NewServer(New(Options{
		Logger:    quiet,
		Catalog:   labs.NewCatalog("testdata/content"),
		Sandboxes: mgr,
		Secret:    []byte("0123456789abcdef0123456789abcdef"),
	}))
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

// learnerApp is the learner's app: it echoes what it received, redirects,
// sets cookies and speaks websocket.
func learnerApp(t *testing.T) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "img-src 'self'")
		w.Header().Set("X-Frame-Options", "SAMEORIGIN")
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
	sandboxOf(t, other, s.URL) // the other learner has an identity (and a sandbox) too
	base := s.URL + "/sandboxes/" + sid + "/ports/"

	t.Run("owner gets the app", func(t *testing.T) {
		req, _ := http.NewRequest("GET", base+"5001/some/where%2Fx?a=1&b=2", nil)
		req.AddCookie(&http.Cookie{Name: "theme", Value: "dark"})
		resp, err := owner.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body := string(b)
		if resp.StatusCode != 200 {
			t.Fatalf("status = %d, want 200:\n%s", resp.StatusCode, body)
		}
		for _, want := range []string{
			"hello world!", "method=GET", "path=/some/where/x", "query=a=1&b=2",
			"host=localhost:5001", "prefix=/sandboxes/" + sid + "/ports/5001",
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
	})

	t.Run("POST passes", func(t *testing.T) {
		resp, err := owner.Post(base+"5001/form", "application/x-www-form-urlencoded", strings.NewReader("x=1"))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.Contains(string(b), "method=POST\npath=/form\n") {
			t.Errorf("POST = %d:\n%s", resp.StatusCode, b)
		}
	})

	t.Run("no trailing slash redirects", func(t *testing.T) {
		resp, _ := get(t, owner, base+"5001?q=1")
		if want := "/sandboxes/" + sid + "/ports/5001/?q=1"; resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != want {
			t.Errorf("got %d Location %q, want 301 %q", resp.StatusCode, resp.Header.Get("Location"), want)
		}
	})

	t.Run("redirects are rewritten", func(t *testing.T) {
		prefix := "/sandboxes/" + sid + "/ports/5001"
		for path, want := range map[string]string{
			"/go-abs":  prefix + "/login?next=%2Fx",
			"/go-url":  prefix + "/done#top",
			"/go-rel":  "sub/page",
			"/go-away": "http://example.com/x",
		} {
			resp, body := get(t, owner, base+"5001"+path)
			if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != want {
				t.Errorf("%s: got %d Location %q, want 302 %q\n%s", path, resp.StatusCode, resp.Header.Get("Location"), want, body)
			}
		}
	})

	t.Run("app cannot set labd's cookie", func(t *testing.T) {
		resp, _ := get(t, owner, base+"5001/cookies")
		got := resp.Header.Values("Set-Cookie")
		if len(got) != 1 || !strings.HasPrefix(got[0], "session=app") {
			t.Errorf("Set-Cookie = %q, want only the app's session cookie", got)
		}
	})

	t.Run("websocket", func(t *testing.T) {
		d := websocket.Dialer{Jar: owner.Jar, HandshakeTimeout: waitTimeout}
		ws, resp, err := d.Dial("ws"+strings.TrimPrefix(base, "http")+"5001/ws", nil)
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
		_, m, err := ws.ReadMessage()
		if err != nil || string(m) != "echo: ping" {
			t.Errorf("read = %q, %v; want \"echo: ping\"", m, err)
		}
	})

	t.Run("nothing listening", func(t *testing.T) {
		resp, body := get(t, owner, base+"5002/")
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
		resp, body := get(t, owner, base+"5001/")
		want := "Nothing answers on port 5001 in your sandbox yet: is your container running with -p 5001:5000?"
		if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, want) {
			t.Errorf("got %d, want 502 with %q:\n%s", resp.StatusCode, want, body)
		}
	})

	t.Run("access", func(t *testing.T) {
		anon := &http.Client{CheckRedirect: owner.CheckRedirect, Timeout: waitTimeout}
		tests := []struct {
			name   string
			c      *http.Client
			url    string
			status int
			want   string
		}{
			{"other learner", other, base + "5001/", http.StatusForbidden, "Not your sandbox"},
			{"no cookie", anon, base + "5001/", http.StatusForbidden, "Not your sandbox"},
			{"unknown sandbox", owner, s.URL + "/sandboxes/sb-0000000000000000/ports/5001/", http.StatusNotFound, "No such sandbox"},
			{"port 0", owner, base + "0/", http.StatusNotFound, "1 to 65535"},
			{"port 65536", owner, base + "65536/", http.StatusNotFound, "1 to 65535"},
			{"leading zero", owner, base + "05001/", http.StatusNotFound, "1 to 65535"},
			{"not a number", owner, base + "web/", http.StatusNotFound, "1 to 65535"},
		}
		for _, tt := range tests {
			resp, body := get(t, tt.c, tt.url)
			if resp.StatusCode != tt.status || !strings.Contains(body, tt.want) {
				t.Errorf("%s: got %d, want %d with %q:\n%s", tt.name, resp.StatusCode, tt.status, tt.want, body)
			}
			if strings.Contains(body, "hello world!") {
				t.Errorf("%s: got the app's page", tt.name)
			}
		}
	})

	t.Run("ports box and form", func(t *testing.T) {
		_, page := get(t, owner, s.URL+"/labs/hello-shell")
		for _, want := range []string{
			`href="/sandboxes/` + sid + `/ports/5001/" target="_blank"`,
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
	resp, body := get(t, c, s.URL+"/sandboxes/"+sid+"/ports/5001/")
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
	if os.Geteuid() != 0 {
		t.Skip("sandboxes need root (namespaces, containers)")
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("the docker CLI is missing")
	}
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
	mgr := sandbox.NewManager(&engine.Provider{Inner: nsbox.New(nsbox.Options{}), Shared: shared, Logger: quiet},
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
		srv.Close()
	})
	s := &testServer{Server: srv, mgr: mgr}
	owner, other := s.client(t), s.client(t)
	sid := sandboxOf(t, owner, s.URL)
	sandboxOf(t, other, s.URL)
	url := s.URL + "/sandboxes/" + sid + "/ports/5001/"

	resp, body := get(t, owner, url)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "Nothing answers on port 5001 in your sandbox yet: is your container running with -p 5001:5000?") {
		t.Fatalf("before the container: got %d, want 502 with the hint:\n%s", resp.StatusCode, body)
	}

	sb, _, ok := mgr.Get(sid)
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

	resp, body = get(t, owner, url)
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
