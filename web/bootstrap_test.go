package web

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/labd/labd/internal/testenv"
	"github.com/labd/labd/sandbox"
	"github.com/labd/labd/sandbox/nsbox"
)

// fixedImages is a BaseImages whose state the test sets (cmd/labd's
// serveImages is tested with real bootstraps in cmd/labd).
type fixedImages struct {
	mu     sync.Mutex
	st     BootstrapStatus
	have   []string
	simple map[string]bool
}

func (f *fixedImages) BootstrapStatus() BootstrapStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.st
	st.Images = slices.Clone(st.Images)
	return st
}

func (f *fixedImages) HasImage(ref string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, h := range f.have {
		if normalRef(h) == normalRef(ref) {
			return true
		}
	}
	return false
}

func (f *fixedImages) SimpleShell(sid string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.simple[sid]
}

// ShellReady: the shell image is among those it has.
func (f *fixedImages) ShellReady() bool { return f.HasImage("labd/sandbox:latest") }

func (f *fixedImages) set(fn func(f *fixedImages)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// imagesContent is a catalogue with one lab that needs the python
// stand-in and an image no bootstrap makes.
func imagesContent(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, "flask")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	lab := "---\ntitle: Flask\nsummary: S\nduration: 5 min\nlevel: beginner\nimages: [python:3.11-slim, nginx:1.25]\n---\nIntro.\n\n## Build\n\nText.\n"
	if err := os.WriteFile(filepath.Join(dir, "lab.md"), []byte(lab), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

var regexpSandbox = regexp.MustCompile(`data-sandbox="([^"]+)"`)

func threeImages(python, sandbox BootstrapImage) BootstrapStatus {
	python.Name, python.Tags = "python", []string{"python:3.11-slim", "python:3"}
	sandbox.Name, sandbox.Tags, sandbox.Shell = "sandbox", []string{"labd/sandbox:latest"}, true
	return BootstrapStatus{Images: []BootstrapImage{
		{Name: "busybox", Tags: []string{"busybox:latest"}, State: ImageReady},
		python,
		sandbox,
	}}
}

func bannerJSON(t *testing.T, c *http.Client, url string) banner {
	t.Helper()
	resp, body := get(t, c, url)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("GET %s: %d %v\n%s", url, resp.StatusCode, resp.Header, body)
	}
	var b banner
	if err := json.Unmarshal([]byte(body), &b); err != nil {
		t.Fatalf("GET %s: %v\n%s", url, err, body)
	}
	return b
}

func TestBootstrapBanner(t *testing.T) {
	imgs := &fixedImages{simple: map[string]bool{}}
	s := newTestServerIdle(t, imagesContent(t), 0, 0, func(o *Options) { o.BaseImages = imgs })
	c := s.client(t)

	// Python being built, the sandbox image waiting.
	imgs.set(func(f *fixedImages) {
		f.st = threeImages(BootstrapImage{State: ImageBuilding, Phase: "downloading packages with apt"}, BootstrapImage{State: ImageWaiting})
		f.have = []string{"busybox:latest"}
	})
	_, page := get(t, c, s.URL+"/")
	for _, want := range []string{
		`id="bootstrap-banner" data-state="preparing" data-url="/bootstrap/status" data-poll="true"`,
		`Preparing base images: python (2/3)… <span class="bootstrap-phase">downloading packages with apt</span>`,
		`src="/static/bootstrap.js?v=`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("catalogue lacks %q:\n%s", want, page)
		}
	}

	// The lab page says which of its images are not there, and why.
	_, page = get(t, c, s.URL+"/labs/flask")
	sid := regexpSandbox.FindStringSubmatch(page)
	if sid == nil {
		t.Fatalf("no sandbox in the lab page:\n%s", page)
	}
	for _, want := range []string{
		"This lab needs the image python:3.11-slim, which is still being prepared (downloading packages with apt). You can read ahead and use the terminal already",
		"This lab needs the image nginx:1.25, which this server does not have",
		`data-url="/bootstrap/status?lab=flask&amp;sandbox=` + sid[1] + `"`,
	} {
		if !strings.Contains(html.UnescapeString(page), html.UnescapeString(want)) {
			t.Errorf("lab page lacks %q", want)
		}
	}
	// The terminal is still there: the learner can work meanwhile.
	if !strings.Contains(page, `data-terminal-url="/sandboxes/`+sid[1]+`/terminal"`) {
		t.Error("lab page lost its terminal while images are prepared")
	}

	// The status endpoint follows: python done, the sandbox image being
	// made; this learner's shell started as the simple one.
	imgs.set(func(f *fixedImages) {
		f.st = threeImages(BootstrapImage{State: ImageReady}, BootstrapImage{State: ImageBuilding, Phase: "installing remaining packages inside the chroot"})
		f.have = []string{"busybox:latest", "python:3.11-slim", "python:3"}
		f.simple[sid[1]] = true
		f.st.SimpleShells = 1
	})
	labURL := s.URL + "/bootstrap/status?lab=flask&sandbox=" + sid[1]
	b := bannerJSON(t, c, labURL)
	if b.State != "preparing" || !b.Poll || b.Message != "Preparing base images: sandbox (3/3)…" || b.Phase != "installing remaining packages inside the chroot" {
		t.Errorf("status = %+v", b)
	}
	if len(b.Notes) != 2 || !strings.Contains(b.Notes[0], "Your terminal is the simple shell for now") || !strings.Contains(b.Notes[1], "nginx:1.25") {
		t.Errorf("notes = %q", b.Notes)
	}
	// Another learner asking about that sandbox learns nothing of it.
	other := bannerJSON(t, s.client(t), labURL)
	for _, n := range other.Notes {
		if strings.Contains(n, "simple shell") {
			t.Errorf("another learner sees the sandbox's note: %q", n)
		}
	}

	// Done: the simple shell is told how to get the full one; other
	// pages say terminals opened before are the simple shell.
	imgs.set(func(f *fixedImages) {
		f.st = threeImages(BootstrapImage{State: ImageReady}, BootstrapImage{State: ImageReady})
		f.st.SimpleShells = 1
	})
	b = bannerJSON(t, c, labURL)
	if b.State != "done" || b.Poll || b.Message != "" || len(b.Notes) != 2 || !strings.Contains(b.Notes[0], "type exit, then Start a new shell") {
		t.Errorf("done, lab page: %+v", b)
	}
	b = bannerJSON(t, c, s.URL+"/bootstrap/status")
	if b.Poll || len(b.Notes) != 1 || !strings.Contains(b.Notes[0], "terminals opened before now run the simple shell") {
		t.Errorf("done, catalogue: %+v", b)
	}

	// Nothing left to say: no banner, no script, and {"state":"done"}.
	imgs.set(func(f *fixedImages) {
		f.st = threeImages(BootstrapImage{State: ImageReady}, BootstrapImage{State: ImageReady})
		f.simple = map[string]bool{}
	})
	_, page = get(t, c, s.URL+"/")
	if strings.Contains(page, "bootstrap-banner") || strings.Contains(page, "bootstrap.js") {
		t.Errorf("banner after the bootstrap:\n%s", page)
	}
	if b := bannerJSON(t, c, s.URL+"/bootstrap/status"); b.State != "done" || b.Poll || b.Message != "" || len(b.Notes) != 0 {
		t.Errorf("done: %+v", b)
	}
}

func TestBootstrapBannerFailure(t *testing.T) {
	reason := "bootstrap python:3.11-slim: the Debian package mirror is not reachable ... run `labd images import image.tar`"
	imgs := &fixedImages{st: threeImages(
		BootstrapImage{State: ImageFailed, Error: reason},
		BootstrapImage{State: ImageFailed, Error: "bootstrap labd/sandbox:latest: the Debian package mirror is not reachable"},
	), have: []string{"busybox:latest"}}
	s := newTestServerIdle(t, imagesContent(t), 0, 0, func(o *Options) { o.BaseImages = imgs })
	c := s.client(t)
	_, page := get(t, c, s.URL+"/labs/flask")
	page = html.UnescapeString(page)
	for _, want := range []string{
		`data-state="failed"`,
		"Base image python, sandbox could not be prepared; labs that need it will not work until an operator imports it (labd images import).",
		"python: " + reason,
		"This lab needs the image python:3.11-slim, which could not be prepared",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// Nothing will change any more: no polling.
	if strings.Contains(page, "bootstrap.js") || strings.Contains(page, `data-poll`) {
		t.Error("a failed bootstrap still polls")
	}
	if b := bannerJSON(t, c, s.URL+"/bootstrap/status"); b.State != "failed" || b.Poll || len(b.Errors) != 2 {
		t.Errorf("status = %+v", b)
	}
}

// Without BaseImages (tests, embedders) there is no banner and the
// endpoint answers "done".
func TestBootstrapBannerNone(t *testing.T) {
	s := newTestServer(t, "")
	c := s.client(t)
	if _, page := get(t, c, s.URL+"/"); strings.Contains(page, "bootstrap-banner") {
		t.Errorf("banner without BaseImages:\n%s", page)
	}
	if b := bannerJSON(t, c, s.URL+"/bootstrap/status"); b.State != "done" || b.Poll {
		t.Errorf("status = %+v", b)
	}
}

// bootstrap.js in a real browser: the banner follows /bootstrap/status
// every 2 s and goes away when there is nothing left to say.
func TestBootstrapBannerBrowser(t *testing.T) {
	if os.Getenv("LABD_E2E") == "0" {
		testenv.Missing(t, "LABD_E2E=0: browser tests switched off")
	}
	chromium := ""
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			chromium = p
			break
		}
	}
	if chromium == "" {
		t.Fatal("chromium not found: install it (deploy/deps.sh test) or set LABD_E2E=0 to skip")
	}
	imgs := &fixedImages{st: threeImages(BootstrapImage{State: ImageBuilding, Phase: "downloading packages with apt"}, BootstrapImage{State: ImageWaiting})}
	s := newTestServerIdle(t, imagesContent(t), 0, 0, func(o *Options) { o.BaseImages = imgs })

	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.UserDataDir(t.TempDir()))
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	bannerText := func() string {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.getElementById('bootstrap-banner')||{}).textContent||''`))
		if err != nil {
			t.Fatalf("read the banner: %v", err)
		}
		return strings.Join(strings.Fields(v), " ")
	}
	evalInt := func(js string) int {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[int](js))
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		return v
	}
	waitText := func(what, want string) {
		t.Helper()
		deadline := time.Now().Add(50 * time.Second)
		for got := bannerText(); !strings.Contains(got, want); got = bannerText() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: banner = %q; want %q", what, got, want)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	nctx, cancel := context.WithTimeout(bctx, 60*time.Second)
	if err := chromedp.Do(nctx, chromedp.Navigate(s.URL+"/labs/flask")); err != nil {
		t.Fatalf("open the lab: %v", err)
	}
	cancel()
	waitText("first render", "Preparing base images: python (2/3)…")
	waitText("first render", "This lab needs the image python:3.11-slim, which is still being prepared (downloading packages with apt)")

	imgs.set(func(f *fixedImages) {
		f.st = threeImages(BootstrapImage{State: ImageReady}, BootstrapImage{State: ImageBuilding, Phase: "extracting archives"})
		f.have = []string{"python:3.11-slim"}
	})
	waitText("update", "Preparing base images: sandbox (3/3)… extracting archives")
	if notes := evalInt(`document.querySelectorAll('#bootstrap-banner .bootstrap-notes li').length`); notes != 1 { // only nginx:1.25 is missing now
		t.Errorf("%d notes after python is ready; want 1 (nginx)", notes)
	}

	imgs.set(func(f *fixedImages) {
		f.st = threeImages(BootstrapImage{State: ImageReady}, BootstrapImage{State: ImageReady})
		f.have = []string{"python:3.11-slim", "nginx:1.25"}
	})
	deadline := time.Now().Add(50 * time.Second)
	for evalInt(`document.getElementById('bootstrap-banner') === null ? 1 : 0`) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the banner is still there after the bootstrap ended: %q", bannerText())
		}
		time.Sleep(200 * time.Millisecond)
	}
	// It stopped asking.
	polls1 := evalInt(`window.labd.bootstrap.polls`)
	time.Sleep(5 * time.Second)
	if polls2 := evalInt(`window.labd.bootstrap.polls`); polls2 != polls1 {
		t.Errorf("bootstrap.js still polls after the end: %d -> %d", polls1, polls2)
	}
}

// gatedProvider gives no shell until ready, as the engine provider does
// for untrusted learners while the sandbox image is missing.
type gatedProvider struct {
	inner   sandbox.Provider
	ready   atomic.Bool
	created atomic.Int32
}

func (g *gatedProvider) Create(ctx context.Context, spec sandbox.Spec) (sandbox.Sandbox, error) {
	if !g.ready.Load() {
		return nil, fmt.Errorf("no sandbox image: %w", sandbox.ErrShellNotReady)
	}
	g.created.Add(1)
	return g.inner.Create(ctx, spec)
}

// TestWaitForShellImage: without the shell image a learner gets no shell
// (the simple one is for trusted learners only) but the lab page, which
// says the terminal is being prepared, polls, and starts the sandbox on
// the reload once the image is there.
func TestWaitForShellImage(t *testing.T) {
	imgs := &fixedImages{simple: map[string]bool{}}
	imgs.set(func(f *fixedImages) {
		f.st = threeImages(BootstrapImage{State: ImageReady}, BootstrapImage{State: ImageBuilding, Phase: "installing bash"})
		f.have = []string{"busybox:latest", "python:3.11-slim"}
	})
	gate := &gatedProvider{inner: nsbox.New(nsbox.Options{})}
	mgr := sandbox.NewManager(gate, sandbox.ManagerOptions{DataDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(func() { mgr.Close(context.Background()) })
	s := newTestServerIdle(t, imagesContent(t), 0, 0, func(o *Options) {
		o.BaseImages = imgs
		o.Sandboxes = mgr
	})
	c := s.client(t)

	resp, page := get(t, c, s.URL+"/labs/flask")
	if resp.StatusCode != 200 {
		t.Fatalf("lab page while the shell image is made: %d\n%s", resp.StatusCode, page)
	}
	for _, want := range []string{`data-wait-shell="true"`, "Preparing your terminal", `data-url="/bootstrap/status?lab=flask&amp;wait=shell" data-poll="true"`} {
		if !strings.Contains(page, want) {
			t.Errorf("waiting lab page lacks %q:\n%s", want, page)
		}
	}
	for _, not := range []string{"data-sandbox=", "data-terminal-url=", `id="terminal"`, "/sandboxes/"} {
		if strings.Contains(page, not) {
			t.Errorf("waiting lab page has %q: it must not start or name a sandbox", not)
		}
	}
	if n := gate.created.Load(); n != 0 {
		t.Errorf("%d sandboxes exist while the shell image is missing", n)
	}
	status := s.URL + "/bootstrap/status?lab=flask&wait=shell"
	b := bannerJSON(t, c, status)
	if !b.Poll || b.ShellReady || !slices.Contains(b.Notes, "Your terminal starts as soon as the sandbox image is ready.") {
		t.Errorf("while building: %+v", b)
	}

	imgs.set(func(f *fixedImages) {
		f.st = threeImages(BootstrapImage{State: ImageReady}, BootstrapImage{State: ImageFailed, Error: "no mirror"})
	})
	if b := bannerJSON(t, c, status); !b.Poll || b.ShellReady || !strings.Contains(strings.Join(b.Notes, " "), "the sandbox image could not be prepared") {
		t.Errorf("after a failed bootstrap: %+v", b)
	}

	// The operator imports the image: the page's poll says so, and the
	// reload starts the sandbox.
	imgs.set(func(f *fixedImages) { f.have = append(f.have, "labd/sandbox:latest") })
	gate.ready.Store(true)
	if b := bannerJSON(t, c, status); !b.ShellReady {
		t.Errorf("after the import: %+v, want shell_ready", b)
	}
	_, page = get(t, c, s.URL+"/labs/flask")
	if !regexpSandbox.MatchString(page) || strings.Contains(page, "data-wait-shell") {
		t.Errorf("the reload after the import starts no sandbox:\n%s", page)
	}
}
