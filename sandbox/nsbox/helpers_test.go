package nsbox

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labd/labd/internal/testenv"
	"github.com/labd/labd/sandbox"
)

func TestMain(m *testing.M) {
	Reexec()
	os.Exit(m.Run())
}

// wait is how long tests wait for anything; generous for loaded machines.
const wait = 20 * time.Second

func requireRoot(t testing.TB) {
	t.Helper()
	testenv.Root(t, "namespaces")
}

func newBox(t testing.TB, hostname string) (*Box, *screen) {
	t.Helper()
	requireRoot(t)
	ws := filepath.Join(t.TempDir(), "workspace")
	if err := os.Mkdir(ws, 0o700); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	sb, err := New(Options{}).Create(ctx, sandbox.Spec{ID: "t", Hostname: hostname, Workspace: ws})
	if err != nil {
		t.Fatalf("Create() error = %v", err)
	}
	b := sb.(*Box)
	t.Cleanup(func() { _ = b.Destroy(context.Background()) })
	return b, watch(b.Terminal())
}

// screen collects everything the terminal prints.
type screen struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	more chan struct{} // signalled on every read
	done chan struct{} // closed when reading fails
}

func watch(p sandbox.PTY) *screen {
	s := &screen{more: make(chan struct{}, 1), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		b := make([]byte, 4096)
		for {
			n, err := p.Read(b)
			s.mu.Lock()
			s.buf.Write(b[:n])
			s.mu.Unlock()
			select {
			case s.more <- struct{}{}:
			default:
			}
			if err != nil {
				return
			}
		}
	}()
	return s
}

func (s *screen) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// waitFor waits until re matches the output and returns the submatches.
func (s *screen) waitFor(t testing.TB, re *regexp.Regexp) []string {
	t.Helper()
	deadline := time.After(wait)
	for {
		if m := re.FindStringSubmatch(s.String()); m != nil {
			return m
		}
		select {
		case <-s.more:
		case <-s.done:
			if m := re.FindStringSubmatch(s.String()); m != nil {
				return m
			}
			t.Fatalf("terminal ended without %q; output:\n%s", re, s)
		case <-deadline:
			t.Fatalf("no %q on the terminal after %v; output:\n%s", re, wait, s)
		}
	}
}

func prompt(hostname string) *regexp.Regexp {
	return regexp.MustCompile(regexp.QuoteMeta(hostname) + `[^\n]*# `)
}

func typeLine(t testing.TB, b *Box, line string) {
	t.Helper()
	if _, err := b.Terminal().Write([]byte(line + "\n")); err != nil {
		t.Fatalf("write to terminal: %v", err)
	}
}

// nsMembers returns the host pids whose namespace of kind (pid, net, ...)
// is ns (a readlink of /proc/<pid>/ns/<kind>).
func nsMembers(t testing.TB, kind, ns string) []string {
	t.Helper()
	paths, err := filepath.Glob("/proc/[0-9]*/ns/" + kind)
	if err != nil {
		t.Fatal(err)
	}
	var pids []string
	for _, p := range paths {
		if l, err := os.Readlink(p); err == nil && l == ns {
			pids = append(pids, strings.Split(p, "/")[2])
		}
	}
	return pids
}

func openFDs(t testing.TB) int {
	t.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}
