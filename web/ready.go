package web

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// ReadyCheck is one thing /readyz asks before it says labd can take
// learners: the progress store answers, the classroom registry answers.
type ReadyCheck struct {
	Name  string
	Check func(ctx context.Context) error
}

// readyTimeout bounds each check: a load balancer asks often.
const readyTimeout = 2 * time.Second

// readyz answers 200 when every check passes and the learners' shell
// image is there, else 503; the body lists each with its state. /healthz
// stays "alive": a process that answers at all.
func (s *server) readyz(w http.ResponseWriter, r *http.Request) {
	var b strings.Builder
	ready := true
	report := func(name string, err error) {
		if err != nil {
			ready = false
			fmt.Fprintf(&b, "%s: %v\n", name, err)
			return
		}
		fmt.Fprintf(&b, "%s: ok\n", name)
	}
	if bi := s.opts.BaseImages; bi != nil {
		var err error
		if !bi.ShellReady() {
			err = fmt.Errorf("the sandbox image is not there yet (labd serve makes it unless --bootstrap none; see the log)")
		}
		report("base images", err)
	}
	for _, c := range s.opts.ReadyChecks {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		report(c.Name, c.Check(ctx))
		cancel()
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if !ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	fmt.Fprint(w, b.String())
}
