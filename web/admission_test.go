package web

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labd/labd/internal/testenv"
	"github.com/labd/labd/labs"
	"github.com/labd/labd/sandbox"
	"github.com/labd/labd/sandbox/nsbox"
)

// fakeClock is the admission buckets' clock in tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2025, 1, 1, 9, 0, 0, 0, time.UTC)} }

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestLimiter: each client's bucket holds Burst tokens and refills at
// PerMinute; an empty one says how long until the next token, and logs
// only its first refusal; full buckets are forgotten once there are many.
func TestLimiter(t *testing.T) {
	type step struct {
		advance time.Duration
		client  string
		peek    bool // peek instead of take
		ok      bool
		retry   time.Duration // when !ok
		first   bool          // when !ok and !peek
	}
	tests := []struct {
		name  string
		limit AdmissionLimit
		steps []step
	}{
		{"burst then refill", AdmissionLimit{PerMinute: 60, Burst: 3}, []step{
			{client: "a", ok: true}, {client: "a", ok: true}, {client: "a", ok: true},
			{client: "a", retry: time.Second, first: true},
			{client: "a", retry: time.Second},
			{client: "a", peek: true, retry: time.Second},
			{client: "b", ok: true}, // another client has its own bucket
			{advance: time.Second, client: "a", peek: true, ok: true},
			{client: "a", ok: true},
			{client: "a", retry: time.Second, first: true},
		}},
		{"refill is capped at the burst", AdmissionLimit{PerMinute: 60, Burst: 2}, []step{
			{client: "a", ok: true},
			{advance: time.Hour, client: "a", ok: true}, {client: "a", ok: true},
			{client: "a", retry: time.Second, first: true},
		}},
		{"slow rate rounds up", AdmissionLimit{PerMinute: 0.5, Burst: 1}, []step{
			{client: "a", ok: true},
			{client: "a", retry: 2 * time.Minute, first: true},
			{advance: 90 * time.Second, client: "a", retry: 30 * time.Second},
			{advance: 30 * time.Second, client: "a", ok: true},
		}},
		{"defaults", AdmissionLimit{}, []step{
			{client: "a", peek: true, ok: true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			l := newLimiter(tt.limit, clock.now)
			for i, st := range tt.steps {
				clock.advance(st.advance)
				var retry time.Duration
				var first, ok bool
				if st.peek {
					retry, ok = l.peek(st.client)
				} else {
					retry, first, ok = l.take(st.client)
				}
				if ok != st.ok || (!ok && (retry != st.retry || first != st.first)) {
					t.Errorf("step %d (%+v): ok %v, retry %v, first %v", i, st, ok, retry, first)
				}
			}
		})
	}

	if l := newLimiter(AdmissionLimit{}, nil); l.perSec != DefaultAdmissionRate/60.0 || l.burst != DefaultAdmissionBurst {
		t.Errorf("defaults: %v/s burst %v, want %v/min burst %v", l.perSec, l.burst, DefaultAdmissionRate, DefaultAdmissionBurst)
	}
	var off *limiter = newLimiter(AdmissionLimit{PerMinute: -1}, nil)
	if off != nil {
		t.Fatal("a negative rate made a limiter, want none")
	}
	for range 3 {
		if _, _, ok := off.take("a"); !ok {
			t.Fatal("no limiter refused")
		}
	}

	// Memory follows the recent clients: full buckets go once there are many.
	clock := newFakeClock()
	l := newLimiter(AdmissionLimit{PerMinute: 60, Burst: 2}, clock.now)
	for i := range sweepAbove {
		l.take(fmt.Sprint("old", i))
	}
	clock.advance(time.Minute)
	l.take("late")
	l.take("late")
	l.take("new")
	if n := len(l.buckets); n != 2 {
		t.Errorf("%d buckets after a sweep, want the two not full", n)
	}
}

// The bucket's key: the client address as clientOf sees it (a trusted
// proxy's X-Forwarded-For honoured), IPv6 by its /64.
func TestAdmissionClient(t *testing.T) {
	s := &server{opts: Options{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.1/32")}}}
	tests := []struct {
		remote, xff, want string
	}{
		{"192.0.2.7:5000", "", "192.0.2.7"},
		{"192.0.2.7:5000", "198.51.100.1", "192.0.2.7"}, // an untrusted peer's header is ignored
		{"10.0.0.1:5000", "198.51.100.1", "198.51.100.1"},
		{"[2001:db8:1:2:3:4:5:6]:5000", "", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:ffff::1]:5000", "", "2001:db8:1:2::/64"},
		{"[::ffff:192.0.2.9]:5000", "", "192.0.2.9"},
		{"10.0.0.1:5000", "2001:db8:9:9::1", "2001:db8:9:9::/64"},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("GET", "/labs/x", nil)
		r.RemoteAddr = tt.remote
		if tt.xff != "" {
			r.Header.Set("X-Forwarded-For", tt.xff)
		}
		var got string
		s.withClient(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got = admissionClient(r) })).ServeHTTP(httptest.NewRecorder(), r)
		if got != tt.want {
			t.Errorf("%s (X-Forwarded-For %q): client %q, want %q", tt.remote, tt.xff, got, tt.want)
		}
	}
}

// admissionServer is a test server whose peer 127.0.0.1 is a trusted
// proxy, so that X-Forwarded-For names the client; max bounds the
// Manager, limit the buckets (on clock).
func admissionServer(t *testing.T, max int, limit AdmissionLimit, clock *fakeClock) *testServer {
	t.Helper()
	testenv.Root(t, "sandboxes (namespaces)")
	content := t.TempDir()
	for _, lab := range []string{"one", "two"} {
		dir := filepath.Join(content, lab)
		md := "---\ntitle: Lab " + lab + "\nsummary: s\nduration: 1 min\nlevel: beginner\n---\nHello.\n\n## Look around\n\nRun `ls`.\n"
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "lab.md"), []byte(md), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	quiet := slog.New(slog.DiscardHandler)
	mgr := sandbox.NewManager(nsbox.New(nsbox.Options{}), sandbox.ManagerOptions{DataDir: t.TempDir(), Logger: quiet, IdleTimeout: -1, MaxSandboxes: max})
	o := Options{
		Logger:         quiet,
		Catalog:        labs.NewCatalog(content),
		Sandboxes:      mgr,
		Secret:         []byte("0123456789abcdef0123456789abcdef"),
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		Admission:      limit,
	}
	if clock != nil {
		o.now = clock.now
	}
	srv := httptest.NewServer(New(o))
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

// page is one page load's answer.
type page struct {
	status  int
	retry   string // Retry-After
	cookie  bool   // a learner cookie was set
	sandbox string // data-sandbox
	body    string
}

// load opens path as client addr (X-Forwarded-For) with c's cookies.
func load(t *testing.T, s *testServer, c *http.Client, addr, path string) page {
	t.Helper()
	req, _ := http.NewRequest("GET", s.URL+path, nil)
	req.Header.Set("X-Forwarded-For", addr)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	p := page{status: resp.StatusCode, retry: resp.Header.Get("Retry-After"), body: string(b)}
	for _, ck := range resp.Cookies() {
		p.cookie = p.cookie || ck.Name == cookieName
	}
	if m := regexp.MustCompile(`data-sandbox="([^"]+)"`).FindStringSubmatch(p.body); m != nil {
		p.sandbox = m[1]
	}
	return p
}

// wantSlowDown checks a 429 answer: the lab page with the notice, a
// Retry-After it also refreshes after, no identity, no sandbox.
func wantSlowDown(t *testing.T, p page, retry string) {
	t.Helper()
	if p.status != http.StatusTooManyRequests || p.retry != retry || p.cookie || p.sandbox != "" {
		t.Fatalf("status %d, Retry-After %q, cookie %v, sandbox %q; want 429, %s, none, none:\n%s", p.status, p.retry, p.cookie, p.sandbox, retry, p.body)
	}
	for _, w := range []string{`data-wait="slow"`, "Too many new sandboxes from your network", "tries again in " + retry + " seconds",
		`<meta http-equiv="refresh" content="` + retry + `">`, "<h1>Lab one</h1>"} {
		if !strings.Contains(p.body, w) {
			t.Errorf("429 page lacks %q:\n%s", w, p.body)
		}
	}
}

// A client starting new learners faster than the limit gets 429 with
// Retry-After once its burst is spent; what learners already have never
// counts; other clients are not affected; the bucket refills.
func TestAdmissionFlood(t *testing.T) {
	clock := newFakeClock()
	s := admissionServer(t, 0, AdmissionLimit{PerMinute: 1, Burst: 3}, clock)
	const flood, other = "192.0.2.66", "198.51.100.7"

	var first *http.Client
	for i := range 3 {
		c := s.client(t)
		if p := load(t, s, c, flood, "/labs/one"); p.status != 200 || !p.cookie || p.sandbox == "" {
			t.Fatalf("cookie-less load %d within the burst: status %d, cookie %v, sandbox %q", i, p.status, p.cookie, p.sandbox)
		}
		if i == 0 {
			first = c
		}
	}
	for range 3 {
		wantSlowDown(t, load(t, s, s.client(t), flood, "/labs/one"), "60")
	}
	if held, _ := s.mgr.Count(); held != 3 {
		t.Errorf("%d sandboxes after the flood, want the burst's 3", held)
	}

	// An existing learner reopening their sandbox is never limited, even
	// once it has ended (its workspace is on disk).
	sid := ""
	for range 5 {
		p := load(t, s, first, flood, "/labs/one")
		if p.status != 200 || p.sandbox == "" || (sid != "" && p.sandbox != sid) {
			t.Fatalf("existing learner: status %d, sandbox %q (before %q)", p.status, p.sandbox, sid)
		}
		sid = p.sandbox
	}
	if err := s.mgr.Destroy(context.Background(), sid, sandbox.ReasonAdmin); err != nil {
		t.Fatal(err)
	}
	if p := load(t, s, first, flood, "/labs/one"); p.status != 200 || p.sandbox != sid {
		t.Fatalf("existing learner after their sandbox ended: status %d, sandbox %q, want 200 %s:\n%s", p.status, p.sandbox, sid, p.body)
	}
	// A sandbox they never had is new: it counts.
	if p := load(t, s, first, flood, "/labs/two"); p.status != http.StatusTooManyRequests || p.retry != "60" || p.sandbox != "" {
		t.Errorf("existing learner's new lab over the limit: status %d, Retry-After %q, sandbox %q; want 429, 60, none", p.status, p.retry, p.sandbox)
	}

	// The catalogue issues no identity over the limit, and is still shown.
	if p := load(t, s, s.client(t), flood, "/"); p.status != 200 || p.cookie {
		t.Errorf("catalogue over the limit: status %d, cookie %v; want 200 without an identity", p.status, p.cookie)
	}
	// Another address has its own bucket.
	if p := load(t, s, s.client(t), other, "/"); p.status != 200 || !p.cookie {
		t.Errorf("catalogue from another address: status %d, cookie %v; want 200 with an identity", p.status, p.cookie)
	}
	if p := load(t, s, s.client(t), other, "/labs/one"); p.status != 200 || p.sandbox == "" {
		t.Errorf("another address: status %d, sandbox %q; want its sandbox", p.status, p.sandbox)
	}

	// A minute later there is one token again: one new learner, then 429.
	clock.advance(time.Minute)
	if p := load(t, s, s.client(t), flood, "/labs/one"); p.status != 200 || p.sandbox == "" {
		t.Errorf("after a minute: status %d, want 200 with a sandbox", p.status)
	}
	wantSlowDown(t, load(t, s, s.client(t), flood, "/labs/one"), "60")
}

// With the default limits, a class of 50 behind one address (each
// learner through the catalogue, then the lab, all within one minute)
// gets its sandboxes; the same address starting far more than a class
// would is stopped at the burst.
func TestAdmissionClass(t *testing.T) {
	clock := newFakeClock()
	s := admissionServer(t, 0, AdmissionLimit{}, clock)
	const room = "203.0.113.10"
	const class = 50
	sids := make(chan string, class)
	var wg sync.WaitGroup
	for i := range class {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := s.client(t)
			if p := load(t, s, c, room, "/"); p.status != 200 || !p.cookie {
				t.Errorf("learner %d: catalogue %d, cookie %v", i, p.status, p.cookie)
				return
			}
			p := load(t, s, c, room, "/labs/one")
			if p.status != 200 || p.sandbox == "" {
				t.Errorf("learner %d: lab page %d, sandbox %q:\n%s", i, p.status, p.sandbox, p.body)
				return
			}
			sids <- p.sandbox
		}()
		if i%10 == 9 {
			wg.Wait()
			clock.advance(10 * time.Second) // 50 learners within a minute
		}
	}
	wg.Wait()
	close(sids)
	seen := map[string]bool{}
	for sid := range sids {
		seen[sid] = true
	}
	if len(seen) != class {
		t.Fatalf("%d distinct sandboxes for a class of %d", len(seen), class)
	}
	// The rest of the burst (and what refilled meanwhile) goes to
	// scripted cookie-less loads, then 429.
	n := 0
	for ; n < 100; n++ {
		if p := load(t, s, s.client(t), room, "/labs/one"); p.status != 200 {
			if p.status != http.StatusTooManyRequests || p.retry == "" {
				t.Fatalf("load %d past the class: status %d, Retry-After %q", n, p.status, p.retry)
			}
			break
		}
	}
	// The burst, plus the rate's refill over the 50 s since the class
	// began (its five groups of ten, ten seconds apart), less the class.
	if want := DefaultAdmissionBurst + DefaultAdmissionRate*50/60 - class; n != want {
		t.Errorf("%d more sandboxes admitted after the class, want %d", n, want)
	}
}

// At the maximum, a new learner gets the lab page saying the class is
// full (503, Retry-After, refreshing itself), existing learners keep
// their sandboxes, the wait costs no tokens, and a sandbox that ends
// lets the next one in. One learner opening one lab many times at once
// makes one sandbox and pays once.
func TestAdmissionFull(t *testing.T) {
	clock := newFakeClock()
	s := admissionServer(t, 2, AdmissionLimit{PerMinute: 1, Burst: 3}, clock)
	const addr = "192.0.2.1"
	a := s.client(t)
	if p := load(t, s, a, addr, "/"); !p.cookie {
		t.Fatal("catalogue set no learner cookie")
	}
	const tabs = 8
	got := make([]page, tabs)
	var wg sync.WaitGroup
	for i := range tabs {
		wg.Add(1)
		go func() { defer wg.Done(); got[i] = load(t, s, a, addr, "/labs/one") }()
	}
	wg.Wait()
	for i, p := range got {
		if p.status != 200 || p.sandbox != got[0].sandbox {
			t.Fatalf("tab %d: status %d, sandbox %q; want 200 and the one sandbox %q", i, p.status, p.sandbox, got[0].sandbox)
		}
	}
	sidA := got[0].sandbox
	if held, _ := s.mgr.Count(); held != 1 {
		t.Errorf("%d sandboxes for one learner's %d tabs, want 1", held, tabs)
	}
	b := s.client(t)
	if p := load(t, s, b, addr, "/labs/one"); p.status != 200 || p.sandbox == "" {
		t.Fatalf("second learner: status %d", p.status)
	}
	c := s.client(t)
	for i := range 4 {
		p := load(t, s, c, addr, "/labs/one")
		if p.status != http.StatusServiceUnavailable || p.retry != "30" || p.sandbox != "" {
			t.Fatalf("third learner at the maximum (try %d): status %d, Retry-After %q, sandbox %q; want 503, 30, none:\n%s", i, p.status, p.retry, p.sandbox, p.body)
		}
		for _, w := range []string{`data-wait="full"`, "The class is full", "at most 2 sandboxes", "every 30 seconds",
			`<meta http-equiv="refresh" content="30">`, "<h1>Lab one</h1>", "Hello."} {
			if !strings.Contains(p.body, w) {
				t.Errorf("full page lacks %q:\n%s", w, p.body)
			}
		}
	}
	// The learners who have a sandbox keep it.
	if p := load(t, s, a, addr, "/labs/one"); p.status != 200 || p.sandbox != sidA {
		t.Errorf("first learner at the maximum: status %d, sandbox %q; want 200 %s", p.status, p.sandbox, sidA)
	}
	if _, _, ok := waitSandbox(t, s.mgr, sidA); !ok {
		t.Errorf("first learner's sandbox %s gone at the maximum", sidA)
	}

	if err := s.mgr.Destroy(context.Background(), sidA, sandbox.ReasonAdmin); err != nil {
		t.Fatal(err)
	}
	if p := load(t, s, c, addr, "/labs/one"); p.status != 200 || p.sandbox == "" {
		t.Fatalf("third learner once a sandbox ended: status %d, sandbox %q:\n%s", p.status, p.sandbox, p.body)
	}
	if held, max := s.mgr.Count(); held != 2 || max != 2 {
		t.Errorf("Count() = %d, %d; want 2, 2", held, max)
	}
	// The burst of 3 went to a (once for all tabs), b and c (once,
	// however long it waited): the next new learner is over the limit.
	wantSlowDown(t, load(t, s, s.client(t), addr, "/labs/one"), "60")
}
