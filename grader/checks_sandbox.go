package grader

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

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

// scriptPrelude runs before a script check's own lines. It gives the
// script a docker CLI config of the grader's own whose HttpHeaders mark
// every engine request X-Labd-Grader: 1, so `docker image history` in a
// check is never recorded as the learner's command (a command check would
// pass without the learner running it) and never wakes the grader's wait
// for the learner's commands (a check that re-ran itself once a second).
// The directory name is random and mkdir fails on an existing one, so a
// file the learner prepared cannot take its place; the learner is root in
// the sandbox, though, and could still swap the docker binary: script
// checks trust the sandbox (docs/authoring.md).
const scriptPrelude = `mkdir -m 0700 "$DOCKER_CONFIG" 2>/dev/null &&
printf '{"HttpHeaders":{"X-Labd-Grader":"1"}}\n' >"$DOCKER_CONFIG/config.json" ||
{ echo "labd-grader: cannot prepare the check's docker config in $DOCKER_CONFIG"; exit 125; }
trap 'rm -rf "$DOCKER_CONFIG"' EXIT
`

// scriptSetupFailed is the prelude's exit status when it cannot run.
const scriptSetupFailed = 125

// scriptDockerConfig returns a fresh, unguessable DOCKER_CONFIG path in the
// sandbox's /tmp for one script run.
func scriptDockerConfig() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "/tmp/.labd-grader-" + hex.EncodeToString(b[:])
}

func checkScript(ctx context.Context, p *probe, s spec) (outcome, error) {
	if p.env.Sandbox == nil {
		return failed(cannot("script checks need a running sandbox; open the lab to start one"))
	}
	timeout := s.duration("timeout", DefaultScriptTimeout)
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var out capBuffer
	code, err := p.env.Sandbox.Exec(cctx, sandbox.ExecSpec{
		Cmd:    []string{"bash", "-c", scriptPrelude + s.str("run")},
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
	if code == scriptSetupFailed {
		if msg, ok := bytes.CutPrefix(out.Bytes(), []byte("labd-grader: ")); ok {
			return failed(cannot("%s", strings.TrimSpace(string(msg))))
		}
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
// sandbox, where published ports listen, and prints the raw response.
const httpScript = `exec 3<>"/dev/tcp/127.0.0.1/$LABD_PORT" || exit 7
printf 'GET %s HTTP/1.0\r\nHost: localhost:%s\r\nUser-Agent: labd-grader\r\nConnection: close\r\n\r\n' "$LABD_PATH" "$LABD_PORT" >&3
cat <&3`

// httpTimeout bounds one http check's request.
const httpTimeout = 5 * time.Second

func checkHTTP(ctx context.Context, p *probe, s spec) (outcome, error) {
	port := s.integer("port", 0)
	if port <= 0 || port > 65535 {
		return failed(cannot("http check without a valid port"))
	}
	path := s.str("path")
	if path == "" {
		path = "/"
	}
	if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \r\n") {
		return failed(cannot("http path %q must start with / and have no spaces", path))
	}
	if s.str("image") != "" {
		sub := spec{"image": s.str("image"), "publish": strconv.Itoa(port)}
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
	var out capBuffer
	code, err := p.env.Sandbox.Exec(cctx, sandbox.ExecSpec{
		Cmd:    []string{"bash", "-c", httpScript},
		Env:    []string{"LABD_PORT=" + strconv.Itoa(port), "LABD_PATH=" + path},
		Stdout: &out,
	})
	raw := out.Bytes()
	if err != nil && len(raw) == 0 {
		if cctx.Err() != nil && ctx.Err() == nil {
			return fail("Port %d did not answer within %s", port, httpTimeout)
		}
		return failed(cannot("request port %d: %v", port, err))
	}
	if code != 0 && len(raw) == 0 {
		return fail("Nothing answers on port %d: is the app running and published there?", port)
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), nil)
	if err != nil {
		return fail("Port %d answered, but not with HTTP (%v)", port, errors.Unwrap(err))
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	_, _ = body.ReadFrom(resp.Body)
	want := s.integer("status", 200)
	if resp.StatusCode != want {
		return fail("Port %d answered %s; expected %d %s", port, resp.Status, want, http.StatusText(want))
	}
	if text := s.str("contains"); text != "" && !bytes.Contains(body.Bytes(), []byte(text)) {
		got := strings.TrimSpace(body.String())
		if len(got) > 80 {
			got = got[:80] + "…"
		}
		return fail("Port %d answered %q, which does not contain %q", port, got, text)
	}
	return pass()
}
