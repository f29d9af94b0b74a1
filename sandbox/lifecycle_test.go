package sandbox_test

import (
	"context"
	"testing"
	"time"

	"github.com/labd/labd/internal/testenv"
	"github.com/labd/labd/sandbox"
	"github.com/labd/labd/sandbox/nsbox"
)

type warned struct {
	id string
	w  sandbox.Warning
}

func lifecycleManager(t *testing.T, opts sandbox.ManagerOptions) (*sandbox.Manager, chan warned, chan event) {
	t.Helper()
	testenv.Root(t, "namespaces")
	opts.DataDir, opts.Logger = t.TempDir(), quiet
	m := sandbox.NewManager(nsbox.New(nsbox.Options{}), opts)
	warns, ends := make(chan warned, 16), make(chan event, 16)
	m.OnWarn(func(id string, w sandbox.Warning) { warns <- warned{id, w} })
	m.OnDestroy(func(id string, r sandbox.Reason) { ends <- event{id, r} })
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	return m, warns, ends
}

// An idle sandbox is warned of once before it is reaped; a Touch after
// the warning puts the end off and is warned of again; the warning names
// the end and its reason.
func TestIdleWarning(t *testing.T) {
	const idle, warnBefore = 1200 * time.Millisecond, 600 * time.Millisecond
	m, warns, ends := lifecycleManager(t, sandbox.ManagerOptions{IdleTimeout: idle, WarnBefore: warnBefore})
	start := time.Now()
	if _, err := m.GetOrCreate(ctx(t), "a", "o"); err != nil {
		t.Fatal(err)
	}
	w := <-warns
	if w.id != "a" || w.w.Reason != sandbox.ReasonIdle || w.w.At.Before(start.Add(idle)) || w.w.At.After(time.Now().Add(warnBefore)) {
		t.Fatalf("warning %+v, want idle for a, ending within %v", w, warnBefore)
	}
	m.Touch("a") // "I'm still here"
	in, ok := m.Info("a")
	if !ok || in.EndsFor != sandbox.ReasonIdle || !in.Ends.After(w.w.At) {
		t.Errorf("after a touch: %+v, want the idle end put off past %v", in, w.w.At)
	}
	w2 := <-warns
	if !w2.w.At.After(w.w.At) {
		t.Errorf("second warning %+v, want a later end than %v", w2, w.w.At)
	}
	if e := nextEvent(t, ends); e.id != "a" || e.reason != sandbox.ReasonIdle {
		t.Errorf("end %+v, want a idle", e)
	}
	select {
	case w := <-warns:
		t.Errorf("warned again after the end: %+v", w)
	default:
	}
}

// MaxLifetime ends a sandbox however busy it is, after a warning; List
// and Info tell its end.
func TestMaxLifetime(t *testing.T) {
	const life = 1500 * time.Millisecond
	m, warns, ends := lifecycleManager(t, sandbox.ManagerOptions{IdleTimeout: time.Hour, MaxLifetime: life, WarnBefore: 700 * time.Millisecond})
	if _, err := m.GetOrCreate(ctx(t), "busy", "o"); err != nil {
		t.Fatal(err)
	}
	list := m.List()
	if len(list) != 1 || list[0].ID != "busy" || list[0].Owner != "o" || !list[0].Ready || list[0].EndsFor != sandbox.ReasonLifetime ||
		list[0].Ends.Sub(list[0].Created) != life || list[0].Sandbox == nil {
		t.Fatalf("List() = %+v, want busy ending at its lifetime", list)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				m.Touch("busy")
			}
		}
	}()
	if w := <-warns; w.id != "busy" || w.w.Reason != sandbox.ReasonLifetime {
		t.Errorf("warning %+v, want busy's lifetime", w)
	}
	if e := nextEvent(t, ends); e.id != "busy" || e.reason != sandbox.ReasonLifetime {
		t.Errorf("end %+v, want busy lifetime", e)
	}
	if len(m.List()) != 0 {
		t.Errorf("List() after the end: %+v", m.List())
	}
}
