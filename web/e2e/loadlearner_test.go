package e2e_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/labd/labd/web/terminal"
)

// loadLearner is one learner of TestLoad: wsLearner's protocol (the lab
// page with a page load's headers, the terminal over its websocket, the
// Files panel's upload), but every call takes a context and returns its
// error instead of failing the test, so that many can run in goroutines
// and every failure is counted against its operation.
type loadLearner struct {
	srv *labd
	c   *http.Client

	sid, user, password string
	ws                  *websocket.Conn
	conn                *terminal.Conn
	typed               int // commands typed so far, for their markers

	mu   sync.Mutex
	out  bytes.Buffer
	more chan struct{}
	done chan struct{}
}

var (
	registryUserAttr     = regexp.MustCompile(`class="registry-user">([^<]*)<`)
	registryPasswordAttr = regexp.MustCompile(`class="registry-password">([^<]*)<`)
	loadPromptRE         = regexp.MustCompile(`root@[^:]+:~# $`)
)

// newLoadLearner is a learner with a cookie jar and connections of its own,
// as a browser of its own would have.
func newLoadLearner(srv *labd) *loadLearner {
	jar, _ := cookiejar.New(nil)
	return &loadLearner{
		srv:  srv,
		c:    &http.Client{Jar: jar, Timeout: 3 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: time.Minute}},
		more: make(chan struct{}, 1),
		done: make(chan struct{}),
	}
}

// openPage loads the lab page as a browser's navigation does and reads the
// sandbox and the registry account from it.
func (l *loadLearner) openPage(ctx context.Context, lab string) error {
	req, err := http.NewRequestWithContext(ctx, "GET", l.srv.url+"/labs/"+lab, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	req.Header.Set("Sec-Fetch-Dest", "document")
	req.Header.Set("Sec-Fetch-Site", "none")
	resp, err := l.c.Do(req)
	if err != nil {
		return fmt.Errorf("GET /labs/%s: %w", lab, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("GET /labs/%s: read: %w", lab, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /labs/%s: %d: %s", lab, resp.StatusCode, tail(string(body), 300))
	}
	m := sandboxAttr.FindSubmatch(body)
	if m == nil {
		return fmt.Errorf("GET /labs/%s: the page names no sandbox: %s", lab, tail(string(body), 300))
	}
	l.sid = string(m[1])
	if m := registryUserAttr.FindSubmatch(body); m != nil {
		l.user = string(m[1])
	}
	if m := registryPasswordAttr.FindSubmatch(body); m != nil {
		l.password = string(m[1])
	}
	return nil
}

// attach opens the terminal's websocket.
func (l *loadLearner) attach(ctx context.Context) error {
	d := websocket.Dialer{Jar: l.c.Jar, Subprotocols: []string{terminal.Subprotocol}, HandshakeTimeout: time.Minute}
	ws, resp, err := d.DialContext(ctx, "ws"+strings.TrimPrefix(l.srv.url, "http")+"/sandboxes/"+l.sid+"/terminal", http.Header{"Origin": {l.srv.url}})
	if err != nil {
		code := 0
		if resp != nil {
			code = resp.StatusCode
		}
		return fmt.Errorf("dial the terminal (HTTP %d): %w", code, err)
	}
	l.ws, l.conn = ws, terminal.NewConn(ws)
	if err := l.conn.WriteMessage(terminal.Resize{Cols: 200, Rows: 50}); err != nil {
		ws.Close()
		return fmt.Errorf("resize: %w", err)
	}
	go l.read()
	return nil
}

func (l *loadLearner) read() {
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

func (l *loadLearner) output() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.out.String()
}

// waitOut waits until the terminal's output from offset off matches re.
func (l *loadLearner) waitOut(ctx context.Context, off int, re *regexp.Regexp) ([]string, error) {
	for {
		if out := l.output(); len(out) >= off {
			if m := re.FindStringSubmatch(out[off:]); m != nil {
				return m, nil
			}
		}
		select {
		case <-l.more:
		case <-l.done:
			if m := re.FindStringSubmatch(l.output()[off:]); m != nil {
				return m, nil
			}
			return nil, fmt.Errorf("the terminal closed before %q; it shows:\n%s", re, tail(l.output(), 1500))
		case <-ctx.Done():
			return nil, fmt.Errorf("no %q: %w; the terminal shows:\n%s", re, ctx.Err(), tail(l.output(), 1500))
		}
	}
}

func (l *loadLearner) waitPrompt(ctx context.Context) error {
	_, err := l.waitOut(ctx, 0, loadPromptRE)
	return err
}

// run types cmd into the shell and waits for it to end; it returns what
// the command printed and fails on a non-zero exit code.
func (l *loadLearner) run(ctx context.Context, cmd string) (string, error) {
	l.typed++
	n := l.typed
	off := len(l.output())
	// The echo of the typed line shows "$?", never digits: only the
	// shell's answer matches.
	if err := l.conn.WriteMessage(terminal.Input(fmt.Sprintf("%s; echo \"LOAD-DONE-%d-$?\"\r", cmd, n))); err != nil {
		return "", fmt.Errorf("type %q: %w", cmd, err)
	}
	re := regexp.MustCompile(fmt.Sprintf(`LOAD-DONE-%d-(\d+)\r?\n`, n))
	m, err := l.waitOut(ctx, off, re)
	if err != nil {
		return "", fmt.Errorf("%s: %w", cmd, err)
	}
	out := l.output()[off:]
	out = out[:strings.Index(out, m[0])]
	if m[1] != "0" {
		return out, fmt.Errorf("%s: exit %s:\n%s", cmd, m[1], tail(out, 1500))
	}
	return out, nil
}

// upload puts files into the workspace directory dir through the Files
// panel's route.
func (l *loadLearner) upload(ctx context.Context, dir string, files map[string]string) error {
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for name, body := range files {
		w, err := mw.CreateFormFile("file", name)
		if err != nil {
			return err
		}
		w.Write([]byte(body))
	}
	mw.Close()
	req, err := http.NewRequestWithContext(ctx, "POST", l.srv.url+"/sandboxes/"+l.sid+"/files?dir="+url.QueryEscape(dir), &b)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Origin", l.srv.url)
	resp, err := l.c.Do(req)
	if err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("upload into %q: %d %s", dir, resp.StatusCode, msg)
	}
	return nil
}

// previewGet fetches port's path-based preview (the route the page's
// "Open port" link takes; it redirects to a capability URL) once.
func (l *loadLearner) previewGet(ctx context.Context, port int) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/sandboxes/%s/ports/%d/", l.srv.url, l.sid, port), nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := l.c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b), err
}

// waitPreview polls the preview until it answers 200 with want: the app
// needs a moment to start after docker run returns. It returns how many
// requests it took.
func (l *loadLearner) waitPreview(ctx context.Context, port int, want string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var (
		code int
		body string
		err  error
	)
	for n := 1; ; n++ {
		code, body, err = l.previewGet(ctx, port)
		if err == nil && code == http.StatusOK && strings.Contains(body, want) {
			return n, nil
		}
		select {
		case <-ctx.Done():
			return n, fmt.Errorf("port %d preview: no 200 with %q (last: %d %v %q)", port, want, code, err, tail(body, 300))
		case <-l.srv.done:
			return n, fmt.Errorf("port %d preview: labd exited (last: %v)", port, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// leave closes the terminal as a closing tab does: a close frame, then
// labd ends the connection.
func (l *loadLearner) leave(ctx context.Context) error {
	if err := l.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, ""), time.Now().Add(10*time.Second)); err != nil {
		return fmt.Errorf("send the close frame: %w", err)
	}
	select {
	case <-l.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("labd did not end the terminal after the close frame: %w", ctx.Err())
	case <-time.After(30 * time.Second):
		return fmt.Errorf("labd did not end the terminal within 30 s of the close frame")
	}
}

// close releases the learner's connections whatever happened.
func (l *loadLearner) close() {
	if l.ws != nil {
		l.ws.Close()
		<-l.done
	}
	l.c.CloseIdleConnections()
}

// loadInstance is the name sandbox sid runs under: a sandbox made
// ahead of its learner (the warm pool) keeps its own, and
// DATA/sandboxes/<sid> links to its directory.
func loadInstance(data, sid string) string {
	if t, err := os.Readlink(filepath.Join(data, "sandboxes", sid)); err == nil && t == filepath.Base(t) {
		return t
	}
	return sid
}

// sandboxCgroupInt reads one number of sandbox sid's cgroup under labd's
// default --cgroup-parent: the v1 file in the controller's hierarchy, else
// the v2 file.
func sandboxCgroupInt(data, sid, controller, v1, v2 string) (int64, error) {
	sid = loadInstance(data, sid)
	b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", controller, "labd", sid, v1))
	if err != nil {
		b, err = os.ReadFile(filepath.Join("/sys/fs/cgroup/labd", sid, v2))
	}
	if err != nil {
		return 0, fmt.Errorf("sandbox %s's cgroup: %w", sid, err)
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return -1, nil
	}
	return strconv.ParseInt(s, 10, 64)
}

// loadAvg is the 1-minute load average.
func loadAvg() float64 {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// procCPU is the user and system time process pid has used.
func procCPU(pid int) time.Duration {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	// Fields after the command (which may hold spaces) in parentheses.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	// USER_HZ is 100 on Linux.
	return time.Duration(ut+st) * 10 * time.Millisecond
}
