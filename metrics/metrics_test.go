package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestMetricsText(t *testing.T) {
	m := New()
	held := 3
	m.Sandboxes(func() int { return held }, func() int { return 2 })
	m.Request("GET /labs/{id}", 200)
	m.Request("GET /labs/{id}", 200)
	m.Request("", 404)
	m.SandboxEnded("idle")
	done := m.TerminalAttached()
	m.Evaluated(30 * time.Millisecond)
	m.StepDone()
	m.BuildDone(3*time.Second, false)
	m.BuildDone(time.Second, true)
	m.ContainerStarted()
	m.TerminalClosed(4003)
	m.Transferred("push", 1000, false)
	m.Transferred("pull", 0, true)
	scrape := func() string {
		rec := httptest.NewRecorder()
		m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		b, _ := io.ReadAll(rec.Body)
		return string(b)
	}
	body := scrape()
	for _, want := range []string{
		`labd_http_requests_total{code="200",route="GET /labs/{id}"} 2`,
		`labd_http_requests_total{code="404",route="unmatched"} 1`,
		`labd_sandboxes 3`, `labd_sandboxes_warm 2`,
		`labd_sandboxes_ended_total{reason="idle"} 1`,
		`labd_terminal_connections 1`,
		`labd_grader_evaluation_seconds_count 1`,
		`labd_steps_completed_total 1`,
		`labd_build_seconds_count{result="ok"} 1`,
		`labd_build_seconds_count{result="failed"} 1`,
		`labd_container_starts_total 1`,
		`labd_terminal_closes_total{code="4003"} 1`,
		`labd_registry_transfers_total{kind="push",result="ok"} 1`,
		`labd_registry_transfers_total{kind="pull",result="failed"} 1`,
		`labd_registry_transfer_bytes_total{kind="push"} 1000`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
	done()
	held = 0
	body = scrape()
	for _, want := range []string{`labd_terminal_connections 0`, `labd_sandboxes 0`} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("after the terminal left, metrics lack %q", want)
		}
	}
}
