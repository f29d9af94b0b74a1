package ctr

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
)

func TestStoreGet(t *testing.T) {
	s := NewStore(Hooks{})
	a := New(t.TempDir(), Meta{ID: "abc123" + strings.Repeat("0", 58), Name: "/web", Created: time.Now()}, &container.HostConfig{})
	b := New(t.TempDir(), Meta{ID: "abd456" + strings.Repeat("0", 58), Name: "/db", Created: time.Now()}, &container.HostConfig{})
	s.Add(a)
	s.Add(b)
	for _, tc := range []struct {
		ref     string
		want    *Container
		wantErr string
	}{
		{ref: a.Meta.ID, want: a},
		{ref: "web", want: a},
		{ref: "/db", want: b},
		{ref: "abc", want: a},
		{ref: "ab", wantErr: "multiple IDs found with provided prefix: ab"},
		{ref: "nope", wantErr: "No such container: nope"},
		{ref: "", wantErr: "No such container: "},
	} {
		got, err := s.Get(tc.ref)
		if tc.wantErr != "" {
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("Get(%q) error %v, want %q", tc.ref, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Get(%q) = %v, %v", tc.ref, got, err)
		}
	}
	var nf NoSuchContainer
	if _, err := s.Get("nope"); !errors.As(err, &nf) {
		t.Errorf("missing container's error %T is not NoSuchContainer", err)
	}
}

func TestStoreNames(t *testing.T) {
	s := NewStore(Hooks{})
	n, err := s.ReserveName("web", "id1")
	if err != nil || n != "/web" {
		t.Fatalf("ReserveName(web) = %q, %v", n, err)
	}
	if _, err := s.ReserveName("/web", "id2"); err == nil || !strings.Contains(err.Error(), `The container name "/web" is already in use by container "id1"`) {
		t.Errorf("second /web: %v", err)
	}
	if _, err := s.ReserveName("web", "id1"); err != nil {
		t.Errorf("the same id reserving its name again: %v", err)
	}
	s.ReleaseName("/web", "id2") // not its name: kept
	if _, err := s.ReserveName("web", "id2"); err == nil {
		t.Error("a release by another id freed the name")
	}
	s.ReleaseName("/web", "id1")
	if _, err := s.ReserveName("web", "id2"); err != nil {
		t.Errorf("after release: %v", err)
	}
	seen := map[string]bool{}
	for i := 0; i < 20; i++ {
		id := NewID()
		g, err := s.ReserveName("", id)
		if err != nil || !strings.HasPrefix(g, "/") || seen[g] {
			t.Fatalf("generated name %q (%v), seen before: %v", g, err, seen[g])
		}
		seen[g] = true
	}
}

func TestNewIDNotANumber(t *testing.T) {
	for i := 0; i < 200; i++ {
		id := NewID()
		if len(id) != 64 || !strings.ContainsAny(id[:12], "abcdef") {
			t.Fatalf("NewID() = %q", id)
		}
	}
}

// A container that ran when labd died comes back exited with 255, as from
// dockerd after a crash; other views' containers and unfinished creates
// are not loaded.
func TestStoreLoad(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, m Meta) {
		c := New(filepath.Join(dir, name), m, &container.HostConfig{AutoRemove: true})
		if err := os.MkdirAll(c.Dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := c.SaveLocked(); err != nil {
			t.Fatal(err)
		}
	}
	write("a", Meta{ID: "a", Name: "/a", View: "v", State: State{Running: true, Pid: 42, StartedAt: time.Now()}})
	write("b", Meta{ID: "b", Name: "/b", View: "other"})
	if err := os.MkdirAll(filepath.Join(dir, "c"), 0o700); err != nil {
		t.Fatal(err)
	}
	s := NewStore(Hooks{})
	if err := s.Load(dir, "v"); err != nil {
		t.Fatal(err)
	}
	all := s.All()
	if len(all) != 1 || all[0].Meta.ID != "a" {
		t.Fatalf("loaded %d containers, want only a", len(all))
	}
	st := all[0].Meta.State
	if st.Running || st.Pid != 0 || st.ExitCode != 255 || st.FinishedAt.IsZero() || st.Status() != "exited" {
		t.Errorf("state after a crash: %+v", st)
	}
	if !all[0].HostConfig.AutoRemove {
		t.Error("host config not loaded")
	}
	again := NewStore(Hooks{})
	if err := again.Load(dir, "v"); err != nil || again.All()[0].Meta.State.ExitCode != 255 {
		t.Errorf("the recorded exit was not saved: %v", err)
	}
	if err := NewStore(Hooks{}).Load(filepath.Join(dir, "missing"), "v"); err != nil {
		t.Errorf("a missing directory: %v", err)
	}
}

func TestProcessEnv(t *testing.T) {
	const path = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, tc := range []struct {
		env  []string
		tty  bool
		want []string
	}{
		{env: nil, want: []string{path, "HOSTNAME=h"}},
		{env: []string{"A=1"}, tty: true, want: []string{path, "HOSTNAME=h", "A=1", "TERM=xterm"}},
		{env: []string{"PATH=/x", "HOSTNAME=mine", "TERM=vt100"}, tty: true, want: []string{"PATH=/x", "HOSTNAME=mine", "TERM=vt100"}},
	} {
		in := append([]string(nil), tc.env...)
		if got := ProcessEnv(tc.env, "h", tc.tty); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ProcessEnv(%q, tty=%v) = %q, want %q", tc.env, tc.tty, got, tc.want)
		}
		if !reflect.DeepEqual(in, tc.env) {
			t.Errorf("ProcessEnv changed its argument: %q", tc.env)
		}
	}
}

func TestStateStatus(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		st   State
		want string
	}{
		{State{}, "created"},
		{State{Running: true, StartedAt: now}, "running"},
		{State{Running: true, Restarting: true}, "restarting"},
		{State{Removing: true, StartedAt: now}, "removing"},
		{State{Dead: true, StartedAt: now}, "dead"},
		{State{StartedAt: now, FinishedAt: now}, "exited"},
	} {
		if got := tc.st.Status(); got != tc.want {
			t.Errorf("%+v: Status() = %q, want %q", tc.st, got, tc.want)
		}
	}
}
