package terminal

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// setup starts a shell, a hub on it and a websocket server for it.
func setup(t *testing.T, opts HubOptions) (*shellPTY, *Hub, *testServer) {
	t.Helper()
	checkLeaks(t)
	sh := startShell(t)
	hub := NewHub(sh, opts)
	ts := newTestServer(t, hub, UpgradeOptions{})
	return sh, hub, ts
}

func TestEcho(t *testing.T) {
	_, hub, ts := setup(t, HubOptions{})
	before := hub.LastInput()
	c := dial(t, ts)
	c.waitFor("hello", func(c *testClient) bool { return c.hello != nil })
	if c.hello.Protocol != ProtocolVersion || c.hello.MaxMessage != DefaultReadLimit {
		t.Errorf("hello = %+v", *c.hello)
	}
	c.waitOutput("labd$ ")
	c.typeLine("echo he''llo")
	c.waitOutput("hello")
	if !hub.LastInput().After(before) {
		t.Errorf("LastInput() = %v, not after %v", hub.LastInput(), before)
	}
}

func TestAppPing(t *testing.T) {
	_, _, ts := setup(t, HubOptions{})
	c := dial(t, ts)
	c.send(Ping("t=123"))
	c.waitFor("pong", func(c *testClient) bool {
		return len(c.pongs) == 1 && string(c.pongs[0]) == "t=123"
	})
}

func TestResize(t *testing.T) {
	_, _, ts := setup(t, HubOptions{})
	c := dial(t, ts)
	c.waitOutput("labd$ ")
	c.send(Resize{Cols: 123, Rows: 45})
	c.typeLine("stty size")
	c.waitOutput("45 123")
}

// TestReconnect drops a websocket abruptly and checks that a new one gets
// the same shell and a replay of what came before.
func TestReconnect(t *testing.T) {
	_, _, ts := setup(t, HubOptions{})
	c1 := dial(t, ts)
	c1.waitOutput("labd$ ")
	c1.typeLine("export FOO=bar; echo fi''rst-done")
	c1.waitOutput("first-done")
	c1.ws.UnderlyingConn().Close() // no close frame: a network drop
	if err := ts.recvResult(t); err == nil {
		t.Errorf("Attach() after network drop = nil, want an error")
	}

	c2 := dial(t, ts)
	c2.waitFor("hello", func(c *testClient) bool { return c.hello != nil })
	c2.waitOutput("first-done") // replay
	if c2.hello.Scrollback == 0 {
		t.Errorf("hello.Scrollback = 0, want the replay size")
	}
	c2.typeLine(`echo "v=$FOO"`)
	c2.waitOutput("v=bar")
}

// TestReplayNoGapNoDuplicate attaches a client while the shell prints
// numbered lines; replay plus live output must be exactly consecutive.
func TestReplayNoGapNoDuplicate(t *testing.T) {
	const last = 200000
	_, _, ts := setup(t, HubOptions{})
	c1 := dial(t, ts)
	c1.waitOutput("labd$ ")
	c1.typeLine(fmt.Sprintf("seq 1 %d", last))
	c1.waitOutput("\n50000\r\n")

	c2 := dialTail(t, ts, 64<<20)
	end := fmt.Sprintf("\n%d\r\n", last)
	c2.waitOutput(end)
	c1.waitOutput(end)

	lines := strings.Split(c2.output(), "\n")[1:] // the first may be partial
	prev, count := -1, 0
	for _, l := range lines {
		n, err := strconv.Atoi(strings.TrimSuffix(l, "\r"))
		if err != nil {
			continue // prompt, echoed command
		}
		if prev >= 0 && n != prev+1 {
			t.Fatalf("line %d follows %d", n, prev)
		}
		prev = n
		count++
	}
	if prev != last || count < 1000 {
		t.Errorf("last line %d after %d consecutive lines, want %d", prev, count, last)
	}
}

func TestTwoClients(t *testing.T) {
	_, _, ts := setup(t, HubOptions{})
	a, b := dial(t, ts), dial(t, ts)
	a.waitOutput("labd$ ")
	b.waitOutput("labd$ ")
	a.typeLine("echo fr''om-a")
	a.waitOutput("from-a")
	b.waitOutput("from-a")
	b.typeLine("echo fr''om-b")
	a.waitOutput("from-b")
	b.waitOutput("from-b")
}

// TestFlood floods the terminal with a paused tab and a reading tab
// attached: buffers stay within their bounds, the paused tab is dropped as
// too slow, the reading tab keeps getting output, and Ctrl-C works.
func TestFlood(t *testing.T) {
	opts := HubOptions{Scrollback: 64 << 10, QueueBytes: 256 << 10, StallTimeout: 5 * time.Second}
	_, hub, ts := setup(t, opts)
	reader, paused := dialTail(t, ts, 64<<10), dialTail(t, ts, 64<<10)
	reader.waitOutput("labd$ ")
	paused.waitOutput("labd$ ")
	paused.send(Pause{})
	// The pause is processed before this pong is queued.
	paused.send(Ping("sync"))
	paused.waitFor("pong", func(c *testClient) bool { return len(c.pongs) == 1 })

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heapBefore := ms.HeapInuse

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var maxRing, maxQueued int
	var maxHeap uint64
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		for {
			s := hub.Stats()
			maxRing = max(maxRing, s.Scrollback)
			for _, q := range s.Queued {
				maxQueued = max(maxQueued, q)
			}
			runtime.ReadMemStats(&ms)
			maxHeap = max(maxHeap, ms.HeapInuse)
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()

	reader.typeLine("yes | head -c 200000000")
	if code := paused.closeCode(); code != CloseTooSlow {
		t.Errorf("paused client close code = %d, want %d", code, CloseTooSlow)
	}
	if err := ts.recvResult(t); !errors.Is(err, ErrTooSlow) {
		t.Errorf("Attach() for paused client = %v, want ErrTooSlow", err)
	}
	// The flood goes on for the reader after the drop.
	reader.waitFor("16 MiB of output", func(c *testClient) bool { return c.total > 16<<20 })
	reader.send(Input("\x03"))
	reader.typeLine("echo after-$((6*7))")
	reader.waitOutput("after-42")
	close(stop)
	wg.Wait()

	if maxRing > opts.Scrollback {
		t.Errorf("ring held %d bytes, bound %d", maxRing, opts.Scrollback)
	}
	if maxQueued > opts.QueueBytes {
		t.Errorf("a queue held %d bytes, bound %d", maxQueued, opts.QueueBytes)
	}
	if maxQueued == 0 {
		t.Errorf("no queued bytes seen during the flood; the stats probe is broken")
	}
	if growth := int64(maxHeap) - int64(heapBefore); growth > 64<<20 {
		t.Errorf("heap grew by %d MiB during the flood", growth>>20)
	}
	if s := hub.Stats(); s.TooSlow != 1 || len(s.Queued) != 1 {
		t.Errorf("Stats() = %+v, want 1 client dropped and 1 attached", s)
	}
}

// TestPauseResume checks that a paused client gets nothing until resume.
func TestPauseResume(t *testing.T) {
	_, _, ts := setup(t, HubOptions{})
	a, b := dial(t, ts), dial(t, ts)
	a.waitOutput("labd$ ")
	b.waitOutput("labd$ ")
	b.send(Pause{})
	b.send(Ping("sync"))
	b.waitFor("pong", func(c *testClient) bool { return len(c.pongs) == 1 })
	a.typeLine("echo wh''ile-paused")
	a.waitOutput("while-paused")
	if strings.Contains(b.output(), "while-paused") {
		t.Fatalf("paused client got output")
	}
	b.send(Resume{})
	b.waitOutput("while-paused")
}

// TestGarbageFrames sends frames that break the protocol; each closes the
// socket with its documented code, and the server keeps serving.
func TestGarbageFrames(t *testing.T) {
	tests := []struct {
		name  string
		kind  int
		frame []byte
		code  int
	}{
		{"unknown type", websocket.BinaryMessage, []byte{0x7f, 1, 2}, CloseUnsupported},
		{"empty frame", websocket.BinaryMessage, nil, CloseInvalidPayload},
		{"bad resize JSON", websocket.BinaryMessage, []byte("\x02{cols:1}"), CloseInvalidPayload},
		{"resize out of bounds", websocket.BinaryMessage, []byte("\x02{\"cols\":0,\"rows\":24}"), CloseInvalidPayload},
		{"text frame", websocket.TextMessage, []byte("ls\r"), CloseUnsupported},
		{"server message", websocket.BinaryMessage, []byte("\x82output"), CloseUnsupported},
		{"oversized", websocket.BinaryMessage, append([]byte{byte(TypeInput)}, bytes.Repeat([]byte("a"), DefaultReadLimit)...), CloseTooBig},
	}
	_, _, ts := setup(t, HubOptions{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, ts)
			c.waitFor("hello", func(c *testClient) bool { return c.hello != nil })
			if err := c.ws.WriteMessage(tt.kind, tt.frame); err != nil {
				t.Fatalf("write: %v", err)
			}
			if code := c.closeCode(); code != tt.code {
				t.Errorf("close code = %d, want %d", code, tt.code)
			}
			var pe *ProtocolError
			if err := ts.recvResult(t); !errors.As(err, &pe) || pe.Code != tt.code {
				t.Errorf("Attach() = %v, want *ProtocolError with code %d", err, tt.code)
			}
		})
	}
	c := dial(t, ts)
	c.typeLine("echo st''ill-up")
	c.waitOutput("still-up")
}

// TestOrigin: Upgrade asks the caller's CheckOrigin (package web's policy
// is tested there) and, without one, refuses every browser.
func TestOrigin(t *testing.T) {
	checkLeaks(t)
	sh := startShell(t)
	hub := NewHub(sh, HubOptions{})
	policy := newTestServer(t, hub, UpgradeOptions{CheckOrigin: func(r *http.Request) bool {
		return r.Header.Get("Origin") == "https://labs.example.com"
	}})
	none := newTestServer(t, hub, UpgradeOptions{})
	tests := []struct {
		name   string
		ts     *testServer
		origin string
		want   int
	}{
		{"policy accepts", policy, "https://labs.example.com", http.StatusSwitchingProtocols},
		{"policy refuses", policy, "https://evil.example", http.StatusForbidden},
		{"policy refuses no Origin", policy, "", http.StatusForbidden},
		{"no policy, no Origin", none, "", http.StatusSwitchingProtocols},
		{"no policy, any Origin", none, "https://labs.example.com", http.StatusForbidden},
		{"no policy, null", none, "null", http.StatusForbidden},
	}
	for _, tt := range tests {
		h := http.Header{}
		if tt.origin != "" {
			h.Set("Origin", tt.origin)
		}
		ws, resp, err := dialRaw(t, tt.ts.wsURL(), h)
		if resp == nil {
			t.Fatalf("%s: no response: %v", tt.name, err)
		}
		if resp.StatusCode != tt.want {
			t.Errorf("%s: status %d, want %d", tt.name, resp.StatusCode, tt.want)
		}
		if ws != nil {
			ws.Close()
			tt.ts.recvResult(t)
		}
	}

	ts := none
	d := websocket.Dialer{} // no subprotocol
	_, resp, err := d.Dial(ts.wsURL(), nil)
	if resp == nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("dial without subprotocol: %v, %v; want 400", resp, err)
	}
}

func TestClose(t *testing.T) {
	_, hub, ts := setup(t, HubOptions{})
	c := dial(t, ts)
	c.waitOutput("labd$ ")
	hub.Close(CloseDestroyed, "sandbox destroyed")
	if code := c.closeCode(); code != CloseDestroyed {
		t.Errorf("close code = %d, want %d", code, CloseDestroyed)
	}
	want := Notice{Kind: NoticeClosing, Code: CloseDestroyed, Message: "sandbox destroyed"}
	if len(c.notices) != 1 || c.notices[0] != want {
		t.Errorf("notices = %+v, want [%+v]", c.notices, want)
	}
	if err := ts.recvResult(t); err != nil {
		t.Errorf("Attach() = %v, want nil", err)
	}

	late := dial(t, ts)
	if code := late.closeCode(); code != CloseDestroyed {
		t.Errorf("late client close code = %d, want %d", code, CloseDestroyed)
	}
	ts.recvResult(t)
}

func TestShellExit(t *testing.T) {
	_, hub, ts := setup(t, HubOptions{})
	c := dial(t, ts)
	c.waitOutput("labd$ ")
	c.typeLine("echo by''e; exit 3")
	if code := c.closeCode(); code != CloseShellExited {
		t.Errorf("close code = %d, want %d", code, CloseShellExited)
	}
	if !strings.Contains(c.output(), "bye") {
		t.Errorf("output before exit not flushed: %q", c.output())
	}
	select {
	case <-hub.Done():
	case <-time.After(waitTimeout):
		t.Fatal("Done() not closed after shell exit")
	}
	if err := ts.recvResult(t); err != nil {
		t.Errorf("Attach() = %v, want nil", err)
	}

	late := dial(t, ts)
	if code := late.closeCode(); code != CloseShellExited {
		t.Errorf("late client close code = %d, want %d", code, CloseShellExited)
	}
	if !strings.Contains(late.output(), "bye") {
		t.Errorf("late client replay = %q, want the final output", late.output())
	}
	ts.recvResult(t)
}

// TestKeepAlive: a client that answers pings stays; one that does not is
// closed with CloseKeepAlive.
func TestKeepAlive(t *testing.T) {
	_, _, ts := setup(t, HubOptions{PingInterval: 500 * time.Millisecond})
	live := dial(t, ts)
	live.waitOutput("labd$ ")

	silent, _, err := dialRaw(t, ts.wsURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	// Not reading means not answering pings; wait for the server to give up.
	var res error
	select {
	case res = <-ts.results:
	case <-time.After(waitTimeout):
		t.Fatal("silent client not dropped")
	}
	if res == nil {
		t.Errorf("Attach() for silent client = nil, want keep-alive error")
	}
	silent.SetPingHandler(func(string) error { return nil }) // too late to answer
	silent.SetReadDeadline(time.Now().Add(waitTimeout))
	var ce *websocket.CloseError
	for {
		if _, _, err = silent.ReadMessage(); err != nil {
			break
		}
	}
	if !errors.As(err, &ce) || ce.Code != CloseKeepAlive {
		t.Errorf("silent client read error = %v, want close %d", err, CloseKeepAlive)
	}

	// The live client answered many pings meanwhile.
	live.typeLine("echo st''ill-here")
	live.waitOutput("still-here")
}

// TestCloseWhileInputBlocked: the shell does not read its input, so pty
// writes block; Close must still detach the typing client.
func TestCloseWhileInputBlocked(t *testing.T) {
	_, hub, ts := setup(t, HubOptions{})
	c := dial(t, ts)
	c.waitOutput("labd$ ")
	c.typeLine("stty raw -echo; echo sl''eeping; sleep 600")
	c.waitOutput("sleeping")
	chunk := Input(bytes.Repeat([]byte("x"), 60<<10))
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := 0; i < 400; i++ { // 24 MiB: far more than the tty buffers
			if c.c.WriteMessage(chunk) != nil {
				return
			}
		}
	}()
	// Wait until input is stuck: the hub's input channel is full.
	c.waitFor("input backlog", func(*testClient) bool { return len(hub.in) == cap(hub.in) })
	hub.Close(CloseShutdown, "server shutting down")
	if code := c.closeCode(); code != CloseShutdown {
		t.Errorf("close code = %d, want %d", code, CloseShutdown)
	}
	<-sent
	if err := ts.recvResult(t); err != nil {
		t.Errorf("Attach() = %v, want nil", err)
	}
}
