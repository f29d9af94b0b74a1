package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// A sandbox ends when its learner leaves it idle for IdleTimeout, or
// MaxLifetime after it was made; its learner hears of either WarnBefore
// ahead (OnWarn), and a Touch ("I'm still here") puts the idle end off.

// DefaultWarnBefore is ManagerOptions.WarnBefore's default.
const DefaultWarnBefore = 5 * time.Minute

// Warning is a coming end of a sandbox.
type Warning struct {
	Reason Reason    // ReasonIdle or ReasonLifetime
	At     time.Time // when it ends unless touched (idle)
}

// OnWarn registers f to be called, from the reaper's goroutine, when a
// sandbox comes within WarnBefore of its end, once per end: a Touch moves
// the idle end, which is then warned of anew.
func (m *Manager) OnWarn(f func(id string, w Warning)) {
	m.hooksMu.Lock()
	m.warns = append(m.warns, f)
	m.hooksMu.Unlock()
}

// Info is what Manager.List and Manager.Info tell of a sandbox.
type Info struct {
	ID         string
	Owner      string
	Ready      bool      // false while it is being made
	Created    time.Time // when its creation began
	LastActive time.Time
	// Ends is its next end (idle or lifetime) unless touched; zero when
	// neither applies.
	Ends    time.Time
	EndsFor Reason
	Sandbox Sandbox // nil while not Ready
}

// List returns every sandbox made or being made, by id.
func (m *Manager) List() []Info {
	m.mu.Lock()
	out := make([]Info, 0, len(m.entries))
	for id, e := range m.entries {
		out = append(out, m.infoLocked(id, e))
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Info returns sandbox id's Info.
func (m *Manager) Info(id string) (Info, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[id]
	if !ok {
		return Info{}, false
	}
	return m.infoLocked(id, e), true
}

func (m *Manager) infoLocked(id string, e *entry) Info {
	in := Info{ID: id, Owner: e.owner, Ready: isReady(e), Created: e.created,
		LastActive: time.Unix(0, e.last.Load())}
	if in.Ready {
		in.Sandbox = e.sb
	}
	in.Ends, in.EndsFor = m.end(e)
	return in
}

// end is e's next end and why; zero without idle timeout and lifetime.
func (m *Manager) end(e *entry) (time.Time, Reason) {
	var at time.Time
	var why Reason
	if m.opts.IdleTimeout > 0 {
		at, why = time.Unix(0, e.last.Load()).Add(m.opts.IdleTimeout), ReasonIdle
	}
	if m.opts.MaxLifetime > 0 {
		if l := e.created.Add(m.opts.MaxLifetime); at.IsZero() || l.Before(at) {
			at, why = l, ReasonLifetime
		}
	}
	return at, why
}

func (m *Manager) warnBefore() time.Duration {
	if w := m.opts.WarnBefore; w > 0 {
		return w
	}
	w := DefaultWarnBefore
	if t := m.opts.IdleTimeout; t > 0 && w > t/3 {
		w = t / 3
	}
	return w
}

// reap ends sandboxes past their end and warns of coming ones. It looks
// several times per idle timeout and per warning period, so a sandbox
// overstays by a fraction of them.
func (m *Manager) reap() {
	defer m.wg.Done()
	every := time.Minute
	for _, d := range []time.Duration{m.opts.IdleTimeout / 4, m.warnBefore() / 4, m.opts.MaxLifetime / 4} {
		if d > 0 {
			every = min(every, d)
		}
	}
	t := time.NewTicker(max(every, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case now := <-t.C:
			due, warn := m.due(now)
			for id, why := range due {
				if err := m.destroyIfDue(id, why, now); err != nil {
					m.log.Warn("end sandbox", "id", id, "reason", why.String(), "err", err)
				}
			}
			m.hooksMu.RLock()
			hooks := append([]func(string, Warning){}, m.warns...)
			m.hooksMu.RUnlock()
			for id, w := range warn {
				for _, h := range hooks {
					h(id, w)
				}
			}
		}
	}
}

// due returns the sandboxes past their end, and those newly within
// WarnBefore of it.
func (m *Manager) due(now time.Time) (map[string]Reason, map[string]Warning) {
	m.mu.Lock()
	defer m.mu.Unlock()
	due, warn := map[string]Reason{}, map[string]Warning{}
	for id, e := range m.entries {
		if !isReady(e) {
			continue
		}
		at, why := m.end(e)
		switch {
		case at.IsZero():
		case !now.Before(at):
			due[id] = why
		case at.Sub(now) <= m.warnBefore() && e.warned.Load() != at.UnixNano():
			e.warned.Store(at.UnixNano())
			warn[id] = Warning{Reason: why, At: at}
		}
	}
	return due, warn
}

// destroyIfDue re-checks the end under the lock, so a Touch between the
// scan and the removal saves an idle sandbox.
func (m *Manager) destroyIfDue(id string, why Reason, now time.Time) error {
	m.mu.Lock()
	e, ok := m.entries[id]
	if !ok {
		m.mu.Unlock()
		return nil
	}
	if at, w := m.end(e); at.IsZero() || now.Before(at) || w != why {
		m.mu.Unlock()
		return nil
	}
	delete(m.entries, id)
	m.mu.Unlock()
	return m.finish(context.Background(), id, e, why)
}

// Resetter is a Provider that can clear what an ended sandbox keeps of
// its engine (images, containers, volumes, records), and with it, unless
// keepWorkspace, the sandbox's directory. name is the sandbox's own name
// (Manager.Instance).
type Resetter interface {
	ResetFiles(ctx context.Context, name string, keepWorkspace bool) error
}

// Reset is the learner's "Reset my sandbox": it ends id's sandbox
// (ReasonReset) and clears its engine's state, and its workspace unless
// keepWorkspace; the next GetOrCreate makes a fresh sandbox (a warm one,
// when the workspace went). ErrBusy while it is being made.
func (m *Manager) Reset(ctx context.Context, id string, keepWorkspace bool) error {
	if !ValidID(id) {
		return fmt.Errorf("reset sandbox %q: %w", id, ErrInvalidID)
	}
	if in, ok := m.Info(id); ok && !in.Ready {
		return fmt.Errorf("reset sandbox %s: it is being made, try again in a moment: %w", id, ErrBusy)
	}
	if err := m.Destroy(ctx, id, ReasonReset); err != nil {
		return err
	}
	name := m.instance(id)
	if r, ok := m.p.(Resetter); ok {
		if err := r.ResetFiles(ctx, name, keepWorkspace); err != nil {
			return fmt.Errorf("reset sandbox %s: %w", id, err)
		}
	}
	if keepWorkspace {
		return nil
	}
	sandboxes := filepath.Join(m.opts.DataDir, "sandboxes")
	var errs []error
	if name != id {
		if err := os.Remove(filepath.Join(sandboxes, id)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	errs = append(errs, os.RemoveAll(filepath.Join(sandboxes, name)))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("reset sandbox %s: %w", id, err)
	}
	return nil
}
