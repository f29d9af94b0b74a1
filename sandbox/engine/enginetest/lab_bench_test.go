package enginetest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/labd/labd/sandbox/engine/mountinfo"
	"golang.org/x/crypto/bcrypt"
)

// The Docker images lab (content/docker-images) timed on labd and on the
// reference dockerd in the same run, on the python stand-in image:
//
//	build        `docker image build -t python-hello-world .`, the app's steps not cached
//	cached       the same build again, nothing changed
//	changed-app  the build after app.py changed (only COPY runs)
//	run-to-200   `docker run -d -p 5001:5000 python-hello-world` until Flask answers 200 "hello world!"
//	solution     the lab's whole solution.sh (build, run, login, push, rebuild, push, layers, prune)
//
// Both engines are set up alike: each runs in a network namespace created
// here (lo only), so both publish 5001 there and the script's `curl
// localhost:5001` reaches the right engine; each has a registry in its
// namespace on 127.0.0.1:5050 (labd's embedded one, Debian's
// docker-registry for dockerd, both with password auth for alice). The
// script runs in the engine's namespace with a private /tmp (it writes
// /tmp/rebuild.log and friends), against the docker CLI 20.10 with
// DOCKER_BUILDKIT=0.
//
// The python stand-in is bootstrapped (mmdebstrap, 1-2 minutes) unless
// LABD_BENCH_PYTHON_TAR names a `docker save` of it; when that file does
// not exist yet, the benchmark writes it, so later runs start in seconds.

const (
	labRegistryAddr = "127.0.0.1:5050"
	labUser         = "alice"
	labPassword     = "alice-bench-secret"
	labPythonTag    = "python:3.11-slim"
)

// labSide is one engine in its own network namespace, with its registry.
type labSide struct {
	*Engine
	ns      string // /run/netns/NAME
	script  string // solution.sh as run against this engine
	repo    string // what the script pushes
	workDir string // the script's HOME and workspaces, outside /tmp
	ctxDir  string // the build benchmarks' context
	warmed  bool   // solution.sh ran once untimed
}

// BenchmarkLab times the lab's steps described at the top of this file,
// labd first and dockerd second for each step.
func BenchmarkLab(b *testing.B) {
	root, err := moduleRoot()
	if err != nil {
		b.Fatal(err)
	}
	scriptBytes, err := os.ReadFile(filepath.Join(root, "content/docker-images/solution.sh"))
	if err != nil {
		b.Fatal(err)
	}
	script := string(scriptBytes)
	dockerfile := heredoc(b, script, "cat > Dockerfile <<'DF'\n", "\nDF\n")
	appPy := heredoc(b, script, "cat > app.py <<'PY'\n", "\nPY\n")
	if !strings.Contains(appPy, `"hello world!"`) || !strings.Contains(dockerfile, "COPY app.py /app.py") {
		b.Fatalf("solution.sh changed shape: app.py %q, Dockerfile %q", appPy, dockerfile)
	}

	sides := startLabSides(b, script)
	for _, s := range sides {
		b.Logf("%s: python stand-in present; registry %s in netns %s", s.Name, labRegistryAddr, filepath.Base(s.ns))
	}

	writeCtx := func(s *labSide, app string) string {
		dir := s.ctxDir
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		for name, body := range map[string]string{"Dockerfile": dockerfile + "\n", "app.py": app + "\n"} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
				b.Fatal(err)
			}
		}
		return dir
	}
	build := func(b *testing.B, s *labSide, dir string, wantCached int) {
		out := s.Must(b, DockerCLI20, dir, "image", "build", "-t", "python-hello-world", ".")
		if n := strings.Count(out, "Using cache"); n != wantCached || !strings.Contains(out, "Successfully tagged python-hello-world:latest") {
			b.Fatalf("%s: build used the cache %d times, want %d:\n%s", s.Name, n, wantCached, out)
		}
	}

	for _, s := range sides {
		b.Run("build/"+s.Name, func(b *testing.B) {
			dir := writeCtx(s, appPy)
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				s.resetLearner(b)
				b.StartTimer()
				build(b, s, dir, 0)
			}
		})
	}
	for _, s := range sides {
		b.Run("cached/"+s.Name, func(b *testing.B) {
			dir := writeCtx(s, appPy)
			s.Must(b, DockerCLI20, dir, "image", "build", "-q", "-t", "python-hello-world", ".")
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				build(b, s, dir, 3) // RUN, CMD, COPY
			}
		})
	}
	for _, s := range sides {
		b.Run("changed-app/"+s.Name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				dir := writeCtx(s, strings.Replace(appPy, "hello world!", fmt.Sprintf("Hello Beautiful World! %d %d", i, time.Now().UnixNano()), 1))
				b.StartTimer()
				build(b, s, dir, 2) // RUN, CMD; COPY runs
			}
		})
	}
	for _, s := range sides {
		b.Run("run-to-200/"+s.Name, func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			dir := writeCtx(s, appPy)
			s.Must(b, DockerCLI20, dir, "image", "build", "-q", "-t", "python-hello-world", ".")
			c := httpClient(s.ns)
			var cli, answer time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				id := strings.TrimSpace(s.Must(b, DockerCLI20, "", "run", "-d", "-p", "5001:5000", "python-hello-world"))
				returned := time.Now()
				if body := waitBody(ctx, b, c, "http://127.0.0.1:5001/"); body != "hello world!" {
					b.Fatalf("%s: the app answered %q", s.Name, body)
				}
				cli += returned.Sub(start)
				answer += time.Since(returned)
				b.StopTimer()
				s.Must(b, DockerCLI20, "", "rm", "-f", id)
				b.StartTimer()
			}
			// Where the time goes: the engine (until the CLI returns, the
			// container running) and Flask starting in it.
			b.ReportMetric(float64(cli.Milliseconds())/float64(b.N), "cli-ms/op")
			b.ReportMetric(float64(answer.Milliseconds())/float64(b.N), "app-ms/op")
		})
	}
	for _, s := range sides {
		b.Run("solution/"+s.Name, func(b *testing.B) {
			// Untimed first run: checks the script passes on this engine and
			// leaves the base layers in the registry, as Docker Hub already
			// holds python's; the timed runs start from an empty workspace
			// and engine (base image only) each time.
			b.StopTimer()
			if !s.warmed {
				s.resetLearner(b)
				out, err := s.solutionCmd(b, "warm-up").CombinedOutput()
				s.checkSolution(b, out, err)
				s.warmed = true
			}
			for i := 0; i < b.N; i++ {
				s.resetLearner(b)
				cmd := s.solutionCmd(b, fmt.Sprint(i))
				b.StartTimer()
				out, err := cmd.CombinedOutput()
				b.StopTimer()
				s.checkSolution(b, out, err)
			}
		})
	}
}

// heredoc returns the text between start and end in script.
func heredoc(tb testing.TB, script, start, end string) string {
	tb.Helper()
	_, rest, ok := strings.Cut(script, start)
	if !ok {
		tb.Fatalf("solution.sh has no %q", start)
	}
	body, _, ok := strings.Cut(rest, end)
	if !ok {
		tb.Fatalf("solution.sh: %q is not closed by %q", start, end)
	}
	return body
}

// waitBody polls url with c until a 200 and returns the body.
func waitBody(ctx context.Context, tb testing.TB, c *http.Client, url string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := c.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return string(body)
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		last = err
		if ctx.Err() != nil {
			tb.Fatalf("GET %s: no 200 within 60 s: %v", url, last)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// startLabSides starts labd and (unless switched off) dockerd, each in a
// network namespace of its own with its registry and the python stand-in.
// Everything lives under /var/tmp so the script's private /tmp hides none
// of it.
func startLabSides(b *testing.B, script string) []*labSide {
	bin, err := LabdBinary()
	if err != nil {
		b.Fatal(err)
	}
	before := hostNetState(b)
	dir, err := os.MkdirTemp("/var/tmp", "labd-labbench-")
	if err != nil {
		b.Fatal(err)
	}
	var sides []*labSide
	var namespaces []string
	b.Cleanup(func() {
		for _, s := range sides {
			s.Stop()
		}
		for _, ns := range namespaces {
			if err := RemoveNetNS(ns); err != nil {
				b.Error(err)
			}
		}
		mountinfo.UnmountUnder(dir)
		_ = os.RemoveAll(dir)
		if after := hostNetState(b); after != before {
			b.Errorf("host network changed by the lab benchmark:\nbefore: %s\nafter:  %s", before, after)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	// labd: the stand-in in its base view, as `labd serve` has it.
	data := filepath.Join(dir, "labd-data")
	cached := os.Getenv("LABD_BENCH_PYTHON_TAR")
	if _, err := os.Stat(cached); cached != "" && err == nil {
		labdCmd(ctx, b, bin, "images", "import", cached, "--data", data)
	} else {
		b.Logf("bootstrapping %s with mmdebstrap (1-2 minutes; set LABD_BENCH_PYTHON_TAR to keep it)", labPythonTag)
		labdCmd(ctx, b, bin, "images", "bootstrap", "python", "--data", data)
	}
	cmd := exec.CommandContext(ctx, bin, "accounts", "add", labUser, "--password-stdin", "--data", data)
	cmd.Stdin = strings.NewReader(labPassword + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("labd accounts add: %v\n%s", err, out)
	}
	ns := newLabNetNS(b, "labd")
	namespaces = append(namespaces, ns)
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		b.Fatal(err)
	}
	labd := &Engine{Name: "labd", Socket: filepath.Join(dir, "labd.sock"), logf: filepath.Join(dir, "labd.log"), args: []string{
		"--net=" + ns, "--", bin, "engine", "--socket", filepath.Join(dir, "labd.sock"), "--data", data,
		"--registry-addr", labRegistryAddr,
	}}
	if err := labd.start(nsenter); err != nil {
		b.Fatalf("start labd in %s: %v\n%s", ns, err, labd.Log())
	}
	sides = append(sides, &labSide{Engine: labd, ns: ns, script: script, repo: labUser + "/python-hello-world",
		workDir: filepath.Join(dir, "labd-work"), ctxDir: filepath.Join(dir, "labd-ctx")})
	tarPath := filepath.Join(dir, "python.tar")
	labd.Must(b, DockerCLI20, "", "save", "-o", tarPath, labPythonTag, "python:3")
	if _, err := os.Stat(cached); cached != "" && errors.Is(err, os.ErrNotExist) {
		copyFile(b, tarPath, cached)
		b.Logf("wrote %s for later runs", cached)
	}

	if NoDockerd() {
		b.Log("LABD_NO_DOCKERD=1: timing labd only, no dockerd figures in this run")
		return sides
	}
	ref, refNS, err := StartDockerdInNetNS(dir)
	if refNS != "" {
		namespaces = append(namespaces, refNS)
	}
	if err != nil {
		b.Fatal(err)
	}
	refSide := &labSide{Engine: ref, ns: refNS, repo: labRegistryAddr + "/" + labUser + "/python-hello-world",
		workDir: filepath.Join(dir, "dockerd-work"), ctxDir: filepath.Join(dir, "dockerd-ctx")}
	sides = append(sides, refSide)
	ref.Must(b, DockerCLI20, "", "load", "-i", tarPath)
	startRegistryInNetNS(b, refNS, filepath.Join(dir, "registry"))
	// dockerd's docker.io is Docker Hub: the script's pushes go to the
	// namespace's registry by name instead. Nothing else changes.
	refSide.script = rewriteScript(b, script, map[string]string{
		`docker login -u "$LABD_USER" --password-stdin`: `docker login -u "$LABD_USER" --password-stdin ` + labRegistryAddr,
		`"$LABD_USER/python-hello-world"`:               `"` + labRegistryAddr + `/$LABD_USER/python-hello-world"`,
	})
	return sides
}

func labdCmd(ctx context.Context, tb testing.TB, bin string, args ...string) {
	tb.Helper()
	if out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput(); err != nil {
		tb.Fatalf("labd %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func copyFile(tb testing.TB, from, to string) {
	tb.Helper()
	in, err := os.ReadFile(from)
	if err != nil {
		tb.Fatal(err)
	}
	tmp := to + ".tmp"
	if err := os.WriteFile(tmp, in, 0o644); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, to); err != nil {
		tb.Fatal(err)
	}
}

// rewriteScript applies each replacement and fails when one no longer
// matches, so a changed solution.sh cannot silently push to Docker Hub.
func rewriteScript(tb testing.TB, script string, repl map[string]string) string {
	tb.Helper()
	for from, to := range repl {
		if !strings.Contains(script, from) {
			tb.Fatalf("solution.sh no longer contains %q: update the dockerd side of BenchmarkLab", from)
		}
		script = strings.ReplaceAll(script, from, to)
	}
	if strings.Contains(script, "docker.io") {
		tb.Fatal("solution.sh names docker.io")
	}
	return script
}

// newLabNetNS creates a network namespace with lo up.
func newLabNetNS(tb testing.TB, what string) string {
	tb.Helper()
	name := fmt.Sprintf("labd-lab-%s-%d-%d", what, os.Getpid(), time.Now().UnixNano()%1e6)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		tb.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	ns := filepath.Join("/run/netns", name)
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		_ = RemoveNetNS(ns)
		tb.Fatalf("lo up in %s: %v: %s", name, err, out)
	}
	return ns
}

// startRegistryInNetNS runs Debian's docker-registry on 127.0.0.1:5050
// inside ns, with htpasswd auth for the lab's user.
func startRegistryInNetNS(tb testing.TB, ns, dir string) {
	tb.Helper()
	if _, err := os.Stat(dockerRegistryBin); err != nil {
		tb.Fatal("docker-registry is missing: apt-get install docker-registry (deploy/deps.sh test)")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		tb.Fatal(err)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(labPassword), bcrypt.DefaultCost)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "htpasswd"), []byte(labUser+":"+string(h)+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: %s\nauth:\n  htpasswd:\n    realm: basic-realm\n    path: %s\n",
		filepath.Join(dir, "root"), labRegistryAddr, filepath.Join(dir, "htpasswd"))
	if err := os.WriteFile(filepath.Join(dir, "config.yml"), []byte(cfg), 0o600); err != nil {
		tb.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command("nsenter", "--net="+ns, "--", dockerRegistryBin, "serve", filepath.Join(dir, "config.yml"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := httpClient(ns)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+labRegistryAddr+"/v2/", nil)
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusUnauthorized {
				return
			}
			err = fmt.Errorf("GET /v2/ without credentials: %s, want 401", resp.Status)
		}
		if ctx.Err() != nil {
			b, _ := os.ReadFile(filepath.Join(dir, "registry.log"))
			tb.Fatalf("docker-registry in %s did not come up: %v\n%s", ns, err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// resetLearner brings the engine back to a learner who has only the base
// image: no containers, none of the lab's images, no workspace and no
// docker login (the CLI's config is in the workspace's HOME).
func (s *labSide) resetLearner(b *testing.B) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if ids := splitLines(s.Must(b, DockerCLI20, "", "ps", "-aq")); len(ids) > 0 {
		s.Must(b, DockerCLI20, "", append([]string{"rm", "-f"}, ids...)...)
	}
	for _, ref := range []string{"python-hello-world", "python-goodbye-world", s.repo} {
		if r := s.Docker(ctx, DockerCLI20, "", nil, "image", "inspect", ref); r.Code == 0 {
			s.Must(b, DockerCLI20, "", "rmi", "-f", ref)
		}
	}
	s.Must(b, DockerCLI20, "", "image", "prune", "-f")
	left := s.Must(b, DockerCLI20, "", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}")
	for _, ref := range splitLines(left) {
		if ref != labPythonTag && ref != "python:3" {
			b.Fatalf("%s: after the reset the learner still has %s:\n%s", s.Name, ref, left)
		}
	}
	if err := os.RemoveAll(s.workDir); err != nil {
		b.Fatal(err)
	}
}

// solutionCmd prepares solution.sh in a fresh workspace, to run in the
// engine's network namespace with a private /tmp and the docker CLI 20.10
// first on PATH. A run that hangs is killed, with its process group, after
// 5 minutes.
func (s *labSide) solutionCmd(b *testing.B, name string) *exec.Cmd {
	b.Helper()
	ws := filepath.Join(s.workDir, "solution-"+name)
	binDir := filepath.Join(s.workDir, "bin")
	for _, d := range []string{ws, binDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	if err := os.Symlink(DockerCLI20, filepath.Join(binDir, "docker")); err != nil && !errors.Is(err, os.ErrExist) {
		b.Fatal(err)
	}
	scriptPath := filepath.Join(s.workDir, "solution.sh")
	if err := os.WriteFile(scriptPath, []byte(s.script), 0o755); err != nil {
		b.Fatal(err)
	}
	if traceSolution() {
		// bash ignores PS4 from the environment when run as root.
		tracer := filepath.Join(s.workDir, "trace.sh")
		if err := os.WriteFile(tracer, []byte("PS4='+ $EPOCHREALTIME '\nset -x\n. "+scriptPath+"\n"), 0o644); err != nil {
			b.Fatal(err)
		}
		scriptPath = tracer
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	b.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, "unshare", "--mount", "--propagation", "private", "--",
		"nsenter", "--net="+s.ns, "--",
		"sh", "-c", `mount -t tmpfs -o size=64m tmpfs /tmp && exec bash "$0"`, scriptPath)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.Dir = ws
	cmd.Env = []string{
		"PATH=" + binDir + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + s.workDir, "DOCKER_CONFIG=" + filepath.Join(s.workDir, "docker-config"),
		"DOCKER_HOST=" + s.Host(), "DOCKER_BUILDKIT=0", "DOCKER_CLI_HINTS=false",
		"LABD_USER=" + labUser, "LABD_PASSWORD=" + labPassword,
	}
	return cmd
}

// traceSolution reports whether LABD_BENCH_TRACE=1 asks for the script
// to run under `set -x` with timestamps, and for its slowest commands in
// the benchmark's log (it costs a little, so the figures are without).
func traceSolution() bool { return os.Getenv("LABD_BENCH_TRACE") == "1" }

// slowestCommands returns the n slowest commands of an xtrace with
// $EPOCHREALTIME stamps, each with the time until the next one started.
func slowestCommands(out string, n int) []string {
	type step struct {
		d   float64
		cmd string
	}
	var steps []step
	var prevT float64
	var prevCmd string
	for _, l := range strings.Split(out, "\n") {
		plus, rest, ok := strings.Cut(l, " ")
		if !ok || strings.Trim(plus, "+") != "" {
			continue
		}
		stamp, cmd, _ := strings.Cut(rest, " ")
		var t float64
		if _, err := fmt.Sscan(stamp, &t); err != nil {
			continue
		}
		if prevCmd != "" {
			steps = append(steps, step{t - prevT, prevCmd})
		}
		prevT, prevCmd = t, cmd
	}
	slices.SortStableFunc(steps, func(a, b step) int { return cmp.Compare(b.d, a.d) })
	var lines []string
	for _, st := range steps[:min(n, len(steps))] {
		lines = append(lines, fmt.Sprintf("%6.2fs %.70s", st.d, st.cmd))
	}
	return lines
}

// checkSolution fails the benchmark unless solution.sh passed and did
// what the lab teaches.
func (s *labSide) checkSolution(b *testing.B, out []byte, err error) {
	b.Helper()
	if err != nil {
		b.Fatalf("%s: solution.sh: %v\n%s", s.Name, err, out)
	}
	if traceSolution() {
		b.Logf("%s: slowest commands of solution.sh:\n%s", s.Name, strings.Join(slowestCommands(string(out), 6), "\n"))
	}
	for _, want := range []string{"Login Succeeded", "Layer already exists", "Successfully tagged python-goodbye-world:latest", "hello world!", "Hello Beautiful World!"} {
		if !strings.Contains(string(out), want) {
			b.Fatalf("%s: solution.sh output lacks %q:\n%s", s.Name, want, out)
		}
	}
}

func TestSlowestCommands(t *testing.T) {
	trace := "Sending build context\n+ 100.0 cat\n++ 100.5 docker container ls -q\n+ 101.0 docker container stop abc\nStopped\n+ 111.25 docker run -d x\n+ 111.5 echo done\n"
	for _, tc := range []struct {
		n    int
		want []string
	}{
		{1, []string{" 10.25s docker container stop abc"}},
		{3, []string{" 10.25s docker container stop abc", "  0.50s cat", "  0.50s docker container ls -q"}},
		{9, []string{" 10.25s docker container stop abc", "  0.50s cat", "  0.50s docker container ls -q", "  0.25s docker run -d x"}},
	} {
		if got := slowestCommands(trace, tc.n); !slices.Equal(got, tc.want) {
			t.Errorf("slowestCommands(n=%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}
