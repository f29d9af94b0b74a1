// Package metrics holds labd's Prometheus metrics (GET /metrics): what an
// operator watches of a class on one server. The parts that count (the
// web front, the sandbox manager, the grader) get the handles they need;
// none imports this package's registry.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are labd's collectors, registered on a registry of their own
// (no global state: tests make as many as they like).
type Metrics struct {
	reg *prometheus.Registry

	httpRequests   *prometheus.CounterVec
	sandboxesEnded *prometheus.CounterVec
	terminals      prometheus.Gauge
	terminalCloses *prometheus.CounterVec
	evaluations    prometheus.Histogram
	stepsDone      prometheus.Counter
	builds         *prometheus.HistogramVec
	containers     prometheus.Counter
	transfers      *prometheus.CounterVec
	transferBytes  *prometheus.CounterVec
}

// New makes the collectors, with Go's and the process's own.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "labd_http_requests_total", Help: "HTTP requests by route pattern and status code.",
		}, []string{"route", "code"}),
		sandboxesEnded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "labd_sandboxes_ended_total", Help: "Sandboxes ended, by reason (idle, lifetime, shell exited, reset, admin, shutdown, ...).",
		}, []string{"reason"}),
		terminals: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "labd_terminal_connections", Help: "Terminal websockets attached now.",
		}),
		terminalCloses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "labd_terminal_closes_total", Help: "Close frames labd sent on terminal websockets, by close code (4000 idle, 4001 destroyed, 4002 shutdown, 4003 shell exited, 4004 too slow, 4005 keep-alive, 4006 lifetime, 4007 stopped).",
		}, []string{"code"}),
		evaluations: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "labd_grader_evaluation_seconds", Help: "Time of one live grading pass of a learner's lab.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		stepsDone: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "labd_steps_completed_total", Help: "Steps learners completed (every check of the step passed).",
		}),
		builds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "labd_build_seconds", Help: "docker build in the learners' engines, by result (ok, failed).",
			Buckets: []float64{.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320},
		}, []string{"result"}),
		containers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "labd_container_starts_total", Help: "Containers started in the learners' engines.",
		}),
		transfers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "labd_registry_transfers_total", Help: "Pushes and pulls of the learners' engines, by kind and result.",
		}, []string{"kind", "result"}),
		transferBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "labd_registry_transfer_bytes_total", Help: "Compressed layer bytes the learners' engines sent (push) and received (pull).",
		}, []string{"kind"}),
	}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.httpRequests, m.sandboxesEnded, m.terminals, m.terminalCloses, m.evaluations, m.stepsDone, m.builds, m.containers, m.transfers, m.transferBytes)
	return m
}

// Handler serves the metrics in Prometheus's text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Sandboxes reports the sandboxes held (live, being made or ended) and
// the warm ones ready, read at each scrape.
func (m *Metrics) Sandboxes(held, warm func() int) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "labd_sandboxes", Help: "Sandboxes held now (live, being made or being ended), as --max-sandboxes counts them."}, func() float64 { return float64(held()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "labd_sandboxes_warm", Help: "Warm sandboxes ready for the next new learner."}, func() float64 { return float64(warm()) }),
	)
}

// Request counts an HTTP request answered with code on route (the
// ServeMux pattern that matched; "" for none).
func (m *Metrics) Request(route string, code int) {
	if route == "" {
		route = "unmatched"
	}
	m.httpRequests.WithLabelValues(route, strconv.Itoa(code)).Inc()
}

// SandboxEnded counts a sandbox's end.
func (m *Metrics) SandboxEnded(reason string) { m.sandboxesEnded.WithLabelValues(reason).Inc() }

// TerminalAttached counts a terminal websocket; the returned func
// uncounts it.
func (m *Metrics) TerminalAttached() (detached func()) {
	m.terminals.Inc()
	return m.terminals.Dec
}

// Evaluated records a live grading pass.
func (m *Metrics) Evaluated(d time.Duration) { m.evaluations.Observe(d.Seconds()) }

// StepDone counts a completed step.
func (m *Metrics) StepDone() { m.stepsDone.Inc() }

func result(failed bool) string {
	if failed {
		return "failed"
	}
	return "ok"
}

// BuildDone records a build of a learner's engine (engine.Observer).
func (m *Metrics) BuildDone(d time.Duration, failed bool) {
	m.builds.WithLabelValues(result(failed)).Observe(d.Seconds())
}

// ContainerStarted counts a container start (engine.Observer).
func (m *Metrics) ContainerStarted() { m.containers.Inc() }

// Transferred counts a push or pull and its bytes (engine.Observer).
func (m *Metrics) Transferred(kind string, bytes int64, failed bool) {
	m.transfers.WithLabelValues(kind, result(failed)).Inc()
	m.transferBytes.WithLabelValues(kind).Add(float64(bytes))
}

// TerminalClosed counts a close frame labd sent on a terminal websocket.
func (m *Metrics) TerminalClosed(code int) {
	m.terminalCloses.WithLabelValues(strconv.Itoa(code)).Inc()
}
