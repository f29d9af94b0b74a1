package e2e_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/labd/labd/internal/testenv"
	"github.com/labd/labd/sandbox/engine/enginetest"
	"github.com/labd/labd/sandbox/engine/image"
	"github.com/labd/labd/sandbox/engine/mountinfo"
)

// TestContainerImage builds labd's container image the way `make image`
// does (deploy/image.sh, never pulling: the base is the local stand-in)
// in a dockerd of the test's own, which runs in a network namespace made
// for it, so its bridge, iptables rules and published ports stay there.
// It runs the image with README.md's docker run line and uses it as a
// learner would through the published port: the lab page, the terminal,
// a `docker build` and `docker run -d -p 5001:5000` of a busybox httpd,
// the port preview; then it stops and starts the container, and replaces
// it by a new one on the same volume, and finds the learner's workspace
// file and image again each time, in a working shell; last, another
// learner does the same in headless Chromium.
//
// No Debian mirror is reachable from that namespace, so the base images
// go in the documented offline way, `labd images import` before the first
// start; they come from LABD_E2E_LABS_DATA (else LABD_E2E_DATA, else a
// fresh data dir), bootstrapped there when missing.
func TestContainerImage(t *testing.T) {
	if os.Getenv("LABD_E2E") == "0" {
		testenv.Missing(t, "LABD_E2E=0: browser tests switched off")
	}
	testenv.Root(t, "dockerd, and the namespaces labd makes in its container")
	for _, c := range []struct{ cmd, pkg string }{
		{enginetest.Dockerd, "docker.io"}, {enginetest.DockerCLI20, "docker.io"},
		{"mmdebstrap", "mmdebstrap"}, {"nsenter", "util-linux"}, {"ip", "iproute2"},
	} {
		testenv.Command(t, c.cmd, c.pkg)
	}
	root := moduleRoot(t)
	if _, err := os.Stat(filepath.Join(root, "web/static/vendor/xterm.js")); err != nil {
		t.Fatal("web/static/vendor is empty: run make assets (npm ci + copy of xterm.js) before this test")
	}
	runLine := documentedRun(t, root)
	bin := buildLabd(t, root)

	dir, err := os.MkdirTemp("", "labd-image-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	ref, ns, err := enginetest.StartDockerdInNetNS(dir)
	if err != nil {
		os.RemoveAll(dir)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ref.Stop()
		if err := enginetest.RemoveNetNS(ns); err != nil {
			t.Error(err)
		}
		mountinfo.UnmountUnder(dir)
		os.RemoveAll(dir)
	})
	d := &dockerIn{t: t, host: ref.Host(), home: filepath.Join(dir, "home")}
	baseTar := baseImagesTar(t, bin, filepath.Join(dir, "base-images.tar"))

	suffix := randomSuffix(t)
	img := "labd-e2e:" + suffix
	out := filepath.Join(dir, "out")
	began := time.Now()
	build := exec.Command(filepath.Join(root, "deploy/image.sh"))
	build.Env = append(os.Environ(), "DOCKER_HOST="+ref.Host(), "DOCKER="+enginetest.DockerCLI20, "IMAGE="+img,
		"LABD_BIN="+bin, "LABD_IMAGE_OUT="+out, "LABD_IMAGE_BASE=local")
	msg, err := build.CombinedOutput()
	if err != nil {
		t.Fatalf("deploy/image.sh: %v\n%s\ndockerd log:\n%s", err, msg, ref.Log())
	}
	if !strings.Contains(string(msg), "labd image "+img+" (sha256:") {
		t.Fatalf("deploy/image.sh does not say which image it built:\n%s", msg)
	}
	t.Logf("image built in %v:\n%s", time.Since(began).Round(time.Millisecond), msg)
	// No pull was tried: the stand-in made from Debian packages is the base.
	if base := d.run("image", "inspect", "-f", `{{index .Config.Labels "labd.base"}}`, img); !strings.HasPrefix(base, "local stand-in for debian:bookworm-slim: mmdebstrap") {
		t.Errorf("%s is not built on labd's stand-in for debian:bookworm-slim (label labd.base = %q)", img, base)
	}

	// The base images, offline: imported before the first start.
	vol := "labd-e2e-" + suffix
	d.run("volume", "create", vol)
	t.Cleanup(func() {
		if out, err := d.command(context.Background(), "volume", "rm", vol).CombinedOutput(); err != nil {
			t.Errorf("docker volume rm %s: %v\n%s", vol, err, out)
		}
	})
	began = time.Now()
	imported := d.runStdin(baseTar, "run", "--rm", "-i", "-v", vol+":/var/lib/labd", img, "images", "import", "-")
	for _, want := range []string{"Loaded image: busybox:latest", "Loaded image: " + image.PythonTags[0], "Loaded image: " + image.SandboxTag} {
		if !strings.Contains(imported, want) {
			t.Fatalf("labd images import in the container: no %q:\n%s", want, imported)
		}
	}
	t.Logf("base images imported in %v", time.Since(began).Round(time.Millisecond))

	name := "labd-e2e-" + suffix
	args := substitute(t, runLine, map[string]string{
		"labd":                          name,
		"8080:8080":                     "127.0.0.1::8080",
		"labd-data:/var/lib/labd":       vol + ":/var/lib/labd",
		"seccomp=bin/labd-seccomp.json": "seccomp=" + filepath.Join(out, "labd-seccomp.json"),
		"labd:latest":                   img,
	})
	checkRefusals(t, d, args)

	began = time.Now()
	id := strings.TrimSpace(d.run(args...))
	t.Cleanup(func() {
		if out, err := d.command(context.Background(), "rm", "-f", name).CombinedOutput(); err != nil {
			t.Errorf("docker rm -f %s: %v\n%s", name, err, out)
		}
		checkCgroupsGone(t, id)
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("labd container log:\n%s", d.logs(name))
		}
	})

	fwd := newForwarder(t, ns)
	fwd.target(d.port(name))
	srv := &labd{url: "http://" + fwd.addr(), done: make(chan struct{})}
	waitHealthy(t, d, name, srv.url)
	t.Logf("docker run to /healthz through the published port: %v", time.Since(began).Round(time.Millisecond))

	began = time.Now()
	l := openLab(t, srv, "docker-run")
	l.typeLine(`echo "ready-$((6*7))"`)
	if _, ok := l.waitFor(0, regexp.MustCompile(`ready-42`), 2*time.Minute); !ok {
		t.Fatalf("no shell in the lab's terminal:\n%s", l.output())
	}
	t.Logf("lab page to a shell prompt: %v", time.Since(began).Round(time.Millisecond))

	// The learner's build and run, typed. The page's text is computed in
	// the image's RUN step and served by the container: seeing it proves
	// both ran.
	began = time.Now()
	off := len(l.output())
	l.typeLine(`mkdir -p ~/web && cd ~/web && printf 'FROM busybox\nRUN mkdir /w && echo "image-e2e-$((6*7))" > /w/index.html\nCMD ["httpd", "-f", "-p", "5000", "-h", "/w"]\n' > Dockerfile && docker build -t web . && docker run -d -p 5001:5000 web && echo "keep-$((7*6))" > ~/keep.txt && echo "started-$((2*3))"`)
	if _, ok := l.waitFor(off, regexp.MustCompile(`(?s)Step 2/3 : RUN.*Successfully tagged web:latest.*started-6`), 5*time.Minute); !ok {
		t.Fatalf("docker build and docker run -d -p 5001:5000 in the terminal did not finish:\n%s", l.output()[off:])
	}
	off = len(l.output())
	l.typeLine(`for i in $(seq 150); do curl -s localhost:5001 && break; sleep 0.2; done`)
	if _, ok := l.waitFor(off, regexp.MustCompile(`image-e2e-42`), time.Minute); !ok {
		t.Fatalf("curl localhost:5001 in the terminal: no answer from the container:\n%s", l.output()[off:])
	}
	t.Logf("docker build, docker run -d -p 5001:5000 and its answer: %v", time.Since(began).Round(time.Millisecond))
	waitPreview(t, l, srv, "image-e2e-42")

	// Stop (gracefully: labd exits 0 on SIGTERM) and start again, then
	// replace the container by a new one on the same volume (an upgrade):
	// each time the same learner finds the workspace file and the image in
	// a new shell.
	for _, recreate := range []bool{false, true} {
		began = time.Now()
		d.run("stop", "-t", "60", name)
		stopped := time.Since(began)
		if code := strings.TrimSpace(d.run("inspect", "-f", "{{.State.ExitCode}}", name)); code != "0" {
			t.Errorf("labd's container exited with %s after docker stop, want 0 (a clean shutdown)", code)
		}
		began = time.Now()
		how := "docker start"
		if recreate {
			how = "docker rm; docker run"
			d.run("rm", name)
			checkCgroupsGone(t, id)
			id = strings.TrimSpace(d.run(args...))
		} else {
			d.run("start", name)
		}
		fwd.target(d.port(name))
		waitHealthy(t, d, name, srv.url)
		t.Logf("docker stop in %v; %s to /healthz: %v", stopped.Round(time.Millisecond), how, time.Since(began).Round(time.Millisecond))

		l2 := reattach(t, srv, "docker-run", l)
		if got, err := l2.download("keep.txt"); err != nil || got != "keep-42\n" {
			t.Errorf("after %s, the workspace's keep.txt = %q (%v), want \"keep-42\\n\"", how, got, err)
		}
		l2.typeLine(`cat ~/keep.txt; docker run --rm web cat /w/index.html`)
		if _, ok := l2.waitFor(0, regexp.MustCompile(`(?s)keep-42.*image-e2e-42`), 2*time.Minute); !ok {
			t.Errorf("after %s, the shell does not show the workspace file and the learner's image:\n%s", how, l2.output())
		}
		l2.ws.Close()
	}

	// Another learner, in headless Chromium, through the same port: the
	// lab page's terminal and the port preview.
	ctx := newBrowser(t, findChromium(t))
	do(t, ctx, srv, "open the lab in Chromium",
		chromedp.EmulateViewport(1280, 800),
		chromedp.Navigate(srv.url+"/labs/docker-run"),
		chromedp.WaitVisible(chromedp.CSS(`#term-status[data-state="connected"]`)),
	)
	waitTerminal(t, ctx, srv, "shell prompt", promptRE)
	sid := get(t, ctx, srv, "sandbox id", chromedp.AttributeValue(chromedp.CSS(`#lab`), "data-sandbox")).Value
	typeCommand(t, ctx, srv, `docker run -d -p 5001:5000 busybox sh -c 'mkdir /w && echo "chromium-$((6*7))" > /w/index.html && exec httpd -f -p 5000 -h /w' >/dev/null && for i in $(seq 100); do curl -s localhost:5001 && break; sleep 0.2; done`)
	waitTerminal(t, ctx, srv, "curl localhost:5001 in the terminal", regexp.MustCompile(`chromium-42`))
	screenshot(t, ctx, srv, "image-lab")
	do(t, ctx, srv, "open the port preview in Chromium", chromedp.Navigate(srv.url+"/sandboxes/"+sid+"/ports/5001/"))
	get(t, ctx, srv, "the preview shows the container's page", chromedp.Poll[bool](`!!document.body && document.body.innerText.includes('chromium-42')`))
}

// documentedRun returns the arguments of README.md's docker run line (in
// "Run it in a container"), after checking that the Dockerfile's header
// shows the same one.
func documentedRun(t *testing.T, root string) []string {
	t.Helper()
	line := func(file, prefix string) []string {
		b, err := os.ReadFile(filepath.Join(root, file))
		if err != nil {
			t.Fatal(err)
		}
		var cmd string
		in := false
		for _, l := range strings.Split(string(b), "\n") {
			l = strings.TrimSpace(strings.TrimPrefix(l, prefix))
			if strings.HasPrefix(l, "docker run -d --name labd ") {
				in = true
			}
			if !in {
				continue
			}
			cmd += " " + strings.TrimSuffix(l, `\`)
			if !strings.HasSuffix(l, `\`) {
				break
			}
		}
		if cmd == "" {
			t.Fatalf("%s has no `docker run -d --name labd ...` line", file)
		}
		return strings.Fields(cmd)
	}
	readme := line("README.md", "")
	if df := line("Dockerfile", "#"); !slices.Equal(df, readme) {
		t.Fatalf("the Dockerfile's header runs\n  %s\nREADME.md runs\n  %s", strings.Join(df, " "), strings.Join(readme, " "))
	}
	return readme[1:]
}

// checkRefusals runs the image without each flag the entrypoint checks
// for: it must refuse to serve, naming that flag and no other.
func checkRefusals(t *testing.T, d *dockerIn, args []string) {
	t.Helper()
	checked := []string{"--cap-add SYS_ADMIN", "--cap-add SYS_PTRACE", "--tmpfs /run", "--security-opt systempaths=unconfined"}
	for i, flag := range checked {
		t.Run("without "+flag, func(t *testing.T) {
			opt, val, _ := strings.Cut(flag, " ")
			var run []string
			for j := 0; j < len(args); j++ {
				switch {
				case args[j] == opt && j+1 < len(args) && args[j+1] == val:
					j++
				case args[j] == "-d":
					run = append(run, "--rm")
				case args[j] == "--name" && j+1 < len(args):
					run = append(run, "--name", fmt.Sprintf("%s-refused-%d", args[j+1], i))
					j++
				default:
					run = append(run, args[j])
				}
			}
			if len(run) != len(args)-2 {
				t.Fatalf("the docker run line has no %s: %s", flag, strings.Join(args, " "))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			out, err := d.command(ctx, run...).CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("docker %s: %v, want exit status 1 (refused)\n%s", strings.Join(run, " "), err, out)
			}
			if !strings.Contains(string(out), "cannot run learners' sandboxes") || !strings.Contains(string(out), val) {
				t.Errorf("without %s, the entrypoint says:\n%s\nwant a refusal naming %s", flag, out, val)
			}
			for _, other := range checked {
				if other != flag && strings.Contains(string(out), strings.Fields(other)[1]) {
					t.Errorf("without %s only, the entrypoint also names %s:\n%s", flag, other, out)
				}
			}
		})
	}
}

// substitute replaces the values the test cannot use as they are (names,
// ports, paths), each of which must be in the line exactly once.
func substitute(t *testing.T, args []string, repl map[string]string) []string {
	t.Helper()
	out := slices.Clone(args)
	for from, to := range repl {
		n := 0
		for i, a := range out {
			if a == from {
				out[i] = to
				n++
			}
		}
		if n != 1 {
			t.Fatalf("the documented docker run line has %q %d times, want once: %s", from, n, strings.Join(args, " "))
		}
	}
	return out
}

// baseImagesTar writes a docker-save tar of the base images (busybox, the
// python stand-in, the sandbox image) to path.
func baseImagesTar(t *testing.T, bin, path string) string {
	t.Helper()
	data := os.Getenv("LABD_E2E_LABS_DATA")
	if data == "" {
		data = os.Getenv("LABD_E2E_DATA")
	}
	if data == "" {
		data = t.TempDir()
	}
	if out, err := exec.Command(bin, "images", "bootstrap", "all", "--data", data).CombinedOutput(); err != nil {
		t.Fatalf("labd images bootstrap all --data %s: %v\n%s", data, err, out)
	}
	s, err := image.OpenReadOnly(filepath.Join(data, "engine"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := s.View(image.BaseView)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	err = v.Save(ctx, []string{"busybox:latest", image.PythonTags[0], image.SandboxTag}, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("save the base images of %s: %v", data, err)
	}
	return path
}

// dockerIn runs Debian's docker CLI against the test's dockerd.
type dockerIn struct {
	t    *testing.T
	host string
	home string
}

func (d *dockerIn) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, enginetest.DockerCLI20, args...)
	cmd.Env = []string{"DOCKER_HOST=" + d.host, "HOME=" + d.home, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	return cmd
}

func (d *dockerIn) run(args ...string) string {
	d.t.Helper()
	return d.runStdin("", args...)
}

// runStdin runs docker with stdin read from the file stdin ("" = none)
// and returns its output; a failure ends the test.
func (d *dockerIn) runStdin(stdin string, args ...string) string {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := d.command(ctx, args...)
	if stdin != "" {
		f, err := os.Open(stdin)
		if err != nil {
			d.t.Fatal(err)
		}
		defer f.Close()
		cmd.Stdin = f
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		d.t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (d *dockerIn) logs(name string) string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, _ := d.command(ctx, "logs", name).CombinedOutput()
	return string(out)
}

// port returns the address in the test's network namespace where the
// container's 8080 is published.
func (d *dockerIn) port(name string) string {
	d.t.Helper()
	out := d.run("port", name, "8080/tcp")
	addr, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
	if _, _, err := net.SplitHostPort(addr); err != nil {
		d.t.Fatalf("docker port %s 8080/tcp = %q: %v", name, out, err)
	}
	return addr
}

// waitHealthy waits for labd's /healthz through the published port, or
// for the container to end.
func waitHealthy(t *testing.T, d *dockerIn, name, url string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		resp, err := c.Get(url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if state := strings.TrimSpace(d.run("inspect", "-f", "{{.State.Status}}", name)); state != "running" {
			t.Fatalf("labd's container is %s, not running:\n%s", state, d.logs(name))
		}
		if time.Now().After(deadline) {
			t.Fatalf("labd's /healthz did not answer 200 within 3 minutes (last: %v)\n%s", err, d.logs(name))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitPreview opens port 5001 through labd's path-based preview route as
// the learner (the route redirects to a capability URL) until the page
// shows want.
func waitPreview(t *testing.T, l *wsLearner, srv *labd, want string) {
	t.Helper()
	url := srv.url + "/sandboxes/" + l.sid + "/ports/5001/"
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := l.c.Get(url)
		var body []byte
		if err == nil {
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.Contains(string(body), want) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: no %q within a minute (err %v):\n%s", url, want, err, body)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// reattach loads the lab page again as the learner of prev (same cookies)
// and attaches a new terminal; the sandbox must be prev's.
func reattach(t *testing.T, srv *labd, lab string, prev *wsLearner) *wsLearner {
	t.Helper()
	l := attachLab(t, srv, lab, prev.c)
	if l.sid != prev.sid {
		t.Fatalf("the same learner's sandbox is %s after the restart, was %s", l.sid, prev.sid)
	}
	return l
}

// forwarder listens on the host's loopback and carries each connection to
// an address inside the network namespace ns (where dockerd publishes the
// container's port): the HTTP and websocket clients of wslearner_test.go
// dial it as they would labd itself.
type forwarder struct {
	ln net.Listener
	ns string

	mu     sync.Mutex
	to     string
	conns  map[net.Conn]bool
	closed bool
	wg     sync.WaitGroup
}

func newForwarder(t *testing.T, ns string) *forwarder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &forwarder{ln: ln, ns: ns, conns: map[net.Conn]bool{}}
	f.wg.Add(1)
	go f.serve()
	t.Cleanup(func() {
		ln.Close()
		f.mu.Lock()
		f.closed = true
		for c := range f.conns {
			c.Close()
		}
		f.mu.Unlock()
		f.wg.Wait()
	})
	return f
}

func (f *forwarder) addr() string { return f.ln.Addr().String() }

// target sets where new connections go (the published port changes when
// the container starts again).
func (f *forwarder) target(addr string) {
	f.mu.Lock()
	f.to = addr
	f.mu.Unlock()
}

// track notes open connections, for the cleanup to close; false when
// the forwarder is closed already.
func (f *forwarder) track(on bool, cs ...net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if on && f.closed {
		return false
	}
	for _, c := range cs {
		if on {
			f.conns[c] = true
		} else {
			delete(f.conns, c)
		}
	}
	return true
}

func (f *forwarder) serve() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer c.Close()
			f.mu.Lock()
			to := f.to
			f.mu.Unlock()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			up, err := enginetest.DialInNetNS(ctx, f.ns, to)
			cancel()
			if err != nil {
				return
			}
			defer up.Close()
			if !f.track(true, c, up) {
				return
			}
			defer f.track(false, c, up)
			done := make(chan struct{}, 2)
			go func() { io.Copy(up, c); up.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
			go func() { io.Copy(c, up); c.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
			<-done
			<-done
		}()
	}
}

// checkCgroupsGone fails the test when the removed container left a
// cgroup (its own or one labd made below it) on the host.
func checkCgroupsGone(t *testing.T, id string) {
	t.Helper()
	if id == "" {
		return
	}
	var left []string
	deadline := time.Now().Add(30 * time.Second)
	for {
		left = left[:0]
		for _, g := range []string{"/sys/fs/cgroup/*/docker/" + id, "/sys/fs/cgroup/docker/" + id, "/sys/fs/cgroup/system.slice/docker-" + id + ".scope"} {
			m, _ := filepath.Glob(g)
			left = append(left, m...)
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(left) > 0 {
		var inside []string
		for _, l := range left {
			filepath.Walk(l, func(p string, fi os.FileInfo, err error) error {
				if err == nil && fi.IsDir() {
					inside = append(inside, p)
				}
				return nil
			})
		}
		t.Errorf("labd's removed container left cgroups on the host: %s", strings.Join(inside, " "))
	}
}

func randomSuffix(t *testing.T) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
