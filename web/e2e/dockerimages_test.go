package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/client"
)

// blockTimeout bounds one Run block (a build or the first push of the
// 150 MB python base image on a loaded 2-core machine).
const blockTimeout = 3 * time.Minute

// recorderJS wraps WebSocket before the page's scripts run: it keeps the
// arrival time (Date.now(), the same clock as the engine's event times) and
// the passed steps of every labd.status.v1 message, and the terminal's
// output stream (labd.term.v1 OUTPUT frames), so the test can wait for
// what a command printed after a given point, even once it has scrolled
// off the screen.
const recorderJS = `(() => {
	const Native = window.WebSocket;
	const rec = window.__labdRec = { status: [], term: '' };
	const dec = new TextDecoder();
	class Recorded extends Native {
		constructor(url, protocols) {
			super(url, protocols);
			const p = [].concat(protocols || []);
			if (p.includes('labd.status.v1')) {
				this.addEventListener('message', (ev) => {
					const t = Date.now();
					try {
						const m = JSON.parse(ev.data);
						if (m.type !== 'status' || !m.result) return;
						rec.status.push({ t: t, passed: (m.result.steps || []).filter((s) => s.state === 'passed').map((s) => s.index) });
					} catch (e) { /* not ours to judge */ }
				});
			} else if (p.includes('labd.term.v1')) {
				this.addEventListener('message', (ev) => {
					if (!(ev.data instanceof ArrayBuffer)) return;
					const b = new Uint8Array(ev.data);
					if (b[0] === 0x82) rec.term += dec.decode(b.subarray(1), { stream: true });
				});
			}
		}
	}
	window.WebSocket = Recorded;
})()`

// TestDockerImages is the acceptance test of the bundled Docker images lab
// (content/docker-images): a learner opens it in Chromium and completes it
// with the page's Run buttons, typing only where a learner must (the
// registry password, the edit of app.py in nano, the prune confirmation).
// Every step must turn green in order, the port 5001 preview must show
// the app before and after the change, and the time from the engine's
// event to the page's status message is logged (docs/benchmarks.md).
//
// The base images (python stand-in, sandbox image) are bootstrapped into
// the data directory when missing: LABD_E2E_LABS_DATA names one to keep
// them in (make test-e2e uses the test-labs data dir), else LABD_E2E_DATA,
// else a fresh one (about two minutes of mmdebstrap). LABD_E2E_DEBUG=1
// logs the sandbox's timeline around each step's green.
func TestDockerImages(t *testing.T) {
	began := time.Now()
	root, chromium := prerequisites(t)
	bin := buildLabd(t, root)

	data := os.Getenv("LABD_E2E_LABS_DATA")
	if data == "" {
		data = os.Getenv("LABD_E2E_DATA")
	}
	if data == "" {
		data = t.TempDir()
	}
	data, err := filepath.Abs(data)
	if err != nil {
		t.Fatal(err)
	}
	// The lab builds FROM python:3.11-slim and the learner's shell is a
	// container of the sandbox image; both are kept once made.
	bootStart := time.Now()
	if out, err := exec.Command(bin, "images", "bootstrap", "all", "--data", data).CombinedOutput(); err != nil {
		t.Fatalf("labd images bootstrap all --data %s: %v\n%s", data, err, out)
	}
	t.Logf("base images ready in %v (data %s)", time.Since(bootStart).Round(time.Millisecond), data)

	srv := serveLabd(t, bin, "--addr", "127.0.0.1:0", "--content", filepath.Join(root, "content"),
		"--data", data, "--idle-timeout", "30m", "--registry-addr", freeLoopbackAddr(t))
	ctx := newBrowser(t, chromium)
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: recorderJS}); err != nil {
		t.Fatalf("install the websocket recorder: %v", err)
	}
	lr := &learner{t: t, ctx: ctx, srv: srv}

	shot := func(name string) { t.Helper(); screenshot(t, ctx, srv, name) }

	// Open the lab from the catalogue, as a learner does.
	do(t, ctx, srv, "open catalogue",
		chromedp.EmulateViewport(1280, 900),
		chromedp.Navigate(srv.url+"/"),
		chromedp.WaitVisible(chromedp.CSS(`li.lab-card[data-lab="docker-images"] a`)),
		chromedp.Click(chromedp.CSS(`li.lab-card[data-lab="docker-images"] a`)),
		chromedp.WaitVisible(chromedp.CSS(`#terminal .xterm`)),
		chromedp.WaitVisible(chromedp.CSS(`#term-status[data-state="connected"]`)),
	)
	sid := get(t, ctx, srv, "sandbox id", chromedp.AttributeValue(chromedp.CSS(`#lab`), "data-sandbox")).Value
	titles := get(t, ctx, srv, "step list", chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('.step-list li a')).map(a => a.textContent.trim())`))
	wantTitles := []string{"Write a small web app", "Describe the image in a Dockerfile", "Build the image", "Run the image as a container",
		"Ship the image to a registry", "Deploy a change", "Look inside the layers", "Clean up"}
	if !slices.Equal(titles, wantTitles) {
		t.Fatalf("step list = %q, want %q", titles, wantTitles)
	}
	lr.waitPrompt()
	// The first status message: a fresh sandbox has no step done.
	get(t, ctx, srv, "first status message", chromedp.Poll[bool](`window.__labdRec.status.length > 0`))
	lr.assertPassedUpTo(0)

	// The engine's events, read like the grader does (on the grader's
	// socket, so not in the learner's command record).
	sandboxDir := filepath.Join(data, "sandboxes", sid)
	evlog := watchEngine(t, filepath.Join(sandboxDir, "grader.sock"))
	files := &fileTimes{dir: filepath.Join(sandboxDir, "workspace")}
	shot("docker-images-start")

	// 1. The app: written by the heredoc, then tried with the sandbox's
	// own Python (the optional block).
	lr.run(1, "cat > app.py", 1, nil)
	lr.stepDone(1)
	files.note("app.py")
	lr.run(1, "python3 app.py &", 3, regexp.MustCompile(`(?m)^hello world!`))

	// 2. The Dockerfile.
	lr.run(2, "cat > Dockerfile", 1, nil)
	lr.stepDone(2)
	files.note("Dockerfile")

	// 3. Build and list.
	lr.run(3, "docker image build -t python-hello-world .", 1, regexp.MustCompile(`Successfully tagged python-hello-world:latest`))
	lr.run(3, "docker image ls", 1, regexp.MustCompile(`python-hello-world +latest`))
	lr.stepDone(3)
	shot("docker-images-built")

	// 4. Run it, open port 5001 from the page, curl it, read the log.
	lr.run(4, "docker run -p 5001:5000 -d python-hello-world", 1, regexp.MustCompile(`(?m)^[0-9a-f]{64}\s*$`))
	lr.run(4, "docker container ls", 1, regexp.MustCompile(`python-hello-world`))
	preview, previewURL := lr.openPreview()
	lr.waitPreview(preview, previewURL, "hello world!")
	lr.run(4, "curl -s http://localhost:5001/", 1, regexp.MustCompile(`(?m)^hello world!`))
	lr.run(4, "docker container logs $(docker container ls -lq)", 1, regexp.MustCompile(`"GET / HTTP/1.1" 200`))
	lr.stepDone(4)

	// 5. Log in with the password the page shows, tag, push.
	user := lr.run(5, "echo $LABD_USER", 1, regexp.MustCompile(`(?m)^learner-[0-9a-f]+`))
	user = strings.TrimSpace(regexp.MustCompile(`(?m)^learner-[0-9a-f]+`).FindString(user))
	shown := get(t, ctx, srv, "registry user", chromedp.Text(chromedp.CSS(`#registry .registry-user`)))
	if shown != user {
		t.Errorf("$LABD_USER = %q in the terminal, the page shows %q", user, shown)
	}
	do(t, ctx, srv, "show the password", chromedp.Click(chromedp.CSS(`#registry .registry-secret summary`)))
	password := get(t, ctx, srv, "registry password", chromedp.Text(chromedp.CSS(`#registry .registry-password`)))
	if password == "" {
		t.Fatal("the Registry box shows no password")
	}
	lr.runInteractive(5, `docker login -u "$LABD_USER"`, regexp.MustCompile(`Password:`), password, regexp.MustCompile(`Login Succeeded`))
	lr.run(5, `docker tag python-hello-world "$LABD_USER/python-hello-world"`, 2, regexp.MustCompile(user+`/python-hello-world +latest`))
	lr.run(5, `docker push "$LABD_USER/python-hello-world"`, 1, regexp.MustCompile(`latest: digest: sha256:[0-9a-f]{64}`))
	lr.stepDone(5)

	// 6. The change, typed in nano as the lab suggests; rebuild from the
	// cache; replace the container; push again.
	lr.nanoReplace("app.py", "hello world!", "Hello Beautiful World!")
	files.note("app.py")
	lr.typeAndWait("cat app.py", 1, regexp.MustCompile(`return "Hello Beautiful World!"`))
	build := lr.run(6, "docker image build -t python-hello-world .", 1, regexp.MustCompile(`Successfully tagged python-hello-world:latest`))
	if n := strings.Count(build, "Using cache"); n < 2 {
		t.Errorf("the rebuild after changing app.py used the cache for %d steps, want the RUN and CMD steps (2):\n%s", n, build)
	}
	lr.run(6, "docker container stop $(docker container ls -q)", 2, regexp.MustCompile(`(?m)^[0-9a-f]{64}\s*$`))
	lr.waitPreview(preview, previewURL, "Hello Beautiful World!")
	push := lr.run(6, `docker tag python-hello-world "$LABD_USER/python-hello-world"`, 2, regexp.MustCompile(`latest: digest: sha256:[0-9a-f]{64}`))
	if !strings.Contains(push, "Layer already exists") {
		t.Errorf("the second push sent every layer again, want \"Layer already exists\":\n%s", push)
	}
	lr.stepDone(6)

	// 7. Layers: history, copy-on-write in a container, a second app.
	lr.run(7, "docker image history python-hello-world", 1, regexp.MustCompile(`pip install flask`))
	lr.run(7, "docker container exec web sh -c", 2, regexp.MustCompile(`(?m)^written in the container`))
	lr.run(7, "docker container diff web", 1, regexp.MustCompile(`(?m)^A /notes.txt`))
	lr.run(7, "mkdir -p goodbye", 4, regexp.MustCompile(`Successfully tagged python-goodbye-world:latest`))
	files.note("goodbye/app.py")
	lr.run(7, "docker image history python-goodbye-world", 2, nil)
	lr.stepDone(7)

	// 8. Clean up, answering prune's question.
	lr.run(8, "docker container stop $(docker container ls -q)", 1, nil)
	lr.runInteractive(8, "docker system prune", regexp.MustCompile(`\[y/N\]`), "y", regexp.MustCompile(`Total reclaimed space`))
	lr.stepDone(8)
	progress := get(t, ctx, srv, "progress", chromedp.Text(chromedp.CSS(`#lab-progress`)))
	t.Logf("progress line: %q", progress)
	shot("docker-images-done")

	// Every step turned green in lab order (the page's own record).
	first := lr.firstPassed()
	for i := 2; i <= 8; i++ {
		if first[i] < first[i-1] {
			t.Errorf("step %d turned green at %d, before step %d at %d (ms since epoch)", i, first[i], i-1, first[i-1])
		}
	}
	reportLatency(t, first, evlog.snapshot(), records(t, filepath.Join(sandboxDir, "grader.sock")), files.list())
	t.Logf("the whole test took %v", time.Since(began).Round(time.Second))
}

// learner drives the lab page.
type learner struct {
	t   *testing.T
	ctx context.Context
	srv *labd
}

// ansiRE matches the terminal control sequences in the output stream.
var ansiRE = regexp.MustCompile(`\x1b\[[0-9;?<=>]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()*+][0-9A-Za-z]|\x1b[=>78DEHMc]|\r|\x07`)

// promptsRE counts shell prompts (PS1 = \u@\h:\w\$), endPromptRE says the
// shell waits for a command.
var (
	promptsRE   = regexp.MustCompile(`[a-z]+@lab-[a-z0-9-]+:[^\n#$]*[#$] `)
	endPromptRE = regexp.MustCompile(`[a-z]+@lab-[a-z0-9-]+:[^\n#$]*[#$] $`)
)

// output returns the terminal's output since offset off (UTF-16 units, as
// JS counts), without control sequences, and the current length.
func (l *learner) output(off int) (string, int) {
	l.t.Helper()
	tctx, cancel := context.WithTimeout(l.ctx, waitTimeout)
	defer cancel()
	v, err := chromedp.Run(tctx, chromedp.Evaluate[[]any](fmt.Sprintf(`[window.__labdRec.term.slice(%d), window.__labdRec.term.length]`, off)))
	if err != nil || len(v) != 2 {
		l.t.Fatalf("read the terminal output: %v\nlabd log:\n%s", err, l.srv.log())
	}
	s, _ := v[0].(string)
	n, _ := v[1].(float64)
	return ansiRE.ReplaceAllString(s, ""), int(n)
}

// waitOutput polls the output after off until done says so.
func (l *learner) waitOutput(what string, off int, timeout time.Duration, done func(string) bool) string {
	l.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out, _ := l.output(off)
		if done(out) {
			return out
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("%s: not done after %v\noutput since:\n%s\nscreen:\n%s\nlabd log:\n%s", what, timeout, out, terminalText(l.ctx), l.srv.log())
		}
		time.Sleep(150 * time.Millisecond)
	}
}

// waitPrompt waits until the shell shows its prompt and nothing after it,
// on the screen and in the output stream: a Run button clicked then types
// into the shell, not into a running command.
func (l *learner) waitPrompt() int {
	l.t.Helper()
	waitTerminal(l.t, l.ctx, l.srv, "shell prompt", promptRE)
	var n int
	l.waitOutput("shell prompt", 0, waitTimeout, func(out string) bool {
		_, n = l.output(0)
		return endPromptRE.MatchString(out)
	})
	return n
}

// run clicks the Run button of step's code block that starts with prefix,
// then waits until the shell has shown commands more prompts, ends on a
// prompt and (when want is set) printed want. It returns the output.
func (l *learner) run(step int, prefix string, commands int, want *regexp.Regexp) string {
	l.t.Helper()
	off := l.waitPrompt()
	l.clickRun(step, prefix)
	return l.waitCommands(fmt.Sprintf("step %d: %q", step, prefix), off, commands, want)
}

// typeAndWait types a command line like a learner and waits as run does.
func (l *learner) typeAndWait(cmd string, commands int, want *regexp.Regexp) string {
	l.t.Helper()
	off := l.waitPrompt()
	typeCommand(l.t, l.ctx, l.srv, cmd)
	return l.waitCommands(fmt.Sprintf("typed %q", cmd), off, commands, want)
}

func (l *learner) waitCommands(what string, off, commands int, want *regexp.Regexp) string {
	l.t.Helper()
	return l.waitOutput(what, off, blockTimeout, func(out string) bool {
		return len(promptsRE.FindAllString(out, -1)) >= commands && endPromptRE.MatchString(out) &&
			(want == nil || want.MatchString(out))
	})
}

// runInteractive clicks a Run button whose command asks a question, waits
// for the question, types the answer and Enter, and waits for done.
func (l *learner) runInteractive(step int, prefix string, question *regexp.Regexp, answer string, done *regexp.Regexp) string {
	l.t.Helper()
	off := l.waitPrompt()
	l.clickRun(step, prefix)
	what := fmt.Sprintf("step %d: %q", step, prefix)
	l.waitOutput(what+" asks", off, waitTimeout, question.MatchString)
	typeCommand(l.t, l.ctx, l.srv, answer)
	return l.waitCommands(what, off, 1, done)
}

// clickRun clicks the Run button of the first code block of the step whose
// text starts with prefix.
func (l *learner) clickRun(step int, prefix string) {
	l.t.Helper()
	js := fmt.Sprintf(`(() => {
		const blocks = document.querySelectorAll('section.step[data-step="%d"] .codeblock');
		for (const b of blocks) {
			const code = b.querySelector('code');
			const run = b.querySelector('.btn-run');
			if (!code || !run || !code.textContent.startsWith(%q)) continue;
			if (run.disabled) return 'disabled';
			run.scrollIntoView({ block: 'center' });
			run.click();
			return 'clicked';
		}
		return 'no such block';
	})()`, step, prefix)
	got := get(l.t, l.ctx, l.srv, "click Run", chromedp.Evaluate[string](js))
	if got != "clicked" {
		l.t.Fatalf("Run button of step %d's block %q: %s", step, prefix, got)
	}
}

// nanoReplace edits file in nano like a learner: Ctrl+\ (replace), old,
// new, Y, then Ctrl+O Enter to save and Ctrl+X to leave.
func (l *learner) nanoReplace(file, old, new string) {
	l.t.Helper()
	l.waitPrompt()
	typeCommand(l.t, l.ctx, l.srv, "nano "+file)
	screen := func(what string, re *regexp.Regexp) { l.t.Helper(); waitTerminal(l.t, l.ctx, l.srv, "nano: "+what, re) }
	key := func(k string, mods ...chromedp.Modifier) {
		l.t.Helper()
		do(l.t, l.ctx, l.srv, "nano key "+k,
			chromedp.Focus(chromedp.CSS(`#terminal .xterm-helper-textarea`)),
			chromedp.KeyEvent(k, chromedp.KeyModifiers(mods...)))
	}
	screen("editor open", regexp.MustCompile(`GNU nano`))
	screen("file shown", regexp.MustCompile(regexp.QuoteMeta(old)))
	key(`\`, chromedp.ModifierCtrl)
	screen("search prompt", regexp.MustCompile(`Search \(to replace\)`))
	key(old + kb.Enter)
	screen("replace prompt", regexp.MustCompile(`Replace with`))
	key(new + kb.Enter)
	screen("confirmation", regexp.MustCompile(`Replace this instance\?`))
	key("y")
	screen("replaced", regexp.MustCompile(`Replaced 1 occurrence`))
	key("o", chromedp.ModifierCtrl)
	screen("file name prompt", regexp.MustCompile(`File Name to Write`))
	key(kb.Enter)
	screen("written", regexp.MustCompile(`Wrote \d+ lines`))
	key("x", chromedp.ModifierCtrl)
	l.waitPrompt()
}

// stepDone waits until the step list marks step as done, then checks that
// no later step is.
func (l *learner) stepDone(step int) {
	l.t.Helper()
	tctx, cancel := context.WithTimeout(l.ctx, time.Minute)
	defer cancel()
	sel := fmt.Sprintf(`.step-list li[data-step="%d"][data-state="passed"]`, step)
	if err := chromedp.Do(tctx, chromedp.WaitVisible(chromedp.CSS(sel))); err != nil {
		st := get(l.t, l.ctx, l.srv, "step status", chromedp.Evaluate[string](fmt.Sprintf(`(document.querySelector('.step-status[data-step="%d"]') || {}).innerText || ''`, step)))
		l.t.Fatalf("step %d did not turn green: %v\nits status box:\n%s\nterminal:\n%s\nlabd log:\n%s", step, err, st, terminalText(l.ctx), l.srv.log())
	}
	l.assertPassedUpTo(step)
}

// assertPassedUpTo checks that the step list marks steps 1..n done and no
// later one.
func (l *learner) assertPassedUpTo(n int) {
	l.t.Helper()
	states := get(l.t, l.ctx, l.srv, "step states", chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('.step-list li')).map(li => li.dataset.state)`))
	for i, s := range states {
		if i < n && s != "passed" {
			l.t.Errorf("after step %d: step %d is %q, want passed", n, i+1, s)
		}
		if i >= n && s == "passed" {
			l.t.Errorf("after step %d: step %d is already passed (states %q)", n, i+1, states)
		}
	}
}

// firstPassed returns, per step, when (ms since epoch) the page first got
// a status message with that step passed.
func (l *learner) firstPassed() map[int]int64 {
	l.t.Helper()
	type msg struct {
		T      int64 `json:"t"`
		Passed []int `json:"passed"`
	}
	msgs := get(l.t, l.ctx, l.srv, "status messages", chromedp.Evaluate[[]msg](`window.__labdRec.status`))
	first := map[int]int64{}
	for _, m := range msgs {
		for _, i := range m.Passed {
			if _, ok := first[i]; !ok {
				first[i] = m.T
			}
		}
	}
	return first
}

// openPreview clicks "Open port 5001", checks that the tab it opens lands
// on the path-based preview (/sandboxes/{sid}/…/5001/… on labd's own
// address), and returns a tab of the same browser (same learner cookie) on
// that address, and the address. (The test reads its own tab: attaching to
// the popup hangs in this chromedp.)
func (l *learner) openPreview() (context.Context, string) {
	l.t.Helper()
	sid := get(l.t, l.ctx, l.srv, "sandbox id", chromedp.AttributeValue(chromedp.CSS(`#lab`), "data-sandbox")).Value
	prefix := l.srv.url + "/sandboxes/" + sid + "/"
	do(l.t, l.ctx, l.srv, "click Open port 5001", chromedp.Click(chromedp.CSS(`#ports a.port-link[data-port="5001"]`)))
	var urls []string
	deadline := time.Now().Add(waitTimeout)
	for {
		infos, err := chromedp.Targets(l.ctx)
		if err != nil {
			l.t.Fatalf("list the browser's tabs: %v", err)
		}
		urls = urls[:0]
		for _, info := range infos {
			if info.Type != "page" {
				continue
			}
			urls = append(urls, info.URL)
			if strings.HasPrefix(info.URL, prefix) && strings.Contains(info.URL, "/5001/") {
				if _, err := chromedp.CallBrowser(l.ctx, target.CloseTarget, target.CloseTargetParams{TargetID: info.TargetID}); err != nil {
					l.t.Logf("close the preview tab: %v", err)
				}
				tab, cancel := chromedp.NewContext(l.ctx)
				l.t.Cleanup(cancel)
				if _, err := chromedp.Call(tab, page.Navigate, page.NavigateParams{URL: info.URL}); err != nil {
					l.t.Fatalf("open the preview in a tab: %v", err)
				}
				return tab, info.URL
			}
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("clicking Open port 5001 opened no tab on %s…/5001/; tabs: %q\nlabd log:\n%s", prefix, urls, l.srv.log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitPreview reloads the preview tab until its page shows want (the app
// needs a moment to start after docker run). It uses the protocol's own
// Runtime.evaluate and Page.reload: chromedp's Evaluate and Navigate wait
// for page state that the preview's sandboxed (opaque-origin) documents
// never report.
func (l *learner) waitPreview(tab context.Context, url, want string) {
	l.t.Helper()
	deadline := time.Now().Add(time.Minute)
	byValue := true
	for {
		tctx, cancel := context.WithTimeout(tab, 10*time.Second)
		body := ""
		res, err := chromedp.Call(tctx, runtime.Evaluate, runtime.EvaluateParams{
			Expression: `document.body ? document.body.innerText : ''`, ReturnByValue: &byValue})
		if err == nil && res.Result != nil {
			err = json.Unmarshal(res.Result.Value, &body)
		}
		if err == nil && strings.TrimSpace(body) == want {
			cancel()
			l.t.Logf("preview %s shows %q", url, want)
			return
		}
		if time.Now().After(deadline) {
			cancel()
			l.t.Fatalf("the port 5001 preview shows %q (err %v), want %q\nlabd log:\n%s", body, err, want, l.srv.log())
		}
		time.Sleep(500 * time.Millisecond)
		// A reload, as the lab tells the learner.
		if _, err := chromedp.Call(tctx, page.Reload, page.ReloadParams{}); err != nil {
			l.t.Logf("reload the preview: %v", err)
		}
		cancel()
		time.Sleep(300 * time.Millisecond)
	}
}

// engineLog keeps the events of a sandbox's engine.
type engineLog struct {
	mu     sync.Mutex
	events []events.Message
}

func (e *engineLog) snapshot() []events.Message {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.events)
}

// engineClient talks to a sandbox's engine as the grader does: on its
// grader socket, so its calls are not the learner's commands.
func engineClient(t *testing.T, sock string) *client.Client {
	t.Helper()
	c, err := client.NewClientWithOpts(client.WithHost("unix://"+sock), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatalf("docker client for %s: %v", sock, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// watchEngine follows the engine's /events until the test ends.
func watchEngine(t *testing.T, sock string) *engineLog {
	t.Helper()
	c := engineClient(t, sock)
	ctx, cancel := context.WithCancel(context.Background())
	log := &engineLog{}
	msgs, errs := c.Events(ctx, events.ListOptions{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case m := <-msgs:
				log.mu.Lock()
				log.events = append(log.events, m)
				log.mu.Unlock()
			case <-errs:
				return
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return log
}

// engineRecords is the part of labd's GET /labd/v1/records the latency
// report uses (docs/engine.md).
type engineRecords struct {
	Calls []struct {
		Time   time.Time `json:"time"`
		Method string    `json:"method"`
		Path   string    `json:"path"`
	} `json:"calls"`
	Builds []struct {
		End  time.Time `json:"end"`
		Tags []string  `json:"tags"`
	} `json:"builds"`
}

func records(t *testing.T, sock string) engineRecords {
	t.Helper()
	c := engineClient(t, sock)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker/labd/v1/records", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.HTTPClient().Do(req)
	if err != nil {
		t.Fatalf("engine records: %v", err)
	}
	defer resp.Body.Close()
	var r engineRecords
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatalf("engine records: %v", err)
	}
	return r
}

// fileTimes notes the modification times of workspace files as the lab
// writes them (a later write replaces the file's earlier time otherwise).
type fileTimes struct {
	dir  string
	seen []source
}

func (f *fileTimes) note(name string) {
	if st, err := os.Stat(filepath.Join(f.dir, name)); err == nil {
		f.seen = append(f.seen, source{st.ModTime(), "write " + name})
	}
}

func (f *fileTimes) list() []source { return f.seen }

// source is something that happened in the sandbox and may make a check
// pass.
type source struct {
	at   time.Time
	what string
}

// reportLatency logs, for every step, the time from the last thing that
// happened before the page got the status message turning it green (an
// engine event, a learner's API call whose only trace is the engine's
// record, the end of a build, a workspace file write) to that message.
func reportLatency(t *testing.T, first map[int]int64, evs []events.Message, rec engineRecords, files []source) {
	t.Helper()
	var srcs []source
	for _, e := range evs {
		srcs = append(srcs, source{time.Unix(0, e.TimeNano), fmt.Sprintf("event %s %s", e.Type, e.Action)})
	}
	// The lab's script check runs `docker image inspect` inside the
	// sandbox, and those calls are recorded like the learner's: they are
	// the grader's doing, not something the learner did, so they are left
	// out (the learner never inspects an image in this lab).
	inspects := 0
	var firstInspect, lastInspect time.Time
	for _, c := range rec.Calls {
		if c.Method == http.MethodGet && c.Path != "/images/json" && strings.HasPrefix(c.Path, "/images/") && strings.HasSuffix(c.Path, "/json") {
			if inspects == 0 {
				firstInspect = c.Time
			}
			inspects++
			lastInspect = c.Time
			continue
		}
		srcs = append(srcs, source{c.Time, "call " + c.Method + " " + c.Path})
	}
	t.Logf("sources: %d engine events, %d learner calls, %d builds, %d file writes; %d image inspect calls by the script check left out (%s to %s)",
		len(evs), len(rec.Calls)-inspects, len(rec.Builds), len(files), inspects, firstInspect.Format(time.StampMilli), lastInspect.Format(time.StampMilli))
	for _, b := range rec.Builds {
		if !b.End.IsZero() {
			srcs = append(srcs, source{b.End, "build end " + strings.Join(b.Tags, ",")})
		}
	}
	srcs = append(srcs, files...)
	sort.Slice(srcs, func(i, j int) bool { return srcs[i].at.Before(srcs[j].at) })

	var lat []time.Duration
	var engineLat []time.Duration
	for step := 1; step <= 8; step++ {
		ms, ok := first[step]
		if !ok {
			t.Errorf("no status message marked step %d passed", step)
			continue
		}
		arrived := time.UnixMilli(ms)
		var last *source
		for i := range srcs {
			if !srcs[i].at.After(arrived) {
				last = &srcs[i]
			}
		}
		if last == nil {
			t.Logf("step %d: green at %s, nothing recorded before it", step, arrived.Format(time.StampMilli))
			continue
		}
		if os.Getenv("LABD_E2E_DEBUG") != "" { // the timeline around the step's green
			for i := range srcs {
				if srcs[i].at.After(arrived.Add(-3*time.Second)) && srcs[i].at.Before(arrived.Add(2*time.Second)) {
					t.Logf("  step %d: %+v %s", step, srcs[i].at.Sub(arrived), srcs[i].what)
				}
			}
		}
		d := arrived.Sub(last.at)
		lat = append(lat, d)
		if strings.HasPrefix(last.what, "event ") {
			engineLat = append(engineLat, d)
		}
		t.Logf("latency step %d: %s -> page %v", step, last.what, d.Round(time.Millisecond))
	}
	if len(lat) > 0 {
		t.Logf("event to page over %d steps: p50 %v, max %v; of which engine /events triggers (%d): p50 %v, max %v",
			len(lat), pct(lat, 50), pct(lat, 100), len(engineLat), pct(engineLat, 50), pct(engineLat, 100))
	}
}

// pct returns the p-th percentile (nearest rank) of ds.
func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (p*len(s)+99)/100 - 1
	return s[max(0, min(i, len(s)-1))].Round(time.Millisecond)
}

// freeLoopbackAddr returns a loopback address with a port free right now
// (for the registry, whose address labd must know before it listens).
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	// Below the kernel's ephemeral range (ip_local_port_range, 32768 and
	// up by default): a port from :0 is free when closed, but the next
	// outgoing connection of any process may take it before labd listens
	// on it (a restart of labd failed so: "address already in use").
	// Ports here are only ever taken by a listener that asks for them.
	for range 200 {
		port := 20000 + rand.IntN(12000)
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		ln.Close()
		return ln.Addr().String()
	}
	t.Fatal("no free loopback port in 20000-31999")
	return ""
}
