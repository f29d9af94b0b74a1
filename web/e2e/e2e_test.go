// Package e2e_test drives a real labd binary with a real headless Chromium:
// catalogue, lab page, terminal over the websocket, Run buttons, resizing,
// reload onto the same shell, error pages, Origin refusal and shutdown.
//
// It needs root (sandboxes use namespaces), /usr/bin/chromium (or chromium
// in PATH) and populated web/static/vendor (make assets). Set LABD_E2E=0 to
// skip it; otherwise a missing prerequisite fails the test. Screenshots go
// to $LABD_ARTIFACTS (default $TMPDIR/labd-artifacts). With LABD_E2E_DATA
// (a data directory holding the sandbox image) the shell is a container.
package e2e_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/gorilla/websocket"
	"github.com/labd/labd/internal/testenv"
)

// waitTimeout bounds every single wait; generous for a loaded 2-core box.
const waitTimeout = 30 * time.Second

const labID = "hello-shell"

func TestBrowser(t *testing.T) {
	root, chromium := prerequisites(t)

	srv := startLabd(t, root)
	ctx := newBrowser(t, chromium)

	shot := func(name string) { t.Helper(); screenshot(t, ctx, srv, name) }

	// Catalogue: the good lab is a link, the broken one is marked broken.
	do(t, ctx, srv, "open catalogue",
		chromedp.EmulateViewport(1280, 800),
		chromedp.Navigate(srv.url+"/"),
		chromedp.WaitVisible(chromedp.CSS(`li.lab-card[data-lab="`+labID+`"] a`)),
	)
	catalogue := get(t, ctx, srv, "catalogue text", chromedp.Text(chromedp.CSS(`main.catalogue`)))
	for _, want := range []string{"Hello, shell", "Run your first commands", "broken-lab", "broken", "missing front matter"} {
		if !strings.Contains(catalogue, want) {
			t.Errorf("catalogue text lacks %q:\n%s", want, catalogue)
		}
	}
	shot("catalogue-1280x800")

	// Lab page: instructions, step list and a shell prompt in the terminal.
	do(t, ctx, srv, "open lab",
		chromedp.Click(chromedp.CSS(`li.lab-card[data-lab="`+labID+`"] a`)),
		chromedp.WaitVisible(chromedp.CSS(`#terminal .xterm`)),
	)
	sandboxBefore := get(t, ctx, srv, "sandbox id", chromedp.AttributeValue(chromedp.CSS(`#lab`), "data-sandbox")).Value
	waitTerminal(t, ctx, srv, "shell prompt", promptRE)
	steps := get(t, ctx, srv, "step list", chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('.step-list li')).map(li => li.textContent.trim())`))
	// Step 1 has a check, graded live on a fresh sandbox: not passed, and
	// shown as "to do" until the learner presses Check (status_test.go).
	if len(steps) != 4 || !strings.Contains(steps[0], "Say hello") || !strings.Contains(steps[0], "to do") {
		t.Errorf("step list = %q, want 4 steps starting with \"Say hello … to do\"", steps)
	}
	do(t, ctx, srv, "status bar connected", chromedp.WaitVisible(chromedp.CSS(`#term-status[data-state="connected"]`)))

	// Run button: the output differs from the typed text, so seeing it
	// proves the shell ran the command.
	do(t, ctx, srv, "click Run", chromedp.Click(chromedp.CSS(`section.step[data-step="1"] .btn-run`)))
	waitTerminal(t, ctx, srv, "Run output", regexp.MustCompile(`labd-run-42`))
	// The command wrote greeting.txt: the grader sees the workspace change
	// and the step turns green without a reload. The latency is from the
	// output appearing in the terminal to the page's status changing.
	shown := time.Now()
	do(t, ctx, srv, "step 1 done", chromedp.WaitVisible(chromedp.CSS(`.step-list li[data-step="1"][data-state="passed"]`)))
	t.Logf("workspace change to green step on the page: %v", time.Since(shown).Round(time.Millisecond))
	shot("lab-1280x800")

	// The learner's engine: a container publishing 5001 answers curl in
	// the same shell (the page shows the body, computed in the container,
	// not the typed text).
	typeCommand(t, ctx, srv, `docker run -d -p 5001:5000 busybox sh -c 'mkdir /w && echo "e2e-httpd-$((6*7))" > /w/index.html && exec httpd -f -p 5000 -h /w' >/dev/null && for i in $(seq 100); do curl -s localhost:5001 && break; sleep 0.2; done`)
	waitTerminal(t, ctx, srv, "curl localhost:5001 output", regexp.MustCompile(`e2e-httpd-42`))

	// Multi-line block: typed line by line, each ended with Enter.
	clickRun(t, ctx, srv, 4, 0)
	waitTerminal(t, ctx, srv, "multi-line output", regexp.MustCompile(`(?s)line-1.*line-2.*line-3`))

	// A burst of output (about 1.3 MB) goes through the flow control
	// (pause/resume) and the terminal ends on the last line and a prompt.
	start := time.Now()
	typeCommand(t, ctx, srv, `seq 1 200000`)
	waitTerminal(t, ctx, srv, "end of seq output", regexp.MustCompile(`(?m)^200000 *\n[^\n]*@lab-`))
	flow := get(t, ctx, srv, "flow stats", chromedp.Evaluate[map[string]int](`window.labd.stats`))
	t.Logf("seq 1 200000 shown in %v; page counters %v", time.Since(start).Round(time.Millisecond), flow)
	if flow["pauses"] != flow["resumes"] {
		t.Errorf("after the burst: %d pauses but %d resumes, want equal (output stuck paused?)", flow["pauses"], flow["resumes"])
	}

	// Dragging the divider moves the split, is remembered, and refits the
	// terminal (its size changes).
	before := stty(t, ctx, srv, "")
	divX := get(t, ctx, srv, "divider position", chromedp.Evaluate[float64](`(() => { const r = document.getElementById('divider').getBoundingClientRect(); return r.left + r.width / 2; })()`))
	do(t, ctx, srv, "drag divider", chromedp.DragAndDropXY(divX, 400, 400, 400))
	split := get(t, ctx, srv, "saved split", chromedp.Evaluate[string](`localStorage.getItem('labd.split') || ''`))
	width := get(t, ctx, srv, "instructions width", chromedp.Evaluate[float64](`document.getElementById('instructions').getBoundingClientRect().width`))
	if split == "" || width < 380 || width > 420 {
		t.Errorf("after dragging the divider to x=400: instructions %.0f px wide, saved split %q; want about 400 px and a saved split", width, split)
	}
	dragged := stty(t, ctx, srv, before)
	t.Logf("divider dragged from x=%.0f to 400: split %s, stty size %s -> %s", divX, split, before, dragged)
	before = dragged

	// Resizing the window resizes the pty.
	do(t, ctx, srv, "narrow viewport", chromedp.EmulateViewport(420, 860))
	after := stty(t, ctx, srv, before)
	t.Logf("stty size %s at 1280x800, %s at 420x860", before, after)
	stacked := get(t, ctx, srv, "layout", chromedp.Evaluate[bool](`(() => {
		const i = document.getElementById('instructions').getBoundingClientRect();
		const t = document.querySelector('.pane-terminal').getBoundingClientRect();
		return t.top >= i.bottom - 1;
	})()`))
	if !stacked {
		t.Error("at 420px wide the terminal is not below the instructions")
	}
	do(t, ctx, srv, "scroll to top", chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`))
	shot("lab-narrow-420x860-top")
	do(t, ctx, srv, "scroll to terminal", chromedp.ScrollIntoView(chromedp.CSS(`.pane-terminal`)))
	shot("lab-narrow-420x860-terminal")
	do(t, ctx, srv, "wide viewport", chromedp.EmulateViewport(1280, 800))

	// A dropped connection reconnects by itself to the same shell, and
	// the scrollback replay shows what was there.
	do(t, ctx, srv, "drop connection", chromedp.Evaluate[chromedp.Void](`window.labd.dropConnection()`))
	get(t, ctx, srv, "reconnected", chromedp.Poll[bool](`window.labd.stats.connects >= 2 && document.getElementById('term-status').dataset.state === 'connected'`))
	waitTerminal(t, ctx, srv, "replayed output after reconnect", regexp.MustCompile(`size-\d+=\d+ \d+`))
	typeCommand(t, ctx, srv, `echo "again-$((5*5))"`)
	waitTerminal(t, ctx, srv, "output after reconnect", regexp.MustCompile(`again-25`))

	// Reload: same sandbox, same shell (the variable survives).
	clickRun(t, ctx, srv, 3, 0) // export MARK=xyz
	clickRun(t, ctx, srv, 3, 1) // echo "mark=$MARK"
	waitTerminal(t, ctx, srv, "mark before reload", regexp.MustCompile(`mark=xyz`))
	do(t, ctx, srv, "reload",
		chromedp.Reload(),
		chromedp.WaitVisible(chromedp.CSS(`#term-status[data-state="connected"]`)),
	)
	sandboxAfter := get(t, ctx, srv, "sandbox id", chromedp.AttributeValue(chromedp.CSS(`#lab`), "data-sandbox")).Value
	if sandboxAfter != sandboxBefore {
		t.Errorf("sandbox after reload = %q, want %q", sandboxAfter, sandboxBefore)
	}
	typeCommand(t, ctx, srv, `echo "after=$MARK-reload"`)
	waitTerminal(t, ctx, srv, "variable after reload", regexp.MustCompile(`after=xyz-reload`))

	// Unknown lab: the 404 page with a way back.
	resp, err := http.Get(srv.url + "/labs/no-such-lab")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /labs/no-such-lab = %d, want 404", resp.StatusCode)
	}
	do(t, ctx, srv, "open unknown lab",
		chromedp.Navigate(srv.url+"/labs/no-such-lab"),
		chromedp.WaitVisible(chromedp.CSS(`main.error-page a[href="/"]`)),
	)
	notFound := get(t, ctx, srv, "404 text", chromedp.Text(chromedp.CSS(`main.error-page`)))
	if !strings.Contains(notFound, "Lab not found") {
		t.Errorf("404 page text = %q, want it to say \"Lab not found\"", notFound)
	}
	shot("not-found")

	checkForeignOrigin(t, srv)

	// Shutdown: the open terminal is told why it closed.
	do(t, ctx, srv, "back to lab",
		chromedp.Navigate(srv.url+"/labs/"+labID),
		chromedp.WaitVisible(chromedp.CSS(`#term-status[data-state="connected"]`)),
	)
	srv.stop(t)
	do(t, ctx, srv, "closed status after shutdown",
		chromedp.WaitVisible(chromedp.CSS(`#term-status[data-state="closed"] #btn-restart`)),
	)
	status := get(t, ctx, srv, "status text", chromedp.Text(chromedp.CSS(`#term-status .term-text`)))
	if !strings.Contains(strings.ToLower(status), "shut") {
		t.Errorf("status after shutdown = %q, want it to mention the shutdown", status)
	}
	shot("lab-after-shutdown")
}

// do runs browser actions, each wait bounded by waitTimeout.
func do(t *testing.T, ctx context.Context, srv *labd, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	if err := chromedp.Do(tctx, actions...); err != nil {
		t.Fatalf("%s: %v\nterminal text:\n%s\nlabd log:\n%s", what, err, terminalText(ctx), srv.log())
	}
}

// get runs one browser action that returns a value.
func get[T any](t *testing.T, ctx context.Context, srv *labd, what string, a chromedp.Action[T]) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	v, err := chromedp.Run(tctx, a)
	if err != nil {
		t.Fatalf("%s: %v\nlabd log:\n%s", what, err, srv.log())
	}
	return v
}

// promptRE matches the sandbox shell's prompt (PS1 = \u@\h:\w\$).
var promptRE = regexp.MustCompile(`@lab-[a-z0-9-]+:[^\n]*[#$]`)

// terminalJS returns the terminal's text, one line per row, from the
// screen-reader tree (screenReaderMode) or, failing that, the DOM rows.
const terminalJS = `(() => {
	const rows = (sel) => Array.from(document.querySelectorAll(sel)).map(r => r.textContent.replace(/\u00a0/g, ' ')).join('\n');
	const a = rows('.xterm-accessibility-tree > div');
	return a.trim() ? a : rows('.xterm-rows > div');
})()`

func terminalText(ctx context.Context) string {
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(tctx, chromedp.Evaluate[string](terminalJS))
	if err != nil {
		return "(cannot read terminal: " + err.Error() + ")"
	}
	return s
}

// waitTerminal polls the terminal's DOM text until re matches.
func waitTerminal(t *testing.T, ctx context.Context, srv *labd, what string, re *regexp.Regexp) string {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		text := terminalText(ctx)
		if m := re.FindString(text); m != "" {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s (%s): not in the terminal after %v\nterminal text:\n%s\nlabd log:\n%s", what, re, waitTimeout, text, srv.log())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// typeCommand types cmd and Enter into the terminal with key events.
func typeCommand(t *testing.T, ctx context.Context, srv *labd, cmd string) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	if err := chromedp.Do(tctx,
		chromedp.Focus(chromedp.CSS(`#terminal .xterm-helper-textarea`)),
		chromedp.KeyEvent(cmd+kb.Enter),
	); err != nil {
		t.Fatalf("type %q: %v\nlabd log:\n%s", cmd, err, srv.log())
	}
}

var sttyN int

// stty asks the shell for its size until it differs from not ("" accepts
// any), since the browser sends the new size asynchronously after a resize.
// Each question carries a fresh number, so an answer is never confused with
// an earlier one or with the typed command.
func stty(t *testing.T, ctx context.Context, srv *labd, not string) string {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		sttyN++
		re := regexp.MustCompile(fmt.Sprintf(`size-%d=(\d+ \d+)`, sttyN))
		typeCommand(t, ctx, srv, fmt.Sprintf(`clear; echo "size-%d=$(stty size)"`, sttyN))
		got := ""
		for got == "" && time.Now().Before(deadline) {
			if m := re.FindStringSubmatch(terminalText(ctx)); m != nil {
				got = m[1]
			} else {
				time.Sleep(200 * time.Millisecond)
			}
		}
		if got != "" && got != not {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("stty size still %q (want a change from %q) after %v\nterminal text:\n%s\nlabd log:\n%s", got, not, waitTimeout, terminalText(ctx), srv.log())
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// checkForeignOrigin opens the lab as a plain HTTP client (own learner
// cookie and sandbox) and dials its terminal: a foreign Origin is refused
// with 403, the server's own Origin is accepted.
func checkForeignOrigin(t *testing.T, srv *labd) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: waitTimeout}
	resp, err := c.Get(srv.url + "/labs/" + labID)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`data-terminal-url="([^"]+)"`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("lab page has no data-terminal-url:\n%s", body)
	}
	wsURL := "ws" + strings.TrimPrefix(srv.url, "http") + string(m[1])
	d := websocket.Dialer{Jar: jar, Subprotocols: []string{"labd.term.v1"}, HandshakeTimeout: waitTimeout}

	for _, tc := range []struct {
		origin string
		want   int
	}{
		{"http://evil.example", http.StatusForbidden},
		{srv.url, http.StatusSwitchingProtocols},
	} {
		conn, resp, err := d.Dial(wsURL, http.Header{"Origin": {tc.origin}})
		if conn != nil {
			conn.Close()
		}
		got := 0
		if resp != nil {
			got = resp.StatusCode
		}
		if got != tc.want {
			t.Errorf("dial terminal with Origin %s: status %d (err %v), want %d", tc.origin, got, err, tc.want)
		}
	}
}

// labd is a running `labd serve`.
type labd struct {
	url  string
	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	logb strings.Builder
}

func (l *labd) log() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.logb.String()
}

// stop sends SIGTERM and waits for a clean exit.
func (l *labd) stop(t *testing.T) {
	t.Helper()
	if err := l.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.done:
	case <-time.After(waitTimeout):
		t.Fatalf("labd did not exit within %v of SIGTERM\n%s", waitTimeout, l.log())
	}
	if !l.cmd.ProcessState.Success() {
		t.Errorf("labd exited with %v after SIGTERM\n%s", l.cmd.ProcessState, l.log())
	}
}

var servingRE = regexp.MustCompile(`msg="labd serving" addr=(http://\S+)`)

// startLabd builds labd and runs it on a free port over the test content.
func startLabd(t *testing.T, root string) *labd {
	t.Helper()
	return startLabdWith(t, root, filepath.Join(root, "web/testdata/content"))
}

// startLabdWith is startLabd serving the labs of content.
func startLabdWith(t *testing.T, root, content string) *labd {
	t.Helper()
	bin := buildLabd(t, root)
	// LABD_E2E_DATA names a data directory to serve instead of a fresh one:
	// one where `labd images bootstrap sandbox` ran makes the learner's
	// shell a container.
	data := os.Getenv("LABD_E2E_DATA")
	if data == "" {
		data = t.TempDir()
	}
	// busybox for `docker run` typed in the terminal (made from Debian's
	// busybox-static, no network).
	if out, err := exec.Command(bin, "images", "bootstrap", "busybox", "--data", data).CombinedOutput(); err != nil {
		t.Fatalf("labd images bootstrap busybox: %v\n%s", err, out)
	}
	// These tests drive the page, not the isolation (TestAttacks does):
	// without the sandbox image the simple shell stands in, which only a
	// trusted learner gets.
	return serveLabd(t, bin, "--addr", "127.0.0.1:0", "--content", content, "--data", data, "--idle-timeout", "10m", "--trusted-learners")
}

// buildLabd builds cmd/labd into a temporary directory.
func buildLabd(t *testing.T, root string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "labd")
	build := exec.Command("go", "build", "-tags", "seccomp", "-o", bin, "./cmd/labd")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/labd: %v\n%s", err, out)
	}
	return bin
}

// serveLabd runs `labd serve` with args until it logs its address; the
// test's cleanup stops it.
func serveLabd(t *testing.T, bin string, args ...string) *labd {
	t.Helper()
	// The tests bootstrap the images they need before serving: no
	// background bootstrap (mmdebstrap) while they run.
	cmd := exec.Command(bin, append([]string{"serve", "--bootstrap", "none"}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	l := &labd{cmd: cmd, done: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			l.mu.Lock()
			l.logb.WriteString(line + "\n")
			l.mu.Unlock()
			if m := servingRE.FindStringSubmatch(line); m != nil {
				addr <- m[1]
			}
		}
		cmd.Wait()
		close(l.done)
	}()
	t.Cleanup(func() {
		select {
		case <-l.done:
			return
		default:
		}
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-l.done:
		case <-time.After(waitTimeout):
			cmd.Process.Kill()
			<-l.done
		}
	})
	select {
	case l.url = <-addr:
	case <-l.done:
		t.Fatalf("labd exited before serving:\n%s", l.log())
	case <-time.After(waitTimeout):
		t.Fatalf("labd did not start serving within %v:\n%s", waitTimeout, l.log())
	}
	return l
}

func newBrowser(t *testing.T, chromium string) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 800),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		cancelCtx()
		cancelAlloc()
	})
	// The first Do starts the browser and binds it to ctx: no timeout here.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium %s: %v", chromium, err)
	}
	return ctx
}

// prerequisites stops the test under LABD_E2E=0 (a skip, a failure in CI)
// and fails it when something it needs is missing; it returns the module root and Chromium.
func prerequisites(t *testing.T) (root, chromium string) {
	t.Helper()
	if os.Getenv("LABD_E2E") == "0" {
		testenv.Missing(t, "LABD_E2E=0: browser tests switched off")
	}
	testenv.Root(t, "the browser test's sandboxes run in new namespaces")
	chromium = findChromium(t)
	root = moduleRoot(t)
	if _, err := os.Stat(filepath.Join(root, "web/static/vendor/xterm.js")); err != nil {
		t.Fatal("web/static/vendor is empty: run make assets (npm ci + copy of xterm.js) before this test")
	}
	return root, chromium
}

// screenshot saves the page as name.png among the artifacts.
func screenshot(t *testing.T, ctx context.Context, srv *labd, name string) {
	t.Helper()
	png := get(t, ctx, srv, "screenshot "+name, chromedp.CaptureScreenshot())
	p := filepath.Join(artifactsDir(t), name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", p)
}

func findChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium not found: install it (deploy/deps.sh test, Debian package chromium) or set LABD_E2E=0 to skip")
	return ""
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		t.Fatal("not inside the labd module")
	}
	return filepath.Dir(gomod)
}

func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("LABD_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "labd-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// clickRun clicks the i-th Run button of a step (0-based).
func clickRun(t *testing.T, ctx context.Context, srv *labd, step, i int) {
	t.Helper()
	js := fmt.Sprintf(`(() => {
		const b = document.querySelectorAll('section.step[data-step="%d"] .btn-run')[%d];
		if (!b || b.disabled) return false;
		b.scrollIntoView();
		b.click();
		return true;
	})()`, step, i)
	tctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	ok, err := chromedp.Run(tctx, chromedp.Evaluate[bool](js))
	if err != nil || !ok {
		t.Fatalf("click Run button %d of step %d: ok=%v err=%v\nlabd log:\n%s", i, step, ok, err, srv.log())
	}
}
