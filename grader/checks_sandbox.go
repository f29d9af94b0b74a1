package grader

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labd/labd/labs/check"
	"github.com/labd/labd/sandbox"
)

// DefaultScriptTimeout bounds a script check without a timeout field.
const DefaultScriptTimeout = 10 * time.Second

// maxOutput bounds what is kept of a script's or a page's output.
const maxOutput = 64 << 10

// capBuffer keeps the first maxOutput bytes written to it.
type capBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *capBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := maxOutput - c.buf.Len(); room > 0 {
		c.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (c *capBuffer) Bytes() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]byte(nil), c.buf.Bytes()...)
}

// scriptDockerConfig returns a DOCKER_CONFIG for one script run: a path
// in /tmp that does not exist, so the docker CLI in the script reads no
// configuration at all. The learner's ~/.docker/config.json (a context
// that points the CLI elsewhere, extra headers, registry logins) is never
// the script's.
func scriptDockerConfig() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "/tmp/.labd-grader-" + hex.EncodeToString(b[:])
}

// CheckRunner is implemented by sandboxes that run the grader's script
// checks apart from the learner's shell (labd's engine sandboxes: a fresh
// container of the sandbox image whose docker talks to the engine on a
// socket that records nothing). Other sandboxes run them with Exec.
type CheckRunner interface {
	RunCheck(ctx context.Context, e sandbox.ExecSpec) (int, error)
}

// runCheck runs a script check's command in s.
func runCheck(ctx context.Context, s Execer, e sandbox.ExecSpec) (int, error) {
	if cr, ok := s.(CheckRunner); ok {
		return cr.RunCheck(ctx, e)
	}
	return s.Exec(ctx, e)
}

func checkScript(ctx context.Context, p *probe, s *check.Script) (outcome, error) {
	if p.env.Sandbox == nil {
		return failed(cannot("script checks need a running sandbox; open the lab to start one"))
	}
	timeout := cmp.Or(time.Duration(s.Timeout), DefaultScriptTimeout)
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var out capBuffer
	code, err := runCheck(cctx, p.env.Sandbox, sandbox.ExecSpec{
		Cmd:    []string{"bash", "-c", s.Run},
		Env:    []string{"DOCKER_CONFIG=" + scriptDockerConfig()},
		Stdout: &out, Stderr: &out,
	})
	if cctx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
		return fail("The check did not finish within %s and was stopped", timeout)
	}
	if err != nil {
		if ctx.Err() != nil {
			return failed(cannot("cancelled"))
		}
		return failed(cannot("run the check script: %v", err))
	}
	if code == 0 {
		return pass()
	}
	sc := bufio.NewScanner(bytes.NewReader(out.Bytes()))
	for sc.Scan() {
		if reason, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "FAIL:"); ok {
			return fail("%s", strings.TrimSpace(reason))
		}
	}
	return fail("The check script failed (exit status %d)", code)
}

// httpScript makes one HTTP/1.0 request with bash's /dev/tcp inside the
// sandbox, where published ports listen, and prints the raw response: for
// sandboxes labd cannot dial into (no PortDialer).
const httpScript = `exec 3<>"/dev/tcp/127.0.0.1/$LABD_PORT" || exit 7
printf 'GET %s HTTP/1.0\r\nHost: localhost:%s\r\nUser-Agent: labd-grader\r\nConnection: close\r\n\r\n' "$LABD_PATH" "$LABD_PORT" >&3
cat <&3`

// httpTimeout bounds one http check's request.
const httpTimeout = 5 * time.Second

// PortDialer is implemented by sandboxes whose ports labd reaches itself
// (labd's engine sandboxes: 127.0.0.1 in the sandbox's network namespace),
// so an http check runs no program the learner could have replaced.
type PortDialer interface {
	DialPort(ctx context.Context, port int) (net.Conn, error)
}

// errNoDialer: the sandbox cannot dial its ports for the grader.
var errNoDialer = errors.New("the sandbox cannot dial its ports")

func dialPort(ctx context.Context, s Execer, port int) (net.Conn, error) {
	if d, ok := s.(PortDialer); ok {
		return d.DialPort(ctx, port)
	}
	return nil, errNoDialer
}

// errNoAnswer: nothing accepted the connection.
var errNoAnswer = errors.New("nothing answers")

// httpGet makes one GET of path on the sandbox's 127.0.0.1:port and
// returns the raw response (at most maxOutput bytes). A response cut off
// by ctx comes with ctx's error.
func httpGet(ctx context.Context, s Execer, port int, path string) ([]byte, error) {
	conn, err := dialPort(ctx, s, port)
	if errors.Is(err, errNoDialer) {
		return httpGetExec(ctx, s, port, path)
	}
	if err != nil {
		if cerr := ctxErr(ctx, err); cerr != nil {
			return nil, cerr
		}
		return nil, errNoAnswer
	}
	defer conn.Close()
	// The deadline covers ctx's end too (a stopped watcher).
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.0\r\nHost: localhost:%d\r\nUser-Agent: labd-grader\r\nConnection: close\r\n\r\n", path, port); err != nil {
		if cerr := ctxErr(ctx, err); cerr != nil {
			return nil, cerr
		}
		return nil, errNoAnswer
	}
	raw, err := io.ReadAll(io.LimitReader(conn, maxOutput))
	if err != nil {
		// A reset after some bytes: what came is the answer, as cat's.
		return raw, ctxErr(ctx, err)
	}
	return raw, nil
}

// ctxErr is ctx's error once ctx has ended, or DeadlineExceeded for an
// I/O error from the connection deadline set from ctx's (which can come
// a moment before ctx's own timer), else nil.
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return context.DeadlineExceeded
	}
	return nil
}

// httpGetExec is httpGet through httpScript in the sandbox.
func httpGetExec(ctx context.Context, s Execer, port int, path string) ([]byte, error) {
	var out capBuffer
	code, err := s.Exec(ctx, sandbox.ExecSpec{
		Cmd:    []string{"bash", "-c", httpScript},
		Env:    []string{"LABD_PORT=" + strconv.Itoa(port), "LABD_PATH=" + path},
		Stdout: &out,
	})
	raw := out.Bytes()
	switch {
	case err != nil && len(raw) == 0 && ctx.Err() != nil:
		return nil, ctx.Err()
	case err != nil && len(raw) == 0:
		return nil, err
	case code != 0 && len(raw) == 0:
		return nil, errNoAnswer
	}
	return raw, nil
}

func checkHTTP(ctx context.Context, p *probe, s *check.HTTP) (outcome, error) {
	port := s.Port
	if port <= 0 || port > 65535 {
		return failed(cannot("http check without a valid port"))
	}
	path := s.Path
	if path == "" {
		path = "/"
	}
	if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \r\n") {
		return failed(cannot("http path %q must start with / and have no spaces", path))
	}
	if s.Image != "" {
		sub := &check.Container{Image: s.Image, Publish: check.Publish(strconv.Itoa(port))}
		c, msg, err := p.matchContainers(ctx, sub)
		if err != nil {
			return failed(err)
		}
		if c == nil {
			return fail("%s", msg)
		}
	}
	if p.env.Sandbox == nil {
		return failed(cannot("http checks need a running sandbox; open the lab to start one"))
	}
	cctx, cancel := context.WithTimeout(ctx, httpTimeout)
	defer cancel()
	raw, err := httpGet(cctx, p.env.Sandbox, port, path)
	if err != nil && len(raw) == 0 {
		switch {
		case errors.Is(err, errNoAnswer):
			return fail("Nothing answers on port %d: is the app running and published there?", port)
		case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
			return fail("Port %d did not answer within %s", port, httpTimeout)
		}
		return failed(cannot("request port %d: %v", port, err))
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), nil)
	if err != nil {
		return fail("Port %d answered, but not with HTTP (%v)", port, errors.Unwrap(err))
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	_, _ = body.ReadFrom(resp.Body)
	want := cmp.Or(s.Status, 200)
	if resp.StatusCode != want {
		return fail("Port %d answered %s; expected %d %s", port, resp.Status, want, http.StatusText(want))
	}
	if text := s.Contains; text != "" && !bytes.Contains(body.Bytes(), []byte(text)) {
		got := strings.TrimSpace(body.String())
		if len(got) > 80 {
			got = got[:80] + "…"
		}
		return fail("Port %d answered %q, which does not contain %q", port, got, text)
	}
	return pass()
}
