package web

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/labd/labd/labs"
	"github.com/labd/labd/sandbox"
)

// Admission: who may start something new on this server. A new learner
// identity and a new sandbox cost the client one token of its bucket
// (AdmissionLimit): one token per request, as a cookie-less lab page
// makes both at once. What a learner already has is free: a sandbox
// that runs, or one they had before (its workspace is on disk: reaped,
// exited, labd restarted), so a class reloading its pages, or coming
// back after a restart, never waits. The Manager's maximum
// (sandbox.ManagerOptions.MaxSandboxes) is the other half: a full
// server shows "the class is full" on the lab page.
//
// A client is the address proxy.go's clientOf works out (trusted
// proxies' X-Forwarded-For honoured); IPv6 clients by their /64, which
// one host can fill with addresses of its own.

// Defaults of AdmissionLimit: a class of 50 behind one NAT (a lab room)
// opens its first lab within the burst, with room for the instructor
// and a few cleared cookies; the whole burst is back within three
// minutes for the next lab. A script gets 100 at once and then one every
// 1.2 seconds, while --max-sandboxes bounds all of them together.
const (
	DefaultAdmissionRate  = 50 // tokens per minute
	DefaultAdmissionBurst = 100
)

// AdmissionLimit is the token bucket of every client.
type AdmissionLimit struct {
	// PerMinute is the sustained rate of new learners and sandboxes one
	// client may start; 0: DefaultAdmissionRate; negative: no limit.
	PerMinute float64
	// Burst is how many it may start at once; 0: DefaultAdmissionBurst.
	Burst int
}

// fullRetry is the Retry-After of the "class is full" page: a place frees
// up whenever a sandbox ends, which nothing announces.
const fullRetry = 30 * time.Second

// limiter holds one bucket per client. A nil limiter admits everyone.
type limiter struct {
	perSec float64
	burst  float64
	now    func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	tokens float64   // at at
	at     time.Time //
	logged bool      // its refusal has been logged since it was last admitted
}

// sweepAbove is how many buckets are kept before full ones (the same as
// none) are dropped.
const sweepAbove = 1024

func newLimiter(l AdmissionLimit, now func() time.Time) *limiter {
	if l.PerMinute < 0 {
		return nil
	}
	if l.PerMinute == 0 {
		l.PerMinute = DefaultAdmissionRate
	}
	if l.Burst <= 0 {
		l.Burst = DefaultAdmissionBurst
	}
	if now == nil {
		now = time.Now
	}
	return &limiter{perSec: l.PerMinute / 60, burst: float64(l.Burst), now: now, buckets: map[string]*bucket{}}
}

// level is b's tokens at now.
func (l *limiter) level(b *bucket, now time.Time) float64 {
	return min(l.burst, b.tokens+now.Sub(b.at).Seconds()*l.perSec)
}

// wait is how long until b holds a whole token, in whole seconds.
func (l *limiter) wait(level float64) time.Duration {
	return time.Duration(max(1, math.Ceil((1-level)/l.perSec))) * time.Second
}

// peek reports whether client has a token now, else how long until it
// will.
func (l *limiter) peek(client string) (time.Duration, bool) {
	if l == nil {
		return 0, true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[client]
	if !ok {
		return 0, true
	}
	if lv := l.level(b, l.now()); lv < 1 {
		return l.wait(lv), false
	}
	return 0, true
}

// take spends one of client's tokens; without one it says how long until
// there is, and whether this is the first refusal since the client was
// last admitted (for the log).
func (l *limiter) take(client string) (retry time.Duration, first, ok bool) {
	if l == nil {
		return 0, false, true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b, found := l.buckets[client]
	if !found {
		l.sweep(now)
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[client] = b
	}
	lv := l.level(b, now)
	if lv < 1 {
		first = !b.logged
		b.logged = true
		return l.wait(lv), first, false
	}
	b.tokens, b.at, b.logged = lv-1, now, false
	return 0, false, true
}

// sweep drops full buckets once there are many, at most once a minute,
// so that memory follows the clients of the last few minutes.
func (l *limiter) sweep(now time.Time) {
	if len(l.buckets) < sweepAbove || now.Sub(l.swept) < time.Minute {
		return
	}
	l.swept = now
	for c, b := range l.buckets {
		if l.level(b, now) >= l.burst {
			delete(l.buckets, c)
		}
	}
}

// admissionClient is the bucket's key for r: the client's address, its
// /64 for IPv6.
func admissionClient(r *http.Request) string {
	s := clientAddr(r)
	a, err := netip.ParseAddr(s)
	if err != nil {
		return s
	}
	if a = a.Unmap(); a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// errSlowDown is Admit's refusal: the client's bucket is empty.
type errSlowDown struct{ retry time.Duration }

func (e *errSlowDown) Error() string {
	return fmt.Sprintf("too many new learners and sandboxes from one address: retry in %v", e.retry)
}

// admission is what one lab page load owes.
type admission struct {
	s      *server
	r      *http.Request
	client string
	free   bool // the learner reopens what they have
}

// admissionFor works out what opening sandbox sid costs: nothing when the
// learner (not fresh: their cookie is valid) has it running or being
// made, or had it before, a token otherwise.
func (s *server) admissionFor(r *http.Request, learner, sid string, fresh bool) admission {
	a := admission{s: s, r: r, client: admissionClient(r)}
	if !fresh {
		// Info, not Get: a sandbox still being made (the page does not
		// wait for it, so a reload comes early) is the learner's too.
		if in, ok := s.opts.Sandboxes.Info(sid); ok && in.Owner == learner {
			a.free = true
		} else if fi, err := os.Stat(s.opts.Sandboxes.WorkspaceDir(sid)); err == nil && fi.IsDir() {
			a.free = true
		}
	}
	return a
}

// allowed is the check before anything is made (identity, registry
// account): whether the client has a token, else how long until.
func (a admission) allowed() (time.Duration, bool) {
	if a.free {
		return 0, true
	}
	return a.s.admission.peek(a.client)
}

// admit is the Manager's Admit: it spends the token once the Manager is
// about to create the sandbox, so concurrent loads of one sandbox pay
// once and a full server costs nothing.
func (a admission) admit() error {
	if a.free {
		return nil
	}
	retry, first, ok := a.s.admission.take(a.client)
	if !ok {
		if first {
			a.s.log.Warn("admission: too many new learners and sandboxes from one client; refusing until its bucket refills",
				"client", a.client, "retry_after", retry)
		}
		return &errSlowDown{retry: retry}
	}
	return nil
}

// labWait stands in for the terminal when the learner gets no sandbox
// now; the page tries again by itself after Retry seconds.
type labWait struct {
	Reason  string // "full" or "slow", for the page's data-wait
	Title   string
	Message string
	Retry   int // seconds
}

// slowDown answers 429: too many new learners or sandboxes from the
// client's address.
func (s *server) slowDown(w http.ResponseWriter, r *http.Request, lab *labs.Lab, retry time.Duration) {
	n := int(retry / time.Second)
	s.waitPage(w, r, http.StatusTooManyRequests, lab, labWait{
		Reason: "slow",
		Title:  "Too many new sandboxes from your network",
		Message: fmt.Sprintf("labd starts a limited number of new sandboxes a minute for one network address, and yours has reached it. "+
			"This page tries again in %d seconds by itself; please do not reload it sooner.", n),
		Retry: n,
	})
}

// classFull answers 503: the server runs its maximum of sandboxes.
func (s *server) classFull(w http.ResponseWriter, r *http.Request, lab *labs.Lab, full *sandbox.FullError) {
	// Once a minute at most: a full class reloads every 30 s.
	if now, last := time.Now().UnixNano(), s.fullLogged.Load(); now-last > int64(time.Minute) && s.fullLogged.CompareAndSwap(last, now) {
		s.log.Warn("the class is full: new learners wait (--max-sandboxes)", "max_sandboxes", full.Max, "client", clientAddr(r))
	}
	n := int(fullRetry / time.Second)
	s.waitPage(w, r, http.StatusServiceUnavailable, lab, labWait{
		Reason: "full",
		Title:  "The class is full",
		Message: fmt.Sprintf("This server runs at most %d sandboxes at once, and that many are running. "+
			"A place frees up as soon as someone's sandbox ends (when it goes unused for a while, or its shell exits). "+
			"This page tries again every %d seconds by itself; you can read the lab meanwhile.", full.Max, n),
		Retry: n,
	})
}

func (s *server) waitPage(w http.ResponseWriter, r *http.Request, status int, lab *labs.Lab, wt labWait) {
	h := w.Header()
	h.Set("Retry-After", strconv.Itoa(wt.Retry))
	h.Set("Cache-Control", "no-store")
	s.render(w, r, status, "lab", labData{Lab: lab, Wait: &wt})
}

// isSlowDown reports whether err is admit's refusal, and its wait.
func isSlowDown(err error) (time.Duration, bool) {
	var e *errSlowDown
	if errors.As(err, &e) {
		return e.retry, true
	}
	return 0, false
}
