package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/labd/labd/web"
	"github.com/labd/labd/web/terminal"
)

// wsLearner is a learner without a browser: the lab page over HTTP (with
// the headers of a page load), the terminal over its websocket and the
// Files panel's routes, as the page uses them. It types into the real
// shell of a real sandbox.
type wsLearner struct {
	t    *testing.T
	srv  *labd
	c    *http.Client
	sid  string
	ws   *websocket.Conn
	conn *terminal.Conn

	mu   sync.Mutex
	out  bytes.Buffer
	more chan struct{}
	done chan struct{}
}

var sandboxAttr = regexp.MustCompile(`data-sandbox="([^"]+)"`)

// openLab loads the lab page as a new learner (its own cookie jar) and
// attaches to the terminal.
func openLab(t *testing.T, srv *labd, lab string) *wsLearner {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	return attachLab(t, srv, lab, &http.Client{Jar: jar, Timeout: waitTimeout})
}

// attachLab loads the lab page with c (a learner's cookies) and attaches
// to its terminal.
func attachLab(t *testing.T, srv *labd, lab string, c *http.Client) *wsLearner {
	t.Helper()
	l := &wsLearner{t: t, srv: srv, c: c, more: make(chan struct{}, 1), done: make(chan struct{})}
	req, _ := http.NewRequest("GET", srv.url+"/labs/"+lab, nil)
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	req.Header.Set("Sec-Fetch-Dest", "document")
	req.Header.Set("Sec-Fetch-Site", "none")
	resp, err := l.c.Do(req)
	if err != nil {
		t.Fatalf("open lab %s: %v", lab, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := sandboxAttr.FindSubmatch(body)
	if resp.StatusCode != 200 || m == nil {
		t.Fatalf("lab page %s: %d, no sandbox:\n%s\nlabd log:\n%s", lab, resp.StatusCode, body, srv.log())
	}
	l.sid = string(m[1])
	d := websocket.Dialer{Jar: c.Jar, Subprotocols: []string{terminal.Subprotocol}, HandshakeTimeout: waitTimeout}
	ws, _, err := d.Dial("ws"+strings.TrimPrefix(srv.url, "http")+"/sandboxes/"+l.sid+"/terminal", http.Header{"Origin": {srv.url}})
	if err != nil {
		t.Fatalf("dial terminal: %v", err)
	}
	l.ws, l.conn = ws, terminal.NewConn(ws)
	if err := l.conn.WriteMessage(terminal.Resize{Cols: 200, Rows: 50}); err != nil {
		t.Fatal(err)
	}
	go l.read()
	t.Cleanup(func() { ws.Close(); <-l.done })
	return l
}

func (l *wsLearner) read() {
	defer close(l.done)
	for {
		m, err := l.conn.ReadMessage()
		if err != nil {
			return
		}
		if o, ok := m.(terminal.Output); ok {
			l.mu.Lock()
			l.out.Write(o)
			l.mu.Unlock()
			select {
			case l.more <- struct{}{}:
			default:
			}
		}
	}
}

func (l *wsLearner) output() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.out.String()
}

// waitFor waits until the terminal output from offset off matches re.
func (l *wsLearner) waitFor(off int, re *regexp.Regexp, timeout time.Duration) ([]string, bool) {
	deadline := time.After(timeout)
	for {
		if out := l.output(); len(out) >= off {
			if m := re.FindStringSubmatch(out[off:]); m != nil {
				return m, true
			}
		}
		select {
		case <-l.more:
		case <-l.done:
			m := re.FindStringSubmatch(l.output()[off:])
			return m, m != nil
		case <-deadline:
			return nil, false
		}
	}
}

// typeLine types one line into the shell.
func (l *wsLearner) typeLine(s string) {
	l.t.Helper()
	if err := l.conn.WriteMessage(terminal.Input(s + "\r")); err != nil {
		l.t.Fatalf("type %q: %v", s, err)
	}
}

// upload puts files into the workspace through the Files panel's route.
func (l *wsLearner) upload(dir string, files map[string]string) {
	l.t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for name, body := range files {
		w, err := mw.CreateFormFile("file", name)
		if err != nil {
			l.t.Fatal(err)
		}
		w.Write([]byte(body))
	}
	mw.Close()
	req, _ := http.NewRequest("POST", l.srv.url+"/sandboxes/"+l.sid+"/files?dir="+url.QueryEscape(dir), &b)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Origin", l.srv.url)
	resp, err := l.c.Do(req)
	if err != nil {
		l.t.Fatalf("upload: %v", err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		l.t.Fatalf("upload into %s: %d %s", dir, resp.StatusCode, msg)
	}
}

// download reads a workspace file through the Files panel's route.
func (l *wsLearner) download(path string) (string, error) {
	resp, err := l.c.Get(l.srv.url + "/sandboxes/" + l.sid + "/files/download?path=" + url.QueryEscape(path))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("download %s: %d %s", path, resp.StatusCode, b)
	}
	return string(b), err
}

var shellRun = 0

// sh runs a bash script in the learner's shell (uploaded, then typed as
// `bash FILE > OUT 2>&1`) and returns what it printed and its exit code;
// ok is false when it did not end within timeout.
func (l *wsLearner) sh(script string, timeout time.Duration) (out string, code int, ok bool) {
	l.t.Helper()
	shellRun++
	n := shellRun
	name := fmt.Sprintf("script-%d.sh", n)
	l.upload(".labd-test", map[string]string{name: script})
	off := len(l.output())
	l.typeLine(fmt.Sprintf("bash ~/.labd-test/%s > ~/.labd-test/out-%d.txt 2>&1; echo \"LABD-DONE-%d-$?\"", name, n, n))
	m, ok := l.waitFor(off, regexp.MustCompile(fmt.Sprintf(`LABD-DONE-%d-(\d+)`, n)), timeout)
	if !ok {
		// Interrupt it so the next script gets the prompt.
		l.conn.WriteMessage(terminal.Input("\x03"))
		return "", -1, false
	}
	fmt.Sscan(m[1], &code)
	out, err := l.download(fmt.Sprintf(".labd-test/out-%d.txt", n))
	if err != nil {
		l.t.Errorf("read the script's output: %v", err)
	}
	return out, code, true
}

// grade asks labd serve's grade socket for the sandbox's results.
func grade(t *testing.T, sock, sid, lab string) web.GradeReport {
	t.Helper()
	r, err := gradeErr(sock, sid, lab)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// gradeErr is grade for goroutines, which must not end the test.
func gradeErr(sock, sid, lab string) (web.GradeReport, error) {
	c := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	var r web.GradeReport
	resp, err := c.Get("http://labd/v1/grade?sandbox=" + url.QueryEscape(sid) + "&lab=" + url.QueryEscape(lab))
	if err != nil {
		return r, fmt.Errorf("grade: %w", err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return r, fmt.Errorf("grade report: %w", err)
	}
	return r, nil
}
