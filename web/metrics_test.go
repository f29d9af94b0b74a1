package web

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/labd/labd/metrics"
	"github.com/labd/labd/sandbox"
	"github.com/labd/labd/sandbox/nsbox"
)

// /metrics counts what a scripted learner does: the lab page by its
// route, the sandbox held, the terminal while it is attached, the sandbox
// ended by its reason.
func TestMetrics(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	mgr := sandbox.NewManager(nsbox.New(nsbox.Options{}), sandbox.ManagerOptions{DataDir: t.TempDir(), Logger: quiet})
	t.Cleanup(func() { mgr.Close(context.Background()) })
	m := metrics.New()
	m.Sandboxes(func() int { held, _ := mgr.Count(); return held }, mgr.Warm)
	mgr.OnDestroy(func(_ string, r sandbox.Reason) { m.SandboxEnded(r.String()) })
	s := newTestServerIdle(t, "", 0, 0, func(o *Options) { o.Sandboxes = mgr; o.Metrics = m; o.Logger = quiet })
	s.mgr = mgr
	c := s.client(t)
	scrape := func() string {
		t.Helper()
		_, body := get(t, c, s.URL+"/metrics")
		return body
	}
	has := func(body, metric string) {
		t.Helper()
		if !regexp.MustCompile("(?m)^" + regexp.QuoteMeta(metric) + "$").MatchString(body) {
			t.Errorf("/metrics lacks %q", metric)
		}
	}
	body := scrape()
	has(body, "labd_sandboxes 0")
	has(body, "labd_terminal_connections 0")
	if !strings.Contains(body, "go_goroutines") {
		t.Error("/metrics lacks Go's own metrics")
	}

	sid := sandboxOf(t, c, s.URL)
	if _, _, ok := waitSandbox(t, mgr, sid); !ok {
		t.Fatal("no sandbox")
	}
	ws, conn := dial(t, c, s.URL, sid)
	get(t, c, s.URL+"/labs/no-such-lab")
	body = scrape()
	has(body, `labd_http_requests_total{code="200",route="GET /labs/{id}"} 1`)
	has(body, `labd_http_requests_total{code="404",route="GET /labs/{id}"} 1`)
	has(body, "labd_sandboxes 1")
	has(body, "labd_terminal_connections 1")
	// Destroyed with the terminal open: labd sends it a close frame.
	mgr.Destroy(context.Background(), sid, sandbox.ReasonAdmin)
	code := readUntilClose(t, ws, conn)
	ws.Close()
	// The terminal's handler returns once the hub sees the close.
	var after string
	for i := 0; i < 100; i++ {
		after = scrape()
		if strings.Contains(after, "labd_terminal_connections 0\n") && strings.Contains(after, "labd_sandboxes 0\n") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	has(after, "labd_terminal_connections 0")
	has(after, "labd_sandboxes 0")
	has(after, `labd_sandboxes_ended_total{reason="`+sandbox.ReasonAdmin.String()+`"} 1`)
	has(after, fmt.Sprintf(`labd_terminal_closes_total{code="%d"} 1`, code))
	has(after, `labd_http_requests_total{code="101",route="GET /sandboxes/{sid}/terminal"} 1`)
}

// A scraper from elsewhere needs the instructor token; a request that
// came through a proxy is from elsewhere.
func TestMetricsAccess(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	s := &server{opts: Options{InstructorToken: "s3cret", Logger: quiet}}
	h := s.metricsAccess(metrics.New().Handler())
	for _, tc := range []struct {
		name, remote, auth, xff string
		want                    int
	}{
		{"loopback", "127.0.0.1:5555", "", "", 200},
		{"loopback v6", "[::1]:5555", "", "", 200},
		{"through a proxy on loopback", "127.0.0.1:5555", "", "203.0.113.9", 401},
		{"elsewhere", "192.0.2.7:5555", "", "", 401},
		{"elsewhere with a wrong token", "192.0.2.7:5555", "Bearer nope", "", 401},
		{"elsewhere with the token", "192.0.2.7:5555", "Bearer s3cret", "", 200},
	} {
		r := httptest.NewRequest("GET", "/metrics", nil)
		r.RemoteAddr = tc.remote
		if tc.auth != "" {
			r.Header.Set("Authorization", tc.auth)
		}
		if tc.xff != "" {
			r.Header.Set("X-Forwarded-For", tc.xff)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, rec.Code, tc.want)
		}
	}
}
