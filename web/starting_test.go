package web

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/labd/labd/sandbox"
	"github.com/labd/labd/sandbox/nsbox"
	"github.com/labd/labd/web/terminal"
)

// slowStart holds every Create until its gate opens, then fails it or
// creates the real sandbox.
type slowStart struct {
	inner sandbox.Provider
	gate  chan struct{}
	fail  bool
}

func (p *slowStart) Create(ctx context.Context, s sandbox.Spec) (sandbox.Sandbox, error) {
	select {
	case <-p.gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if p.fail {
		return nil, errors.New("no shell today")
	}
	return p.inner.Create(ctx, s)
}

// The lab page answers before the sandbox's shell is up; the terminal
// and status websockets wait for it, then attach; a start that fails is
// told on the terminal's request, never as a page that hangs.
func TestLabPageDoesNotWait(t *testing.T) {
	for _, fail := range []bool{false, true} {
		name := "starts"
		if fail {
			name = "fails"
		}
		t.Run(name, func(t *testing.T) {
			p := &slowStart{inner: nsbox.New(nsbox.Options{}), gate: make(chan struct{}), fail: fail}
			quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
			mgr := sandbox.NewManager(p, sandbox.ManagerOptions{DataDir: t.TempDir(), Logger: quiet, IdleTimeout: -1})
			t.Cleanup(func() {
				select {
				case <-p.gate:
				default:
					close(p.gate)
				}
				mgr.Close(context.Background())
			})
			s := newTestServerIdle(t, "", 0, 0, func(o *Options) { o.Sandboxes = mgr })
			c := s.client(t)
			sid := sandboxOf(t, c, s.URL) // answered while Create is held
			if _, _, ok := mgr.Get(sid); ok {
				t.Fatal("the sandbox is up before its provider made it")
			}
			type dialed struct {
				ws   *websocket.Conn
				resp *http.Response
				err  error
			}
			done := make(chan dialed, 1)
			go func() {
				d := websocket.Dialer{Jar: c.Jar, Subprotocols: []string{terminal.Subprotocol}, HandshakeTimeout: waitTimeout}
				ws, resp, err := d.Dial("ws"+strings.TrimPrefix(s.URL, "http")+"/sandboxes/"+sid+"/terminal", http.Header{"Origin": {s.URL}})
				done <- dialed{ws, resp, err}
			}()
			select {
			case d := <-done:
				t.Fatalf("the terminal answered before the sandbox was made: %v %v", d.resp, d.err)
			case <-time.After(300 * time.Millisecond):
			}
			close(p.gate)
			d := <-done
			if fail {
				if d.err == nil || d.resp == nil || d.resp.StatusCode != http.StatusServiceUnavailable {
					t.Fatalf("terminal of a sandbox that failed to start: %v, %v; want 503", d.resp, d.err)
				}
				body, _ := io.ReadAll(d.resp.Body)
				if !strings.Contains(string(body), "Could not start your sandbox") {
					t.Errorf("refusal body %q", body)
				}
				return
			}
			if d.err != nil {
				t.Fatalf("terminal: %v", d.err)
			}
			defer d.ws.Close()
			conn := terminal.NewConn(d.ws)
			if err := conn.WriteMessage(terminal.Input("echo started-$((6*7))\r")); err != nil {
				t.Fatal(err)
			}
			readUntil(t, d.ws, conn, "started-42")
		})
	}
}
