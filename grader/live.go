package grader

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/client"
	"github.com/labd/labd/grader/progress"
	"github.com/labd/labd/labs"
	"github.com/labd/labd/sandbox"
)

// DefaultDebounce is how long Live waits after an event for more before it
// evaluates: a build emits a burst of events, a save several file events.
const DefaultDebounce = 40 * time.Millisecond

// recordsWait is how long one long poll of the engine's records lasts
// (GET /labd/v1/records?after=&wait=): `docker container logs` publishes
// no engine event, so the engine's record count announces the learner's
// commands.
const recordsWait = 30 * time.Second

// The grader's own commands in the sandbox (script and http checks) may
// cause engine events (a script that runs a container: the engine's events
// are the same whichever socket asked) or file changes (an app that logs
// to the workspace, a script's container with a bind mount of it). Such
// events must not start the next evaluation at once, or a failing check
// would re-run itself in a loop. An event that arrives while a grader
// command runs, or within selfGrace after one ended, or that concerns a
// container created then, is a "self" event. The first one after an
// evaluation that something else caused is evaluated at once (it may be
// the learner's: a file saved while a script ran); a chain of them is
// evaluated only after a delay that doubles from selfBackoffMin to
// selfBackoffMax while self events keep coming and goes back to the
// minimum on any other trigger. A learner's action during such a chain is
// seen late, never lost; the learner's engine commands are always seen at
// once (the record count, which the grader's own requests, on sockets of
// the grader's, never raise).
const (
	selfGrace      = 250 * time.Millisecond
	selfBackoffMin = 2 * time.Second
	selfBackoffMax = time.Minute
	maxSelfCtrs    = 256
)

// Live re-evaluates the checks of live sandboxes when something happens
// and keeps passes in the progress store.
type Live struct {
	store    *progress.Store // nil: passes are kept in memory only
	log      *slog.Logger
	debounce time.Duration
	onStep   func(StepDone)      // LiveOptions.OnStepDone
	onEval   func(time.Duration) // LiveOptions.OnEvaluate

	mu       sync.Mutex
	watchers map[string]*Watcher
}

// LiveOptions configure NewLive.
type LiveOptions struct {
	Store    *progress.Store
	Logger   *slog.Logger
	Debounce time.Duration // 0: DefaultDebounce
	// OnStepDone hears of each step a learner's checks complete (a
	// course platform's webhook); called after the passes are stored,
	// never with a lock held.
	OnStepDone func(StepDone)
	// OnEvaluate hears how long each live grading pass took.
	OnEvaluate func(time.Duration)
}

// StepDone is a step whose every check now passes, one of them for the
// first time.
type StepDone struct {
	Learner, Lab string
	Step         int
	Title        string
	At           time.Time // when its last check passed
	// StepScore is the step's points; Score and MaxScore the lab's.
	StepScore, Score, MaxScore int
}

// NewLive returns a Live with no sandboxes watched.
func NewLive(o LiveOptions) *Live {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Debounce <= 0 {
		o.Debounce = DefaultDebounce
	}
	return &Live{store: o.Store, log: o.Logger, debounce: o.Debounce, onStep: o.OnStepDone, onEval: o.OnEvaluate, watchers: map[string]*Watcher{}}
}

// Store returns the progress store (nil when none).
func (l *Live) Store() *progress.Store { return l.store }

// Target is one learner's sandbox for one lab.
type Target struct {
	SandboxID string
	Learner   string
	Lab       *labs.Lab
	Sandbox   sandbox.Sandbox
	// Socket is the grader's socket to the sandbox's engine (for labd's
	// engine enginebox.GraderSocketName, never the learner's: calls there
	// are recorded as theirs); "" when it has none.
	Socket string
	// User is the learner's registry account, Env.User of the checks
	// ({{user}} in push checks); "" matches any user.
	User string
}

// Watch returns the watcher of t's sandbox, starting one if needed. A new
// sandbox (or a re-rendered lab) under the same ID replaces the old watcher.
func (l *Live) Watch(t Target) *Watcher {
	l.mu.Lock()
	defer l.mu.Unlock()
	if w, ok := l.watchers[t.SandboxID]; ok {
		if w.t.Sandbox == t.Sandbox && w.t.Lab == t.Lab {
			return w
		}
		w.stop()
	}
	w := l.newWatcher(t)
	l.watchers[t.SandboxID] = w
	return w
}

// Get returns the watcher of sid, if any.
func (l *Live) Get(sid string) (*Watcher, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w, ok := l.watchers[sid]
	return w, ok
}

// Stop ends the watcher of sid (its sandbox is gone).
func (l *Live) Stop(sid string) {
	l.mu.Lock()
	w, ok := l.watchers[sid]
	delete(l.watchers, sid)
	l.mu.Unlock()
	if ok {
		w.stop()
	}
}

// Close stops every watcher.
func (l *Live) Close() {
	l.mu.Lock()
	ws := l.watchers
	l.watchers = map[string]*Watcher{}
	l.mu.Unlock()
	for _, w := range ws {
		w.stop()
	}
}

// Watcher evaluates one sandbox's checks on events.
type Watcher struct {
	l       *Live
	t       Target
	env     *Env
	trigger chan struct{}
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{}

	mu        sync.Mutex
	cur       LabResult
	passed    map[string]time.Time // sticky passes (from the store and this run)
	regressed map[string]bool      // sticky: false checks that passed and no longer do
	asked     map[int]time.Time    // steps whose Check button was pressed, and when
	answers   map[string][]string  // question check ID → the learner's latest answer
	subs      map[chan LabResult]struct{}
	evals     int

	// Grader commands running in the sandbox, for telling their side
	// effects from the learner's (see selfGrace).
	selfMu      sync.Mutex
	execs       int
	execEnd     time.Time
	selfCtrs    map[string]bool // containers created while a grader command ran
	selfTrigger chan struct{}
}

func (l *Live) newWatcher(t Target) *Watcher {
	ctx, cancel := context.WithCancel(context.Background())
	w := &Watcher{
		l: l, t: t, trigger: make(chan struct{}, 1), ctx: ctx, cancel: cancel,
		done: make(chan struct{}), passed: map[string]time.Time{}, subs: map[chan LabResult]struct{}{},
		regressed: map[string]bool{}, asked: map[int]time.Time{}, answers: map[string][]string{},
		selfCtrs: map[string]bool{}, selfTrigger: make(chan struct{}, 1),
	}
	w.env = &Env{Workspace: t.Sandbox.Workspace(), Sandbox: selfExecer{w: w, e: t.Sandbox}, User: t.User, Answers: w.answer}
	if t.Socket != "" {
		if c, err := NewClient(t.Socket); err == nil {
			w.env.Docker = c
		} else {
			l.log.Warn("grader engine client", "sandbox", t.SandboxID, "err", err)
		}
	}
	if l.store != nil {
		if p, err := l.store.Passed(ctx, t.Learner, t.Lab.ID); err == nil {
			w.passed = p
		} else {
			l.log.Warn("read progress", "sandbox", t.SandboxID, "err", err)
		}
		if a, err := l.store.Answers(ctx, t.Learner, t.Lab.ID); err == nil {
			w.answers = a
		} else {
			l.log.Warn("read answers", "sandbox", t.SandboxID, "err", err)
		}
		if err := l.store.Seen(ctx, t.Learner, t.Lab.ID, time.Now()); err != nil {
			l.log.Warn("record visit", "sandbox", t.SandboxID, "err", err)
		}
	}
	w.cur = w.pendingResult()
	go w.run()
	return w
}

func (w *Watcher) stop() {
	w.cancel()
	<-w.done
	if w.env.Docker != nil {
		w.env.Docker.Close()
	}
}

// pendingResult is the lab with stored passes filled in and the rest pending.
func (w *Watcher) pendingResult() LabResult {
	res := LabResult{Lab: w.t.Lab.ID, Time: time.Now()}
	for _, st := range w.t.Lab.Steps {
		sr := StepResult{Index: st.Index, ID: st.ID, Title: st.Title}
		for _, c := range st.Checks {
			cr := CheckResult{ID: c.ID, Kind: c.Kind, Title: c.Title, Step: st.Index, State: StatePending, Hint: c.Hint}
			if at, ok := w.passed[c.ID]; ok {
				cr.State, cr.PassedAt, cr.Hint = StatePassed, &at, ""
			}
			sr.Checks = append(sr.Checks, cr)
		}
		res.Steps = append(res.Steps, sr)
	}
	res.finish()
	return res
}

// Latest returns the newest result.
func (w *Watcher) Latest() LabResult {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cur
}

// Evaluations counts evaluations so far (tests, benchmarks).
func (w *Watcher) Evaluations() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.evals
}

// Subscribe returns a channel that receives the newest result after every
// evaluation (a slow reader sees only the latest), starting with the
// current one. cancel releases it.
func (w *Watcher) Subscribe() (<-chan LabResult, func()) {
	ch := make(chan LabResult, 1)
	w.mu.Lock()
	w.subs[ch] = struct{}{}
	ch <- w.cur
	w.mu.Unlock()
	return ch, func() {
		w.mu.Lock()
		delete(w.subs, ch)
		w.mu.Unlock()
	}
}

// Ask records that the learner asked to check a step (the Check button;
// step <= 0: every step) and triggers an evaluation. The page shows a
// step's failing checks as "not yet" only once asked (see Asked).
func (w *Watcher) Ask(step int) {
	now := time.Now()
	w.mu.Lock()
	if step <= 0 {
		for _, st := range w.t.Lab.Steps {
			w.asked[st.Index] = now
		}
	} else {
		w.asked[step] = now
	}
	w.mu.Unlock()
	w.Trigger()
}

// Asked returns, sorted, the steps the learner asked to check before the
// evaluation that made res began, so the answer to a Check click is the
// first result that includes it.
func (w *Watcher) Asked(res LabResult) []int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := []int{}
	for _, st := range w.t.Lab.Steps {
		if at, ok := w.asked[st.Index]; ok && !at.After(res.Time) {
			out = append(out, st.Index)
		}
	}
	return out
}

// Trigger asks for an evaluation (an event, a file change).
func (w *Watcher) Trigger() {
	select {
	case w.trigger <- struct{}{}:
	default:
	}
}

func (w *Watcher) run() {
	defer close(w.done)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer w.cancel()
	if w.env.Docker != nil {
		wg.Add(1)
		go func() { defer wg.Done(); w.watchEngine() }()
		if w.needsRecords() {
			// The count is taken before the first evaluation, so no call
			// falls between what it reads and what the long poll waits for.
			r, err := fetchRecords(w.ctx, w.env.Docker, time.Now())
			wg.Add(1)
			go func() { defer wg.Done(); w.watchRecords(r, err) }()
		}
	}
	wg.Add(1)
	go func() { defer wg.Done(); watchFiles(w.ctx, w.env.Workspace, w.fileChanged, w.l.log) }()
	w.evaluate()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	selfTimer := time.NewTimer(time.Hour)
	selfTimer.Stop()
	selfPending, backoff := false, selfBackoffMin
	// armed: an evaluation is due at timer; armedBySelf: only self events
	// asked for it; lastBySelf: the latest evaluation was one of those.
	armed, armedBySelf, lastBySelf := false, false, false
	for {
		select {
		case <-w.ctx.Done():
			return
		case <-w.t.Sandbox.Done():
			return
		case <-w.trigger:
			backoff = selfBackoffMin
			armed, armedBySelf = true, false
			timer.Reset(w.l.debounce)
		case <-w.selfTrigger:
			switch {
			case armed:
				// An evaluation is due anyway.
			case !lastBySelf && !selfPending:
				// The first self event after an evaluation something
				// else caused is taken at the usual pace: it may be the
				// learner's (a file saved while a script ran). Only a
				// chain of self events backs off.
				armed, armedBySelf = true, true
				timer.Reset(w.l.debounce)
			case !selfPending:
				selfPending = true
				selfTimer.Reset(backoff)
				backoff = min(backoff*2, selfBackoffMax)
			}
		case <-timer.C:
			lastBySelf = armedBySelf
			armed, armedBySelf = false, false
			w.evaluate()
		case <-selfTimer.C:
			selfPending = false
			lastBySelf = true
			w.evaluate()
		}
	}
}

// needsRecords reports whether a check depends on API calls, which no
// engine event announces.
func (w *Watcher) needsRecords() bool {
	for _, st := range w.t.Lab.Steps {
		for _, c := range st.Checks {
			if c.Kind == "command" || c.Kind == "clean" {
				return true
			}
		}
	}
	return false
}

// selfExecer runs the grader's commands in the sandbox (Exec, script
// checks, http requests) and notes when they run (see selfGrace).
type selfExecer struct {
	w *Watcher
	e Execer
}

func (s selfExecer) Exec(ctx context.Context, e sandbox.ExecSpec) (int, error) {
	defer s.w.selfBegin()()
	return s.e.Exec(ctx, e)
}

// RunCheck implements CheckRunner with the sandbox's own (Exec without).
func (s selfExecer) RunCheck(ctx context.Context, e sandbox.ExecSpec) (int, error) {
	defer s.w.selfBegin()()
	return runCheck(ctx, s.e, e)
}

// DialPort implements PortDialer with the sandbox's own (errNoDialer
// without); the request lasts until the connection is closed.
func (s selfExecer) DialPort(ctx context.Context, port int) (net.Conn, error) {
	end := s.w.selfBegin()
	c, err := dialPort(ctx, s.e, port)
	if err != nil {
		end()
		return nil, err
	}
	return &selfConn{Conn: c, end: sync.OnceFunc(end)}, nil
}

// selfConn ends a grader command when closed.
type selfConn struct {
	net.Conn
	end func()
}

func (c *selfConn) Close() error {
	defer c.end()
	return c.Conn.Close()
}

// selfBegin notes that a grader command starts; the returned func notes
// its end.
func (w *Watcher) selfBegin() func() {
	w.selfMu.Lock()
	w.execs++
	w.selfMu.Unlock()
	return func() {
		w.selfMu.Lock()
		w.execs--
		w.execEnd = time.Now()
		w.selfMu.Unlock()
	}
}

// selfBusyLocked reports whether a grader command runs or just ended;
// w.selfMu is held.
func (w *Watcher) selfBusyLocked() bool {
	return w.execs > 0 || time.Since(w.execEnd) < selfGrace
}

// triggerSelf asks for a delayed evaluation (see selfGrace).
func (w *Watcher) triggerSelf() {
	select {
	case w.selfTrigger <- struct{}{}:
	default:
	}
}

// fileChanged is the workspace watcher's callback.
func (w *Watcher) fileChanged() {
	w.selfMu.Lock()
	self := w.selfBusyLocked()
	w.selfMu.Unlock()
	if self {
		w.triggerSelf()
		return
	}
	w.Trigger()
}

// engineEvent triggers an evaluation for m, late when the grader's own
// commands may have caused it.
func (w *Watcher) engineEvent(m events.Message) {
	w.selfMu.Lock()
	self := w.selfBusyLocked()
	if m.Type == events.ContainerEventType && m.Actor.ID != "" {
		switch {
		case w.selfCtrs[m.Actor.ID]:
			self = true
			if m.Action == events.ActionDestroy {
				delete(w.selfCtrs, m.Actor.ID)
			}
		case self && m.Action == events.ActionCreate && len(w.selfCtrs) < maxSelfCtrs:
			w.selfCtrs[m.Actor.ID] = true
		}
	}
	w.selfMu.Unlock()
	if self {
		w.triggerSelf()
		return
	}
	w.Trigger()
}

func (w *Watcher) watchEngine() {
	backoff := 200 * time.Millisecond
	for w.ctx.Err() == nil {
		msgs, errs := w.env.Docker.Events(w.ctx, events.ListOptions{})
		connected := time.Now()
	loop:
		for {
			select {
			case <-w.ctx.Done():
				return
			case m := <-msgs:
				w.engineEvent(m)
			case err := <-errs:
				if w.ctx.Err() == nil && !client.IsErrConnectionFailed(err) {
					w.l.log.Debug("grader events", "sandbox", w.t.SandboxID, "err", err)
				}
				break loop
			}
		}
		if time.Since(connected) > 5*time.Second {
			backoff = 200 * time.Millisecond
		}
		select {
		case <-w.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// watchRecords keeps a long poll of the engine's records open and
// triggers an evaluation when the learner made API calls: only theirs are
// recorded (the grader's requests, script checks' included, go to the
// grader's socket), so the grader never wakes itself up this way.
// r and err are the answer read before the first evaluation.
func (w *Watcher) watchRecords(r *Records, err error) {
	var seq, calls uint64
	known, missed := false, false
	backoff := 200 * time.Millisecond
	for {
		switch {
		case w.ctx.Err() != nil:
			return
		case errors.Is(err, errNoRecords):
			return // not labd's engine: there are no calls to wait for
		case err != nil:
			w.l.log.Debug("grader records", "sandbox", w.t.SandboxID, "err", err)
			select {
			case <-w.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 5*time.Second)
			// An evaluation while the engine did not answer could not
			// read the calls: evaluate again once it does.
			known, missed = false, true
		default:
			backoff = 200 * time.Millisecond
			if missed || known && r.CallSeq != calls {
				w.Trigger()
			}
			seq, calls, known, missed = r.Seq, r.CallSeq, true, false
		}
		if known {
			r, err = awaitRecords(w.ctx, w.env.Docker, seq, recordsWait)
		} else {
			r, err = fetchRecords(w.ctx, w.env.Docker, time.Now())
		}
	}
}

// evaluate checks everything not passed for good and publishes the result.
func (w *Watcher) evaluate() {
	ctx := w.ctx
	p := newProbe(w.env)
	res := LabResult{Lab: w.t.Lab.ID, Time: time.Now()}
	if f := w.l.onEval; f != nil {
		defer func(start time.Time) { f(time.Since(start)) }(res.Time)
	}
	var newPass []CheckResult
	var lost []string
	for _, st := range w.t.Lab.Steps {
		sr := StepResult{Index: st.Index, ID: st.ID, Title: st.Title}
		for _, c := range st.Checks {
			sticky := c.Sticky
			w.mu.Lock()
			at, had := w.passed[c.ID]
			w.mu.Unlock()
			if had && sticky {
				sr.Checks = append(sr.Checks, CheckResult{ID: c.ID, Kind: c.Kind, Title: c.Title, Step: st.Index, State: StatePassed, PassedAt: &at, Sticky: true, Points: c.Points})
				continue
			}
			cr := p.check(ctx, st.Index, c)
			if ctx.Err() != nil {
				return
			}
			switch {
			case cr.State == StatePassed && had:
				cr.PassedAt = &at
			case cr.State == StatePassed:
				newPass = append(newPass, cr)
			case had: // not sticky and no longer true
				lost = append(lost, c.ID)
			}
			w.mu.Lock()
			if cr.State == StatePassed {
				delete(w.regressed, c.ID)
			} else if had {
				w.regressed[c.ID] = true
			}
			cr.Regressed = cr.State != StatePassed && w.regressed[c.ID]
			w.mu.Unlock()
			sr.Checks = append(sr.Checks, cr)
		}
		res.Steps = append(res.Steps, sr)
	}
	res.finish()
	w.mu.Lock()
	for _, c := range newPass {
		w.passed[c.ID] = *c.PassedAt
	}
	for _, id := range lost {
		delete(w.passed, id)
	}
	w.cur = res
	w.evals++
	for ch := range w.subs {
		select {
		case <-ch:
		default:
		}
		ch <- res
	}
	w.mu.Unlock()
	if st := w.l.store; st != nil {
		for _, c := range newPass {
			if err := st.Pass(ctx, w.t.Learner, w.t.Lab.ID, c.ID, c.Step, *c.PassedAt); err != nil {
				w.l.log.Warn("record pass", "sandbox", w.t.SandboxID, "err", err)
			}
		}
		for _, id := range lost {
			if err := st.Forget(ctx, w.t.Learner, w.t.Lab.ID, id); err != nil {
				w.l.log.Warn("forget pass", "sandbox", w.t.SandboxID, "err", err)
			}
		}
	}
	if f := w.l.onStep; f != nil && len(newPass) > 0 {
		for _, d := range stepsDone(w.t.Learner, res, newPass) {
			f(d)
		}
	}
}

// stepsDone are the steps of res that pass in full now thanks to one of
// newPass.
func stepsDone(learner string, res LabResult, newPass []CheckResult) []StepDone {
	fresh := map[string]bool{}
	for _, c := range newPass {
		fresh[c.ID] = true
	}
	var out []StepDone
	for _, sr := range res.Steps {
		if sr.State != StatePassed {
			continue
		}
		d := StepDone{Learner: learner, Lab: res.Lab, Step: sr.Index, Title: sr.Title, Score: res.Score, MaxScore: res.MaxScore}
		hit := false
		for _, c := range sr.Checks {
			d.StepScore += c.Points
			hit = hit || fresh[c.ID]
			if c.PassedAt != nil && c.PassedAt.After(d.At) {
				d.At = *c.PassedAt
			}
		}
		if hit {
			out = append(out, d)
		}
	}
	return out
}

// answer is the learner's latest answer to question check id (Env.Answers).
func (w *Watcher) answer(id string) ([]string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	a, ok := w.answers[id]
	return a, ok
}

// Answer records the learner's answer to question check id, stores it and
// grades again; the page hears the verdict as of any evaluation.
func (w *Watcher) Answer(ctx context.Context, id string, answer []string) error {
	w.mu.Lock()
	w.answers[id] = slices.Clone(answer)
	w.mu.Unlock()
	if st := w.l.store; st != nil {
		if err := st.SetAnswer(ctx, w.t.Learner, w.t.Lab.ID, id, answer, time.Now()); err != nil {
			return err
		}
	}
	w.Ask(stepOf(w.t.Lab, id))
	return nil
}

// stepOf is the index of the step holding check id (0: none).
func stepOf(lab *labs.Lab, id string) int {
	for _, st := range lab.Steps {
		for _, c := range st.Checks {
			if c.ID == id {
				return st.Index
			}
		}
	}
	return 0
}
