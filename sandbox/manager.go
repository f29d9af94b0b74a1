package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultIdleTimeout is used when ManagerOptions.IdleTimeout is zero.
const DefaultIdleTimeout = time.Hour

var (
	// ErrShellNotReady is returned (wrapped) by a Provider that cannot
	// give learners a shell yet: the sandbox image is still being made,
	// and the simple shell is only for trusted learners.
	ErrShellNotReady = errors.New("the learner's shell image is not ready yet")
	// ErrInvalidID is returned for IDs outside [a-z0-9-]{1,40}.
	ErrInvalidID = errors.New("invalid sandbox id")
	// ErrNotOwner is returned by GetOrCreate when the sandbox exists and
	// belongs to another owner.
	ErrNotOwner = errors.New("sandbox belongs to another owner")
	// ErrClosed is returned once Close has been called.
	ErrClosed = errors.New("sandbox manager closed")
	// ErrNotFound is returned by Wait for an id with no sandbox, made or
	// being made.
	ErrNotFound = errors.New("no such sandbox")
	// ErrFull is returned (as a *FullError) when a new sandbox would
	// exceed ManagerOptions.MaxSandboxes.
	ErrFull = errors.New("the server runs its maximum number of sandboxes")
)

// FullError refuses a new sandbox while Max sandboxes live (or are being
// made or torn down); errors.Is(err, ErrFull) holds for it.
type FullError struct {
	Max int
}

func (e *FullError) Error() string {
	return fmt.Sprintf("%s (%d)", ErrFull, e.Max)
}

func (e *FullError) Is(target error) bool { return target == ErrFull }

// IDs end up in paths and hostnames, so they are kept to a safe alphabet.
var validID = regexp.MustCompile(`^[a-z0-9-]{1,40}$`)

// Reason says why a sandbox was destroyed.
type Reason int

const (
	ReasonIdle        Reason = iota + 1 // no activity for longer than IdleTimeout
	ReasonShellExited                   // the learner's shell ended (e.g. "exit")
	ReasonShutdown                      // the Manager was closed
	ReasonAdmin                         // Destroy was called explicitly
	ReasonLifetime                      // older than MaxLifetime
	ReasonReset                         // its learner asked for a fresh one
)

func (r Reason) String() string {
	switch r {
	case ReasonIdle:
		return "idle"
	case ReasonShellExited:
		return "shell exited"
	case ReasonShutdown:
		return "shutdown"
	case ReasonAdmin:
		return "admin"
	case ReasonLifetime:
		return "lifetime"
	case ReasonReset:
		return "reset"
	}
	return fmt.Sprintf("Reason(%d)", int(r))
}

// ManagerOptions configures a Manager.
type ManagerOptions struct {
	// DataDir holds sandboxes/<id>/workspace (see the package doc).
	DataDir string
	// IdleTimeout is how long a sandbox may go without Touch before it is
	// destroyed. Zero means DefaultIdleTimeout; negative disables reaping.
	IdleTimeout time.Duration
	// Hostname names a sandbox's host; nil means "lab-" + the first 12
	// characters of the id.
	Hostname func(id string) string
	// Env is passed to every sandbox (Spec.Env).
	Env []string
	// MaxSandboxes bounds the sandboxes that exist at once, counting those
	// being created and those being destroyed (both still hold a subnet
	// and a uid range); a creation beyond it fails with a *FullError.
	// Existing sandboxes are never affected. Zero or less: no maximum.
	// Warm sandboxes count too.
	MaxSandboxes int
	// Warm is how many sandboxes are kept made ahead of their learners
	// when the Provider is a Warmer (warm.go): a new learner's first page
	// gets one at once instead of waiting for a shell to start.
	Warm int
	// MaxLifetime ends a sandbox this long after it was made, busy or
	// not (ReasonLifetime); zero or less: never.
	MaxLifetime time.Duration
	// WarnBefore is how long before an idle or lifetime end the OnWarn
	// hooks hear of it; zero: DefaultWarnBefore (at most a third of
	// IdleTimeout).
	WarnBefore time.Duration
	// CreateTimeout bounds the creation Start runs in the background; zero:
	// DefaultCreateTimeout.
	CreateTimeout time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Manager keeps at most one sandbox per id, creating it on first use and
// destroying it when idle, when its shell exits, or on Close.
type Manager struct {
	p       Provider
	opts    ManagerOptions
	log     *slog.Logger
	stop    chan struct{}
	wg      sync.WaitGroup // reaper and Done watchers
	hooksMu sync.RWMutex
	hooks   []func(id string, r Reason)
	warns   []func(id string, w Warning)
	mu      sync.Mutex
	closed  bool
	entries map[string]*entry
	// held counts sandboxes from the moment an entry is made until their
	// Destroy has returned (or their creation failed): what MaxSandboxes
	// bounds. It is entries plus those being destroyed.
	held     int
	stopOnce sync.Once
	pool     pool // warm.go
}

// entry is a sandbox being created (ready open) or running. Whoever removes
// an entry from the map owns its destruction and the reason reported.
type entry struct {
	ready   chan struct{} // closed once sb or err is set
	sb      Sandbox
	err     error
	owner   string
	created time.Time
	last    atomic.Int64 // unix nanos of the last activity
	warned  atomic.Int64 // unix nanos of the end last warned of (lifecycle.go)
	// warm is the pool's sandbox this entry was given when it was made
	// (its place under MaxSandboxes passes to the entry); nil: none.
	warm *warm
}

// NewManager returns a Manager creating sandboxes with p. It starts the
// idle reaper; call Close to stop it.
func NewManager(p Provider, opts ManagerOptions) *Manager {
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.Hostname == nil {
		opts.Hostname = defaultHostname
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.CreateTimeout <= 0 {
		opts.CreateTimeout = DefaultCreateTimeout
	}
	if abs, err := filepath.Abs(opts.DataDir); err == nil && opts.DataDir != "" {
		opts.DataDir = abs
	}
	m := &Manager{
		p:       p,
		opts:    opts,
		log:     opts.Logger,
		stop:    make(chan struct{}),
		entries: make(map[string]*entry),
	}
	m.startPool()
	if opts.IdleTimeout > 0 || opts.MaxLifetime > 0 {
		m.wg.Add(1)
		go m.reap()
	}
	return m
}

func defaultHostname(id string) string {
	if len(id) > 12 {
		id = id[:12]
	}
	return "lab-" + id
}

// ValidID reports whether id is acceptable as a sandbox id.
func ValidID(id string) bool { return validID.MatchString(id) }

// WorkspaceDir is the host path of id's workspace.
func (m *Manager) WorkspaceDir(id string) string {
	return filepath.Join(m.opts.DataDir, "sandboxes", id, "workspace")
}

// OnDestroy registers f to be called whenever a sandbox is removed, before
// it is destroyed, so listeners can tell clients the reason before the
// terminal goes away. f runs synchronously on the destroying goroutine.
func (m *Manager) OnDestroy(f func(id string, r Reason)) {
	m.hooksMu.Lock()
	m.hooks = append(m.hooks, f)
	m.hooksMu.Unlock()
}

// GetOrCreate returns id's sandbox, creating it for owner if it does not
// exist. Concurrent calls for the same id create one sandbox. It counts as
// activity. An existing sandbox of another owner gives ErrNotOwner.
func (m *Manager) GetOrCreate(ctx context.Context, id, owner string) (Sandbox, error) {
	return m.GetOrCreateEnv(ctx, id, owner, nil)
}

// GetOrCreateEnv is GetOrCreate with env ("KEY=value") added to
// ManagerOptions.Env should the sandbox be created now, for what differs
// per owner (the web UI's LABD_USER). An existing sandbox keeps the
// environment it was created with.
func (m *Manager) GetOrCreateEnv(ctx context.Context, id, owner string, env []string) (Sandbox, error) {
	return m.GetOrCreateWith(ctx, id, owner, CreateOptions{Env: env})
}

// CreateOptions are what a sandbox created by GetOrCreateWith gets
// beyond ManagerOptions; an existing sandbox keeps what it was created
// with.
type CreateOptions struct {
	Env       []string  // added to ManagerOptions.Env ("KEY=value")
	Resources Resources // the lab's limits instead of the provider's defaults
	// Admit, if set, is asked once this call is to create the sandbox:
	// after MaxSandboxes let it in, before the provider runs; never when
	// the sandbox exists or another call is creating it. Its error is
	// returned as it is and nothing is created (the web layer's rate
	// limit per client, web/admission.go).
	Admit func() error
	// Seed, if set, fills a new workspace (a lab's starter files): it runs
	// once this call has made the sandbox with a workspace that did not
	// exist before, before anyone is handed the sandbox; never for a
	// learner's kept workspace. Its error is logged and the sandbox kept:
	// a learner without the starter files still has a shell.
	Seed func(ctx context.Context, sb Sandbox) error
}

// GetOrCreateWith is GetOrCreate with o applied should the sandbox be
// created now.
func (m *Manager) GetOrCreateWith(ctx context.Context, id, owner string, o CreateOptions) (Sandbox, error) {
	for {
		e, mine, err := m.begin(id, owner, o)
		if err != nil {
			return nil, err
		}
		if mine {
			if err := m.admit(id, e, o); err != nil {
				return nil, err
			}
			return m.create(ctx, id, e, o)
		}
		select {
		case <-e.ready:
		case <-ctx.Done():
			return nil, fmt.Errorf("get sandbox %s: %w", id, ctx.Err())
		}
		if e.err != nil {
			// The creator failed and removed the entry; try ourselves.
			continue
		}
		if e.owner != owner {
			return nil, fmt.Errorf("get sandbox %s: %w", id, ErrNotOwner)
		}
		e.last.Store(time.Now().UnixNano())
		return e.sb, nil
	}
}

// DefaultCreateTimeout bounds a creation Start runs in the background.
const DefaultCreateTimeout = 3 * time.Minute

// Start is GetOrCreateWith that does not wait for the sandbox: it returns
// once the sandbox runs, is being made, or has been admitted and is being
// made in the background, so a page can answer before the shell is up.
// Refusals (a *FullError, Admit's error, ErrNotOwner) come at once; a
// failure of the creation itself is Wait's. ctx's values reach the
// provider, its cancellation does not (CreateTimeout bounds it).
func (m *Manager) Start(ctx context.Context, id, owner string, o CreateOptions) error {
	e, mine, err := m.begin(id, owner, o)
	if err != nil {
		return err
	}
	if !mine {
		if e.owner != owner {
			return fmt.Errorf("get sandbox %s: %w", id, ErrNotOwner)
		}
		e.last.Store(time.Now().UnixNano())
		return nil
	}
	if err := m.admit(id, e, o); err != nil {
		return err
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.opts.CreateTimeout)
		defer cancel()
		if _, err := m.create(cctx, id, e, o); err != nil {
			m.log.Warn("create sandbox", "id", id, "err", err)
		}
	}()
	return nil
}

// Wait returns id's sandbox and owner once it is made (at once if it
// runs), or why it could not be: ErrNotFound when there is none and none
// is being made. It counts as activity.
func (m *Manager) Wait(ctx context.Context, id string) (Sandbox, string, error) {
	m.mu.Lock()
	e, ok := m.entries[id]
	m.mu.Unlock()
	if !ok {
		return nil, "", fmt.Errorf("sandbox %s: %w", id, ErrNotFound)
	}
	select {
	case <-e.ready:
	case <-ctx.Done():
		return nil, "", fmt.Errorf("wait for sandbox %s: %w", id, ctx.Err())
	}
	if e.err != nil {
		return nil, "", e.err
	}
	e.last.Store(time.Now().UnixNano())
	return e.sb, e.owner, nil
}

// begin finds id's entry, or makes one that the caller then owns (mine)
// and must create: a new entry takes a warm sandbox when the learner has
// no workspace yet, else a place under MaxSandboxes.
func (m *Manager) begin(id, owner string, o CreateOptions) (e *entry, mine bool, err error) {
	if !ValidID(id) {
		return nil, false, fmt.Errorf("get sandbox %q: %w", id, ErrInvalidID)
	}
	// A learner's first sandbox of a lab may be a warm one (made with the
	// default limits); a workspace on disk must be the shell's /root from
	// the start instead.
	_, statErr := os.Lstat(filepath.Join(m.opts.DataDir, "sandboxes", id))
	fresh := errors.Is(statErr, os.ErrNotExist) && o.Resources == (Resources{})
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, false, ErrClosed
	}
	if e, ok := m.entries[id]; ok {
		return e, false, nil
	}
	e = &entry{ready: make(chan struct{}), owner: owner, created: time.Now()}
	if fresh {
		e.warm = m.pool.take()
	}
	if e.warm == nil {
		if max := m.opts.MaxSandboxes; max > 0 && m.held >= max {
			return nil, false, fmt.Errorf("create sandbox %s: %w", id, &FullError{Max: max})
		}
		m.held++
	} else {
		m.pool.kick()
	}
	e.last.Store(time.Now().UnixNano())
	m.entries[id] = e
	return e, true, nil
}

// admit asks o.Admit about the entry the caller owns; on a refusal the
// entry goes (its warm sandbox back to the pool).
func (m *Manager) admit(id string, e *entry, o CreateOptions) error {
	if o.Admit == nil {
		return nil
	}
	err := o.Admit()
	if err == nil {
		return nil
	}
	m.mu.Lock()
	delete(m.entries, id)
	w := e.warm
	e.warm = nil
	if w != nil {
		m.pool.put(w)
	} else {
		m.held--
	}
	m.mu.Unlock()
	e.err = err
	close(e.ready)
	return err
}

func (m *Manager) create(ctx context.Context, id string, e *entry, o CreateOptions) (Sandbox, error) {
	sb, fresh, err := m.provide(ctx, id, e, o)
	if err == nil && fresh && o.Seed != nil {
		if serr := o.Seed(ctx, sb); serr != nil {
			m.log.Warn("seed new workspace", "id", id, "err", serr)
		}
	}
	m.mu.Lock()
	if err == nil && m.closed {
		err = ErrClosed
	}
	if err != nil {
		delete(m.entries, id)
		m.mu.Unlock()
		if sb != nil {
			_ = sb.Destroy(context.WithoutCancel(ctx))
		}
		m.release()
		e.err = err
		close(e.ready)
		return nil, err
	}
	e.sb = sb
	m.wg.Add(1)
	m.mu.Unlock()
	close(e.ready)
	go m.watch(id, e)
	m.log.Info("sandbox created", "id", id, "owner", e.owner, "hostname", sb.Hostname())
	return sb, nil
}

// provide makes the sandbox; fresh says its workspace is new (a warm
// sandbox is only ever given to an id without one).
func (m *Manager) provide(ctx context.Context, id string, e *entry, o CreateOptions) (_ Sandbox, fresh bool, _ error) {
	if m.opts.DataDir == "" {
		return nil, false, fmt.Errorf("create sandbox %s: no data directory configured", id)
	}
	env := append(append([]string{}, m.opts.Env...), o.Env...)
	if w := e.warm; w != nil {
		e.warm = nil
		sb, err := m.adopt(ctx, id, w, Spec{Env: env, Resources: o.Resources})
		if err == nil {
			return sb, true, nil
		}
		// The learner still gets a sandbox, made the slow way.
		m.log.Warn("adopt warm sandbox", "id", id, "err", err)
		_ = w.discard(context.WithoutCancel(ctx))
	}
	// A sandbox that was warm once keeps its own name (instance).
	name := m.instance(id)
	ws := m.WorkspaceDir(name)
	spec := Spec{
		ID:        name,
		Hostname:  m.opts.Hostname(name),
		Workspace: ws,
		Env:       env,
		Resources: o.Resources,
	}
	_, statErr := os.Lstat(ws)
	fresh = errors.Is(statErr, os.ErrNotExist)
	// 0700 all the way: the workspace may hold the learner's secrets.
	if err := os.MkdirAll(ws, 0o700); err != nil {
		return nil, false, fmt.Errorf("create sandbox %s: %w", id, err)
	}
	sb, err := m.p.Create(ctx, spec)
	if err != nil {
		return nil, false, fmt.Errorf("create sandbox %s: %w", id, err)
	}
	return sb, fresh, nil
}

// watch removes e once its shell ends on its own, so the next GetOrCreate
// starts a fresh sandbox.
func (m *Manager) watch(id string, e *entry) {
	defer m.wg.Done()
	<-e.sb.Done()
	if m.remove(id, e) {
		m.finish(context.Background(), id, e, ReasonShellExited)
	}
}

// remove deletes id from the map if it still maps to e, and reports
// whether it did (and so owns the destruction).
func (m *Manager) remove(id string, e *entry) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.entries[id]; ok && cur == e {
		delete(m.entries, id)
		return true
	}
	return false
}

func (m *Manager) finish(ctx context.Context, id string, e *entry, r Reason) error {
	m.hooksMu.RLock()
	hooks := append([]func(string, Reason){}, m.hooks...)
	m.hooksMu.RUnlock()
	for _, h := range hooks {
		h(id, r)
	}
	err := e.sb.Destroy(ctx)
	m.release()
	m.log.Info("sandbox destroyed", "id", id, "reason", r.String(), "err", err)
	if err != nil {
		return fmt.Errorf("destroy sandbox %s: %w", id, err)
	}
	return nil
}

// release ends what held counted for one sandbox.
func (m *Manager) release() {
	m.mu.Lock()
	m.held--
	m.mu.Unlock()
}

// Count returns how many sandboxes count against MaxSandboxes now (live,
// being created or being destroyed) and the maximum (0: none).
func (m *Manager) Count() (held, limit int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.held, max(m.opts.MaxSandboxes, 0)
}

// Get returns id's sandbox and owner if it exists and is ready. It does not
// count as activity.
func (m *Manager) Get(id string) (sb Sandbox, owner string, ok bool) {
	m.mu.Lock()
	e, ok := m.entries[id]
	m.mu.Unlock()
	if !ok {
		return nil, "", false
	}
	select {
	case <-e.ready:
	default:
		return nil, "", false
	}
	if e.err != nil {
		return nil, "", false
	}
	return e.sb, e.owner, true
}

// Touch records activity on id, postponing its idle reaping.
func (m *Manager) Touch(id string) {
	m.mu.Lock()
	e, ok := m.entries[id]
	m.mu.Unlock()
	if ok {
		e.last.Store(time.Now().UnixNano())
	}
}

// Destroy removes and destroys id's sandbox, telling the OnDestroy hooks r.
// A missing (or still being created) sandbox is not an error.
func (m *Manager) Destroy(ctx context.Context, id string, r Reason) error {
	m.mu.Lock()
	e, ok := m.entries[id]
	if ok && !isReady(e) {
		ok = false
	}
	if ok {
		delete(m.entries, id)
	}
	m.mu.Unlock()
	if !ok {
		return nil
	}
	return m.finish(ctx, id, e, r)
}

func isReady(e *entry) bool {
	select {
	case <-e.ready:
		return e.err == nil
	default:
		return false
	}
}

// Close destroys every sandbox (ReasonShutdown), stops the reaper and
// waits for the Manager's goroutines. Later GetOrCreate calls fail with
// ErrClosed.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	m.closed = true
	var all []*entry
	var ids []string
	for id, e := range m.entries {
		if isReady(e) {
			all = append(all, e)
			ids = append(ids, id)
			delete(m.entries, id)
		}
	}
	m.mu.Unlock()
	m.stopOnce.Do(func() { close(m.stop) })
	poolErr := m.drain(ctx)

	errs := make([]error, len(all))
	var wg sync.WaitGroup
	for i, e := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = m.finish(ctx, ids[i], e, ReasonShutdown)
		}()
	}
	wg.Wait()
	// Sandboxes still being created are destroyed by their creators once
	// they see closed; the watchers end with their sandboxes.
	m.wg.Wait()
	return errors.Join(append(errs, poolErr)...)
}
