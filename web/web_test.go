package web

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/labd/labd/internal/testenv"
	"github.com/labd/labd/labs"
	"github.com/labd/labd/sandbox"
	"github.com/labd/labd/sandbox/nsbox"
	"github.com/labd/labd/web/terminal"
)

// The nsbox provider re-executes this test binary as a sandbox's init.
func TestMain(m *testing.M) {
	nsbox.Reexec()
	os.Exit(m.Run())
}

const waitTimeout = 20 * time.Second

// testServer runs New over testdata/content (or content) with real
// sandboxes on 127.0.0.1.
type testServer struct {
	*httptest.Server
	mgr *sandbox.Manager
}

func newTestServer(t testing.TB, content string) *testServer {
	t.Helper()
	return newTestServerIdle(t, content, 0, 0)
}

// newTestServerIdle is newTestServer with an idle timeout and activity
// forwarding interval (zero: the defaults).
// opts, if given, adjust the Options before New (e.g. Accounts).
func newTestServerIdle(t testing.TB, content string, idle, touch time.Duration, opts ...func(*Options)) *testServer {
	t.Helper()
	testenv.Root(t, "sandboxes (namespaces)")
	if content == "" {
		content = "testdata/content"
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	mgr := sandbox.NewManager(nsbox.New(nsbox.Options{}), sandbox.ManagerOptions{DataDir: t.TempDir(), Logger: quiet, IdleTimeout: idle})
	o := Options{
		Logger:     quiet,
		Catalog:    labs.NewCatalog(content),
		Sandboxes:  mgr,
		Secret:     []byte("0123456789abcdef0123456789abcdef"),
		touchEvery: touch,
	}
	for _, f := range opts {
		f(&o)
	}
	h := New(o)
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := mgr.Close(ctx); err != nil {
			t.Errorf("close manager: %v", err)
		}
		srv.Close()
	})
	return &testServer{Server: srv, mgr: mgr}
}

// client is a browser stand-in with its own cookie jar (its own learner).
func (s *testServer) client(t testing.TB) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{
		Jar:           jar,
		Timeout:       waitTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func get(t testing.TB, c *http.Client, url string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func TestPages(t *testing.T) {
	s := newTestServer(t, "")
	c := s.client(t)
	tests := []struct {
		name       string
		path       string
		wantStatus int
		wantType   string
		want       []string // substrings of the body
		wantNot    []string
	}{
		{
			name: "catalogue", path: "/", wantStatus: 200, wantType: "text/html; charset=utf-8",
			want: []string{
				`<a href="/labs/hello-shell">Hello, shell</a>`,
				"Run your first commands in a real terminal.",
				`<span class="duration" title="Duration">5 min</span>`,
				`<span class="level" title="Level">beginner</span>`,
				"<li>shell</li><li>basics</li>",
				`<li class="lab-card broken" data-lab="broken-lab">`,
				"missing front matter",
			},
		},
		{
			name: "lab page", path: "/labs/hello-shell", wantStatus: 200, wantType: "text/html; charset=utf-8",
			want: []string{
				"<h1>Hello, shell</h1>",
				`<li data-step="1" data-state="pending"><a href="#say-hello">Say hello</a><span class="step-state">pending</span></li>`,
				`<h2 id="say-hello"><span class="step-num">1</span> Say hello</h2>`,
				`class="btn-run"`,
				`<div class="step-status" data-step="1">`,
				`src="/labs/hello-shell/files/img/layout.svg"`,
				`<div class="terminal" id="terminal"></div>`,
				`<script defer src="/static/app.js?v=`,
			},
		},
		{
			name: "unknown lab", path: "/labs/no-such-lab", wantStatus: 404, wantType: "text/html; charset=utf-8",
			want: []string{"Lab not found", `<a href="/">Back to the labs</a>`},
		},
		{
			name: "broken lab", path: "/labs/broken-lab", wantStatus: 422, wantType: "text/html; charset=utf-8",
			want:    []string{"This lab is broken", "lab.md:1: missing front matter"},
			wantNot: []string{"never shown"},
		},
		{
			name: "unknown page", path: "/nope", wantStatus: 404, wantType: "text/html; charset=utf-8",
			want: []string{"Page not found"},
		},
		{
			name: "healthz", path: "/healthz", wantStatus: 200, wantType: "text/plain; charset=utf-8",
			want: []string{"ok"},
		},
		{
			name: "highlight css", path: "/static/highlight.css", wantStatus: 200, wantType: "text/css; charset=utf-8",
			want: []string{".chroma"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := get(t, c, s.URL+tt.path)
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("GET %s = %d, want %d\n%s", tt.path, resp.StatusCode, tt.wantStatus, body)
			}
			if got := resp.Header.Get("Content-Type"); got != tt.wantType {
				t.Errorf("Content-Type = %q, want %q", got, tt.wantType)
			}
			for _, h := range []string{"Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy"} {
				if resp.Header.Get(h) == "" {
					t.Errorf("response has no %s header", h)
				}
			}
			for _, w := range tt.want {
				if !strings.Contains(body, w) {
					t.Errorf("GET %s body lacks %q:\n%s", tt.path, w, body)
				}
			}
			for _, w := range tt.wantNot {
				if strings.Contains(body, w) {
					t.Errorf("GET %s body has %q", tt.path, w)
				}
			}
		})
	}
}

func TestLabPageSandbox(t *testing.T) {
	s := newTestServer(t, "")
	a, b := s.client(t), s.client(t)
	sidA1 := sandboxOf(t, a, s.URL)
	sidA2 := sandboxOf(t, a, s.URL)
	sidB := sandboxOf(t, b, s.URL)
	if !regexp.MustCompile(`^sb-[0-9a-f]{16}$`).MatchString(sidA1) || !sandbox.ValidID(sidA1) {
		t.Errorf("sandbox id %q is not sb-<16 hex> or not a valid sandbox id", sidA1)
	}
	if sidA1 != sidA2 {
		t.Errorf("same learner got sandboxes %s and %s for one lab, want one", sidA1, sidA2)
	}
	if sidA1 == sidB {
		t.Errorf("two learners share sandbox %s", sidA1)
	}
	for _, sid := range []string{sidA1, sidB} {
		if _, _, ok := waitSandbox(t, s.mgr, sid); !ok {
			t.Errorf("sandbox %s not running after the lab page", sid)
		}
	}
}

// sandboxOf opens the lab page and returns the sandbox ID embedded in it.
// waitSandbox is Manager.Get once the sandbox a lab page started is up
// (the page does not wait for it).
func waitSandbox(t testing.TB, m *sandbox.Manager, sid string) (sandbox.Sandbox, string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	sb, owner, err := m.Wait(ctx, sid)
	if err != nil {
		t.Logf("sandbox %s: %v", sid, err)
	}
	return sb, owner, err == nil
}

func sandboxOf(t testing.TB, c *http.Client, base string) string {
	t.Helper()
	resp, body := get(t, c, base+"/labs/hello-shell")
	if resp.StatusCode != 200 {
		t.Fatalf("lab page = %d:\n%s", resp.StatusCode, body)
	}
	return sandboxAttrOf(t, body)
}

// sandboxAttrOf is the sandbox a lab page names.
func sandboxAttrOf(t testing.TB, body string) string {
	t.Helper()
	m := regexp.MustCompile(`data-sandbox="([^"]+)"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("lab page has no data-sandbox:\n%s", body)
	}
	return m[1]
}

func TestLabFiles(t *testing.T) {
	content := t.TempDir()
	lab := filepath.Join(content, "pics")
	if err := os.MkdirAll(filepath.Join(lab, "img"), 0o755); err != nil {
		t.Fatal(err)
	}
	svg := `<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>`
	files := map[string]string{
		"lab.md":        "---\ntitle: Pics\nsummary: s\nduration: 1 min\nlevel: beginner\n---\n![x](img/a.svg)\n",
		"img/a.svg":     svg,
		"../secret.txt": "top secret",
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(lab, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(content, "secret.txt"), filepath.Join(lab, "leak.txt")); err != nil {
		t.Fatal(err)
	}
	s := newTestServer(t, content)
	c := s.client(t)

	resp, body := get(t, c, s.URL+"/labs/pics/files/img/a.svg")
	if resp.StatusCode != 200 || body != svg {
		t.Fatalf("GET svg = %d %q, want 200 %q", resp.StatusCode, body, svg)
	}
	if got := resp.Header.Get("Content-Type"); got != "image/svg+xml" {
		t.Errorf("svg Content-Type = %q, want image/svg+xml", got)
	}
	if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("X-Content-Type-Options = %q, want nosniff", got)
	}
	if got := resp.Header.Get("Content-Security-Policy"); !strings.Contains(got, "sandbox") {
		t.Errorf("lab file CSP = %q, want a sandbox directive", got)
	}

	for _, p := range []string{
		"/labs/pics/files/..%2fsecret.txt",
		"/labs/pics/files/img%2f..%2f..%2fsecret.txt",
		"/labs/pics/files/leak.txt",
		"/labs/pics/files/img",
		"/labs/pics/files/missing.png",
		"/labs/nope/files/img/a.svg",
	} {
		resp, body := get(t, c, s.URL+p)
		if resp.StatusCode == 200 || strings.Contains(body, "top secret") {
			t.Errorf("GET %s = %d, want refused:\n%s", p, resp.StatusCode, body)
		}
	}
}

func TestLearnerCookie(t *testing.T) {
	s := newTestServer(t, "")
	fresh := func(cookie string) (string, bool) {
		req, _ := http.NewRequest("GET", s.URL+"/", nil)
		if cookie != "" {
			req.Header.Set("Cookie", cookieName+"="+cookie)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		for _, c := range resp.Cookies() {
			if c.Name == cookieName {
				if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" {
					t.Errorf("cookie %+v: want HttpOnly, SameSite=Lax, Path=/", c)
				}
				return c.Value, true
			}
		}
		return "", false
	}
	valid, ok := fresh("")
	if !ok {
		t.Fatal("first visit set no learner cookie")
	}
	id, sig, _ := strings.Cut(valid, ".")
	other := strings.Repeat("0", 32)
	tests := []struct {
		name     string
		cookie   string
		wantKeep bool
	}{
		{"valid", valid, true},
		{"tampered signature", id + "." + strings.Repeat("f", len(sig)), false},
		{"other id with valid signature", other + "." + sig, false},
		{"no signature", id, false},
		{"garbage", "x.y", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, replaced := fresh(tt.cookie)
			if tt.wantKeep && replaced {
				t.Errorf("valid cookie replaced by %q", got)
			}
			if !tt.wantKeep {
				if !replaced {
					t.Fatal("bad cookie kept (no new cookie set)")
				}
				if newID, _, _ := strings.Cut(got, "."); newID == id || newID == other {
					t.Errorf("bad cookie replaced by one for the same learner %s", newID)
				}
			}
		})
	}
}

// TestTerminal drives the websocket route with a real shell: who may
// attach, input and output, and the close code when the shell exits.
func TestTerminal(t *testing.T) {
	s := newTestServer(t, "")
	owner, stranger := s.client(t), s.client(t)
	sid := sandboxOf(t, owner, s.URL)
	sandboxOf(t, stranger, s.URL) // the stranger has a valid cookie of their own
	wsURL := "ws" + strings.TrimPrefix(s.URL, "http") + "/sandboxes/" + sid + "/terminal"
	origin := s.URL

	refused := []struct {
		name   string
		jar    http.CookieJar
		url    string
		origin string
		want   int
	}{
		{"another learner", stranger.Jar, wsURL, origin, http.StatusForbidden},
		{"no cookie", nil, wsURL, origin, http.StatusForbidden},
		{"foreign origin", owner.Jar, wsURL, "http://evil.example", http.StatusForbidden},
		{"unknown sandbox", owner.Jar, strings.Replace(wsURL, sid, "sb-0000000000000000", 1), origin, http.StatusNotFound},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			d := websocket.Dialer{Jar: tt.jar, Subprotocols: []string{terminal.Subprotocol}, HandshakeTimeout: waitTimeout}
			conn, resp, err := d.Dial(tt.url, http.Header{"Origin": {tt.origin}})
			if conn != nil {
				conn.Close()
				t.Fatal("dial succeeded, want refused")
			}
			if resp == nil || resp.StatusCode != tt.want {
				t.Fatalf("dial: resp %v err %v, want status %d", resp, err, tt.want)
			}
		})
	}

	t.Run("owner", func(t *testing.T) {
		ws, conn := dial(t, owner, s.URL, sid)
		defer ws.Close()
		if err := conn.WriteMessage(terminal.Input("echo hi-$((40+2))\r")); err != nil {
			t.Fatal(err)
		}
		readUntil(t, ws, conn, "hi-42")
		if err := conn.WriteMessage(terminal.Input("exit\r")); err != nil {
			t.Fatal(err)
		}
		code := readUntilClose(t, ws, conn)
		if code != terminal.CloseShellExited {
			t.Errorf("close code after exit = %d, want %d (shell exited)", code, terminal.CloseShellExited)
		}
	})

	// The shell is gone: a reload starts a fresh one under the same ID.
	deadline := time.Now().Add(waitTimeout)
	for {
		if _, _, ok := s.mgr.Get(sid); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("sandbox still registered after its shell exited")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := sandboxOf(t, owner, s.URL); got != sid {
		t.Errorf("sandbox after reload = %s, want %s", got, sid)
	}
	if _, _, ok := waitSandbox(t, s.mgr, sid); !ok {
		t.Error("no fresh sandbox after reloading the lab page")
	}
}

// TestIdle checks that typing keeps a sandbox alive past its idle timeout
// and that, once the learner stops, the browser is told "idle timeout".
func TestIdle(t *testing.T) {
	const idle = 3 * time.Second
	s := newTestServerIdle(t, "", idle, 100*time.Millisecond)
	owner := s.client(t)
	sid := sandboxOf(t, owner, s.URL)
	ws, conn := dial(t, owner, s.URL, sid)
	defer ws.Close()

	// Type for twice the idle timeout, far more often than it.
	for i, end := 0, time.Now().Add(2*idle); time.Now().Before(end); i++ {
		want := fmt.Sprintf("typed-%d", i*7)
		if err := conn.WriteMessage(terminal.Input(fmt.Sprintf("echo typed-$((%d*7))\r", i))); err != nil {
			t.Fatal(err)
		}
		readUntil(t, ws, conn, want)
		time.Sleep(300 * time.Millisecond)
	}
	if _, _, ok := s.mgr.Get(sid); !ok {
		t.Fatal("sandbox reaped while the learner was typing")
	}
	// Now idle: the reaper ends it and the hook reports why.
	if code := readUntilClose(t, ws, conn); code != terminal.CloseIdle {
		t.Errorf("close code = %d, want %d (idle timeout)", code, terminal.CloseIdle)
	}
}

func dial(t *testing.T, c *http.Client, base, sid string) (*websocket.Conn, *terminal.Conn) {
	t.Helper()
	d := websocket.Dialer{Jar: c.Jar, Subprotocols: []string{terminal.Subprotocol}, HandshakeTimeout: waitTimeout}
	url := "ws" + strings.TrimPrefix(base, "http") + "/sandboxes/" + sid + "/terminal"
	ws, _, err := d.Dial(url, http.Header{"Origin": {base}})
	if err != nil {
		t.Fatalf("dial terminal: %v", err)
	}
	return ws, terminal.NewConn(ws)
}

// readUntil reads terminal output until it contains want.
func readUntil(t *testing.T, ws *websocket.Conn, conn *terminal.Conn, want string) {
	t.Helper()
	ws.SetReadDeadline(time.Now().Add(waitTimeout))
	var out bytes.Buffer
	for !strings.Contains(out.String(), want) {
		m, err := conn.ReadMessage()
		if err != nil {
			t.Fatalf("read: %v; output so far:\n%s", err, out.String())
		}
		if o, ok := m.(terminal.Output); ok {
			out.Write(o)
		}
	}
}

// readUntilClose reads until the server closes and returns the close code.
func readUntilClose(t *testing.T, ws *websocket.Conn, conn *terminal.Conn) int {
	t.Helper()
	ws.SetReadDeadline(time.Now().Add(waitTimeout))
	for {
		_, err := conn.ReadMessage()
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code
		}
		if err != nil {
			t.Fatalf("read: %v, want a close frame", err)
		}
	}
}

func TestStaticCaching(t *testing.T) {
	s := newTestServer(t, "")
	c := s.client(t)
	_, page := get(t, c, s.URL+"/")
	m := regexp.MustCompile(`href="(/static/app\.css\?v=([0-9a-f]+))"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("page links no versioned app.css:\n%s", page)
	}
	resp, _ := get(t, c, s.URL+m[1])
	if got := resp.Header.Get("Cache-Control"); !strings.Contains(got, "immutable") {
		t.Errorf("versioned asset Cache-Control = %q, want immutable", got)
	}
	resp, _ = get(t, c, s.URL+"/static/app.css")
	if got := resp.Header.Get("Cache-Control"); got != "no-cache" {
		t.Errorf("unversioned asset Cache-Control = %q, want no-cache", got)
	}
	req, _ := http.NewRequest("GET", s.URL+"/static/app.css", nil)
	req.Header.Set("If-None-Match", `"`+m[2]+`"`)
	r, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusNotModified {
		t.Errorf("conditional GET = %d, want 304", r.StatusCode)
	}
	for _, p := range []string{"/static/", "/static/nope.js", "/static/..%2fweb.go"} {
		resp, _ := get(t, c, s.URL+p)
		if resp.StatusCode != 404 {
			t.Errorf("GET %s = %d, want 404", p, resp.StatusCode)
		}
	}
}

func BenchmarkLabPage(b *testing.B) {
	s := newTestServer(b, "")
	c := s.client(b)
	sandboxOf(b, c, s.URL) // start the sandbox outside the timing
	b.ResetTimer()
	for b.Loop() {
		resp, err := c.Get(s.URL + "/labs/hello-shell")
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/op")
}

// Only page loads start sandboxes: another site's fetch or <img> (or a
// learner's app in the preview) gets 403, and no learner is made.
func TestLabPageCrossSite(t *testing.T) {
	s := newTestServer(t, "")
	tests := []struct {
		name             string
		site, mode, dest string
		want             int
	}{
		{"no fetch metadata (curl)", "", "", "", 200},
		{"typed address", "none", "navigate", "document", 200},
		{"link from another site", "cross-site", "navigate", "document", 200},
		{"labd's own page", "same-origin", "cors", "empty", 200},
		{"fetch from another site", "cross-site", "cors", "empty", http.StatusForbidden},
		{"img from another site", "cross-site", "no-cors", "image", http.StatusForbidden},
		{"iframe from another site", "cross-site", "navigate", "iframe", http.StatusForbidden},
		{"fetch from a sibling host", "same-site", "cors", "empty", http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := s.client(t)
			req, _ := http.NewRequest("GET", s.URL+"/labs/hello-shell", nil)
			for k, v := range map[string]string{"Sec-Fetch-Site": tt.site, "Sec-Fetch-Mode": tt.mode, "Sec-Fetch-Dest": tt.dest} {
				if v != "" {
					req.Header.Set(k, v)
				}
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("status = %d, want %d:\n%s", resp.StatusCode, tt.want, body)
			}
			m := regexp.MustCompile(`data-sandbox="([^"]+)"`).FindSubmatch(body)
			if tt.want != 200 {
				if m != nil || len(resp.Cookies()) != 0 {
					t.Errorf("refused request made a learner (%v) or names a sandbox (%q)", resp.Cookies(), m)
				}
				return
			}
			if m == nil {
				t.Fatalf("no sandbox on the page:\n%s", body)
			}
			if _, _, ok := waitSandbox(t, s.mgr, string(m[1])); !ok {
				t.Errorf("sandbox %s not running", m[1])
			}
		})
	}
}
