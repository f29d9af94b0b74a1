package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// A class arrives at once: fifty first page loads in a second would each
// wait for a shell to start, all on the same two cores. The Manager keeps
// ManagerOptions.Warm sandboxes made for nobody yet (shell started, network
// made, sockets listening) and gives one to a learner whose lab has no
// workspace yet; the provider then only binds it to the learner (Adopt).
// A learner coming back to a workspace gets a sandbox made for it, since
// the workspace must be the shell's /root from the start.

// Warmer is a Provider that can make sandboxes ahead of their learners.
type Warmer interface {
	Provider
	// Prepare makes a sandbox for nobody yet: s.ID names it (never a
	// learner's id), s.Workspace is an empty directory that becomes its
	// learner's workspace.
	Prepare(ctx context.Context, s Spec) (Prepared, error)
}

// Prepared is a sandbox made by Warmer.Prepare and not yet given out.
type Prepared interface {
	// Adopt makes it s's sandbox: s.Workspace does not exist yet (its
	// parent does), and Adopt moves the prepared workspace there. It is
	// called at most once; on an error the Manager destroys it.
	Adopt(ctx context.Context, s Spec) (Sandbox, error)
	// Done is closed when the prepared sandbox has ended.
	Done() <-chan struct{}
	Destroy(ctx context.Context) error
}

// warmPrefix starts the name of every warm sandbox: "sb-" as the web's
// ids, then a letter no hex id has.
const warmPrefix = "sb-w"

// prepareTimeout bounds one Prepare.
const prepareTimeout = 2 * time.Minute

// pool is the Manager's warm sandboxes. Its fields are guarded by the
// Manager's mu; every item holds a place under MaxSandboxes (held).
type pool struct {
	w     Warmer // nil: no pool
	items []*warm
	kickc chan struct{}
}

// warm is a prepared sandbox and its directory (the workspace's parent),
// removed with it unless Adopt moved it.
type warm struct {
	Prepared
	dir string
}

// discard destroys a warm sandbox nobody got, and its directory.
func (w *warm) discard(ctx context.Context) error {
	err := w.Destroy(ctx)
	if rerr := os.RemoveAll(w.dir); rerr != nil {
		err = errors.Join(err, rerr)
	}
	return err
}

// take removes and returns a warm sandbox, or nil.
func (p *pool) take() *warm {
	if len(p.items) == 0 {
		return nil
	}
	w := p.items[0]
	p.items = p.items[1:]
	return w
}

// put returns a warm sandbox that was taken and not used.
func (p *pool) put(w *warm) { p.items = append(p.items, w) }

// remove drops w if it is still in the pool, and reports whether it was.
func (p *pool) remove(w *warm) bool {
	for i, it := range p.items {
		if it == w {
			p.items = append(p.items[:i], p.items[i+1:]...)
			return true
		}
	}
	return false
}

// kick wakes the filler.
func (p *pool) kick() {
	if p.kickc == nil {
		return
	}
	select {
	case p.kickc <- struct{}{}:
	default:
	}
}

// startPool starts the filler when the provider can warm sandboxes.
func (m *Manager) startPool() {
	if m.opts.DataDir == "" {
		return
	}
	// Before the check for a pool: an earlier run with one leaves its
	// warm sandboxes' directories (disk images of their quota included)
	// to a run without one too.
	m.removeOldWarm()
	w, ok := m.p.(Warmer)
	if !ok || m.opts.Warm <= 0 {
		return
	}
	m.pool.w = w
	m.pool.kickc = make(chan struct{}, 1)
	m.wg.Add(1)
	go m.fill()
	m.pool.kick()
}

// removeOldWarm removes the directories of an earlier run's warm
// sandboxes that were never given out.
func (m *Manager) removeOldWarm() {
	// Warm sandboxes of an earlier run that nobody got hold nothing of
	// anyone's; those given out are a learner's (linked to).
	dir := filepath.Join(m.opts.DataDir, "sandboxes")
	linked := map[string]bool{}
	if des, err := os.ReadDir(dir); err == nil {
		for _, de := range des {
			if de.Type()&os.ModeSymlink != 0 {
				if t, err := os.Readlink(filepath.Join(dir, de.Name())); err == nil {
					linked[t] = true
				}
			}
		}
	}
	old, _ := filepath.Glob(filepath.Join(dir, warmPrefix+"*"))
	for _, d := range old {
		if linked[filepath.Base(d)] {
			continue
		}
		if err := os.RemoveAll(d); err != nil {
			m.log.Warn("remove an earlier run's warm sandbox", "dir", d, "err", err)
			continue
		}
		// What the provider keeps of it beside the directory (the engine:
		// its uid range, its records), which a killed labd never freed.
		if f, ok := m.p.(Forgetter); ok {
			if err := f.Forget(filepath.Base(d)); err != nil {
				m.log.Warn("forget an earlier run's warm sandbox", "name", filepath.Base(d), "err", err)
			}
		}
	}
}

// Forgetter is a Provider that keeps something of a sandbox beyond its
// directory (DATA/sandboxes/<name>) and can let it go once the directory
// is gone for good.
type Forgetter interface {
	Forget(name string) error
}

// Warm returns how many warm sandboxes are ready now.
func (m *Manager) Warm() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.pool.items)
}

// fill keeps the pool at ManagerOptions.Warm, one sandbox at a time so
// that learners' own work keeps most of the machine, and never beyond
// MaxSandboxes.
func (m *Manager) fill() {
	defer m.wg.Done()
	backoff := time.Second
	for {
		select {
		case <-m.stop:
			return
		case <-m.pool.kickc:
		}
		for {
			m.mu.Lock()
			need := !m.closed && len(m.pool.items) < m.opts.Warm &&
				(m.opts.MaxSandboxes <= 0 || m.held < m.opts.MaxSandboxes)
			if need {
				m.held++
			}
			m.mu.Unlock()
			if !need {
				break
			}
			w, err := m.prepare()
			m.mu.Lock()
			if err == nil && !m.closed {
				m.pool.items = append(m.pool.items, w)
				m.wg.Add(1)
				m.mu.Unlock()
				go m.watchWarm(w)
				backoff = time.Second
				continue
			}
			m.held--
			m.mu.Unlock()
			if w != nil {
				_ = w.discard(context.Background())
			}
			if err == nil {
				return // closed
			}
			if errors.Is(err, ErrShellNotReady) {
				m.log.Debug("warm sandbox: shell image not ready yet", "err", err)
			} else {
				m.log.Warn("warm sandbox", "err", err, "retry in", backoff)
			}
			select {
			case <-m.stop:
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, time.Minute)
		}
	}
}

// prepare makes one warm sandbox under a fresh name.
func (m *Manager) prepare() (*warm, error) {
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := warmPrefix + hex.EncodeToString(b[:])
	ws := m.WorkspaceDir(name)
	if err := os.MkdirAll(ws, 0o700); err != nil {
		return nil, fmt.Errorf("warm sandbox %s: %w", name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), prepareTimeout)
	defer cancel()
	p, err := m.pool.w.Prepare(ctx, Spec{
		ID:        name,
		Hostname:  m.opts.Hostname(name),
		Workspace: ws,
		Env:       append([]string{}, m.opts.Env...),
	})
	if err != nil {
		_ = os.RemoveAll(filepath.Dir(ws))
		return nil, fmt.Errorf("warm sandbox %s: %w", name, err)
	}
	return &warm{Prepared: p, dir: filepath.Dir(ws)}, nil
}

// watchWarm drops a warm sandbox that ends while in the pool, so the
// filler replaces it.
func (m *Manager) watchWarm(w *warm) {
	defer m.wg.Done()
	select {
	case <-m.stop:
		return
	case <-w.Done():
	}
	m.mu.Lock()
	gone := m.pool.remove(w)
	if gone {
		m.held--
	}
	m.mu.Unlock()
	if gone {
		m.log.Warn("a warm sandbox ended before it was used", "dir", w.dir)
		_ = w.discard(context.Background())
		m.pool.kick()
	}
}

// instance is the name under which sandbox id's files live: id itself,
// or the warm sandbox it was once given, which DATA/sandboxes/<id> links
// to (adopt).
func (m *Manager) instance(id string) string {
	t, err := os.Readlink(filepath.Join(m.opts.DataDir, "sandboxes", id))
	if err != nil || t != filepath.Base(t) || !ValidID(t) || !strings.HasPrefix(t, warmPrefix) {
		return id
	}
	return t
}

// adopt gives warm sandbox w to id: DATA/sandboxes/<id> becomes a link to
// the warm sandbox's directory, made before the sandbox is handed over so
// that a labd killed at any moment after finds the learner's files by
// their id. spec carries the learner's environment.
func (m *Manager) adopt(ctx context.Context, id string, w *warm, spec Spec) (Sandbox, error) {
	name := filepath.Base(w.dir)
	link := filepath.Join(m.opts.DataDir, "sandboxes", id)
	if err := os.Symlink(name, link); err != nil {
		return nil, fmt.Errorf("give warm sandbox %s to %s: %w", name, id, err)
	}
	spec.ID, spec.Hostname, spec.Workspace = name, m.opts.Hostname(name), m.WorkspaceDir(name)
	sb, err := w.Adopt(ctx, spec)
	if err != nil {
		_ = os.Remove(link)
		return nil, fmt.Errorf("give warm sandbox %s to %s: %w", name, id, err)
	}
	m.log.Info("warm sandbox given out", "id", id, "warm", name)
	return sb, nil
}

// drain destroys the warm sandboxes (Close).
func (m *Manager) drain(ctx context.Context) error {
	m.mu.Lock()
	items := m.pool.items
	m.pool.items = nil
	m.held -= len(items)
	m.mu.Unlock()
	errs := make([]error, len(items))
	var wg sync.WaitGroup
	for i, w := range items {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = w.discard(ctx)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
