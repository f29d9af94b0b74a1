package grader_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/labd/labd/grader"
	"github.com/labd/labd/labs"
	"github.com/labd/labd/sandbox"
	"github.com/labd/labd/sandbox/engine"
	"github.com/labd/labd/sandbox/engine/distribution"
	"github.com/labd/labd/sandbox/engine/image"
	"github.com/labd/labd/sandbox/enginebox"
	"github.com/labd/labd/sandbox/nsbox"
	"go.yaml.in/yaml/v3"
)

func TestMain(m *testing.M) {
	nsbox.Reexec()
	os.Exit(m.Run())
}

// box is a real sandbox (nsbox + labd's engine) with a grader Env on it.
type box struct {
	t   testing.TB
	sb  sandbox.Sandbox
	env *grader.Env
	reg string // host:port of a registry the engine pushes Docker Hub names to
}

func newBox(t testing.TB) *box {
	t.Helper()
	if os.Getuid() != 0 {
		t.Fatal("needs root (namespaces, containers); CI runs as root")
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Fatal("the docker CLI is missing: apt-get install docker.io (deploy/deps.sh test)")
	}
	ctx := context.Background()
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(reg.Close)
	regHost := strings.TrimPrefix(reg.URL, "http://")
	data, err := os.MkdirTemp("", "grader-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(data) })
	shared, err := engine.OpenShared(data, engine.SharedOptions{Registry: distribution.Options{HubStandIn: regHost}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := image.BootstrapBusybox(ctx, shared.Store); err != nil {
		t.Fatal(err)
	}
	mgr := sandbox.NewManager(&enginebox.Provider{Inner: nsbox.New(nsbox.Options{}), Shared: shared}, sandbox.ManagerOptions{DataDir: data, IdleTimeout: -1})
	t.Cleanup(func() { mgr.Close(context.Background()) })
	sb, err := mgr.GetOrCreate(ctx, "sb-grader", "alice")
	if err != nil {
		t.Fatal(err)
	}
	c, err := grader.NewClient(filepath.Join(filepath.Dir(sb.Workspace()), enginebox.GraderSocketName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &box{t: t, sb: sb, env: &grader.Env{Docker: c, Workspace: sb.Workspace(), Sandbox: sb}, reg: regHost}
}

// sh runs a script in the sandbox as the learner would and fails the test
// unless it exits 0.
func (b *box) sh(script string) string {
	b.t.Helper()
	return mustSucceed(b.t, script, b.try)
}

// mustSucceed runs script with try and fails the test unless it exits 0.
func mustSucceed(t testing.TB, script string, try func(string) (string, int)) string {
	t.Helper()
	out, code := try(script)
	if code != 0 {
		t.Fatalf("%s: exit %d\n%s", script, code, out)
	}
	return out
}

func (b *box) try(script string) (string, int) {
	b.t.Helper()
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	code, err := b.sb.Exec(ctx, sandbox.ExecSpec{Cmd: []string{"bash", "-c", script}, Stdout: &out, Stderr: &out})
	if err != nil {
		b.t.Fatalf("exec %q: %v", script, err)
	}
	return out.String(), code
}

// check parses a YAML check as lab.md would hold it and grades it.
func (b *box) check(y string) grader.CheckResult {
	b.t.Helper()
	return gradeYAML(b.t, b.env, y)
}

func (b *box) want(y string, st grader.State, msgPart string) {
	b.t.Helper()
	wantState(b.t, b.env, "", y, st, msgPart)
}

// gradeYAML parses a YAML check as lab.md would hold it and grades it in
// env.
func gradeYAML(t testing.TB, env *grader.Env, y string) grader.CheckResult {
	t.Helper()
	var spec map[string]any
	if err := yaml.Unmarshal([]byte(y), &spec); err != nil {
		t.Fatal(err)
	}
	c := checkOf(t, "c", spec)
	c.Title = "t"
	return grader.Check(context.Background(), env, 1, c)
}

// wantState fails the test unless the check y, graded in env, is in state
// st with msgPart in its message; where prefixes the failure.
func wantState(t testing.TB, env *grader.Env, where, y string, st grader.State, msgPart string) {
	t.Helper()
	r := gradeYAML(t, env, y)
	if r.State != st || !strings.Contains(r.Message, msgPart) {
		t.Fatalf("%scheck\n%s\n= %s %q, want %s with message containing %q", where, y, r.State, r.Message, st, msgPart)
	}
}

const dockerfile = "FROM busybox\nRUN echo built > /built\nCMD [\"cat\", \"/app.txt\"]\nCOPY app.txt /app.txt\n"

func TestFileAndDockerfileChecks(t *testing.T) {
	b := newBox(t)
	b.want("kind: file\npath: hello.txt", grader.StateFailed, "There is no file hello.txt")
	b.sh("echo 'Hello, shell' > hello.txt")
	b.want("kind: file\npath: hello.txt", grader.StatePassed, "")
	b.want("kind: file\npath: hello.txt\ncontains: Hello, shell", grader.StatePassed, "")
	b.want("kind: file\npath: hello.txt\ncontains: Goodbye", grader.StateFailed, `does not contain "Goodbye"`)
	b.want("kind: file\npath: hello.txt\nmatches: '^Hello, [a-z]+$'", grader.StatePassed, "")
	b.want("kind: file\npath: hello.txt\nexists: false", grader.StateFailed, "should not exist")
	// A symlink out of the workspace is not followed.
	b.sh("ln -s /etc/hostname escape.txt")
	b.want("kind: file\npath: escape.txt", grader.StateFailed, "no file")
	b.want("kind: file\npath: ../../../etc/passwd", grader.StateFailed, "no file")

	df := "kind: dockerfile\nfrom: busybox\ninstructions: [FROM busybox, RUN echo built, 'CMD [\"cat\",\"/app.txt\"]', COPY app.txt]\nlast: COPY app.txt"
	b.want(df, grader.StateFailed, "There is no Dockerfile")
	b.sh("printf '" + strings.ReplaceAll(dockerfile, "\n", `\n`) + "' > Dockerfile")
	b.want(df, grader.StatePassed, "")
	b.want("kind: dockerfile\nfrom: python", grader.StateFailed, "starts FROM busybox; this step needs FROM python")
	// COPY not last: the often-changing line must come last.
	b.sh("printf 'FROM busybox\\nCOPY app.txt /app.txt\\nRUN echo built > /built\\n' > Dockerfile")
	b.want("kind: dockerfile\nlast: COPY app.txt", grader.StateFailed, "The last instruction of Dockerfile is RUN")
}

func TestImageBuildCommandCleanChecks(t *testing.T) {
	b := newBox(t)
	img := "kind: image\nimage: hello-app\nbuilt: true\ndockerfile: Dockerfile"
	b.want(img, grader.StateFailed, "There is no image hello-app yet")
	// Adversarial: a file with the image's name is not an image.
	b.sh("touch hello-app")
	b.want(img, grader.StateFailed, "There is no image hello-app yet")
	// Adversarial: another image tagged with the name was not built here.
	b.sh("docker tag busybox hello-app")
	b.want(img, grader.StateFailed, "was not built here from a Dockerfile")
	b.sh("docker rmi hello-app")

	b.sh("printf '" + strings.ReplaceAll(dockerfile, "\n", `\n`) + "' > Dockerfile && echo one > app.txt")
	b.sh("docker build -t hello-app .")
	b.want(img, grader.StatePassed, "")
	b.want("kind: image\nimage: hello-app\nhistory: ['echo built']", grader.StatePassed, "")
	b.want("kind: image\nimage: hello-app\nhistory: ['pip install']", grader.StateFailed, "no layer made by")
	// The Dockerfile changed since the build: not built from this one.
	b.sh("echo 'LABEL x=y' >> Dockerfile")
	b.want(img, grader.StateFailed, "built from a different Dockerfile")
	b.sh("sed -i '$d' Dockerfile")

	cache := "kind: build\nimage: hello-app\ncache_reused: true\ncached_min: 1\nchanged: true"
	// The first build used no cache.
	b.want(cache, grader.StateFailed, "took 0 of its steps from the cache")
	b.sh("echo two > app.txt && docker build -t hello-app .")
	b.want(cache, grader.StatePassed, "")
	// Adversarial: a --no-cache rebuild does not count as reusing the cache.
	b.sh("echo three > app.txt && docker build --no-cache -t hello-app .")
	b.want(cache, grader.StateFailed, "--no-cache")
	b.want("kind: build\nimage: other", grader.StateFailed, "You have not built other yet")

	b.want("kind: command\ncommand: history", grader.StateFailed, "You have not run docker image history")
	// The grader's own history call above must not count as the learner's.
	b.want("kind: command\ncommand: history", grader.StateFailed, "not run")
	b.sh("docker image history hello-app")
	b.want("kind: command\ncommand: history", grader.StatePassed, "")
	b.want("kind: command\nmethod: GET\npath: '^/images/json$'", grader.StateFailed, "not run")
	b.sh("docker image ls")
	b.want("kind: command\nmethod: GET\npath: '^/images/json$'", grader.StatePassed, "")

	b.want("kind: clean\npruned: true", grader.StateFailed, "Nothing has been pruned")
	b.sh("docker image prune -f")
	b.want("kind: clean\npruned: true", grader.StatePassed, "")
}

func TestScriptChecks(t *testing.T) {
	b := newBox(t)
	b.want("kind: script\nrun: test -f done.txt", grader.StateFailed, "exit status 1")
	b.want("kind: script\nrun: 'echo \"FAIL: done.txt is missing\"; exit 1'", grader.StateFailed, "done.txt is missing")
	b.sh("touch done.txt")
	b.want("kind: script\nrun: test -f done.txt", grader.StatePassed, "")
	// A hanging script is stopped at its timeout with a message.
	start := time.Now()
	b.want("kind: script\nrun: sleep 60\ntimeout: 1s", grader.StateFailed, "did not finish within 1s")
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("hanging script check took %s", d)
	}
	// Without a live sandbox a script cannot run: could not check, not passed.
	env := *b.env
	env.Sandbox = nil
	c := checkOf(t, "s", map[string]any{"kind": "script", "run": "true"})
	if r := grader.Check(context.Background(), &env, 1, c); r.State != grader.StateError || !strings.HasPrefix(r.Message, "could not check") {
		t.Fatalf("script without sandbox = %s %q, want error 'could not check'", r.State, r.Message)
	}
}

func TestEngineGoneIsCouldNotCheck(t *testing.T) {
	b := newBox(t)
	c, err := grader.NewClient(filepath.Join(t.TempDir(), "nothing.sock"))
	if err != nil {
		t.Fatal(err)
	}
	env := &grader.Env{Docker: c, Workspace: b.env.Workspace}
	for _, y := range []string{"image: x", "repository: x", "command: logs", "image: x\ncached_min: 1"} {
		kind := map[string]string{"image: x": "image", "repository: x": "push", "command: logs": "command", "image: x\ncached_min: 1": "build"}[y]
		var spec map[string]any
		yaml.Unmarshal([]byte("kind: "+kind+"\n"+y), &spec)
		r := grader.Check(context.Background(), env, 1, checkOf(t, "x", spec))
		if r.State != grader.StateError || !strings.HasPrefix(r.Message, "could not check") {
			t.Errorf("%s with no engine = %s %q, want error 'could not check'", kind, r.State, r.Message)
		}
	}
}

func TestPushChecks(t *testing.T) {
	b := newBox(t)
	b.sh("printf '" + strings.ReplaceAll(dockerfile, "\n", `\n`) + "' > Dockerfile && echo one > app.txt && docker build -t hello-app .")
	first := "kind: push\nrepository: '{{user}}/hello-app'\nimage: hello-app"
	b.want(first, grader.StateFailed, "Nothing has been pushed")
	// Adversarial: a different image pushed under the right name.
	b.sh("docker tag busybox alice/hello-app && docker push alice/hello-app")
	b.want(first, grader.StateFailed, "is not hello-app")
	b.sh("docker tag hello-app alice/hello-app && docker push alice/hello-app")
	b.want(first, grader.StatePassed, "")

	again := "kind: push\nrepository: '{{user}}/hello-app'\nimage: hello-app\nexisting_min: 2"
	b.sh("echo two > app.txt && docker build -t hello-app . && docker tag hello-app alice/hello-app")
	b.want(again, grader.StateFailed, "")
	b.sh("docker push alice/hello-app")
	b.want(again, grader.StatePassed, "")
}

func TestContainerAndHTTPChecks(t *testing.T) {
	b := newBox(t)
	b.sh("mkdir -p site && echo 'hello world!' > site/index.html && printf 'FROM busybox\\nCOPY site /www\\nCMD [\"httpd\",\"-f\",\"-p\",\"5000\",\"-h\",\"/www\"]\\n' > Dockerfile && docker build -t web .")
	ctr := "kind: container\nimage: web\npublish: '5001:5000'"
	hc := "kind: http\nport: 5001\ncontains: hello world!\nimage: web"
	b.want(ctr, grader.StateFailed, "No running container of web")
	b.want(hc, grader.StateFailed, "")

	// Adversarial: something else publishes 5001.
	b.sh("mkdir -p o/site && echo 'something else' > o/site/index.html && cp Dockerfile o/ && docker build -t other o")
	b.sh("docker run -d --name other -p 5001:5000 other")
	b.want(ctr, grader.StateFailed, "No running container of web")
	b.want(hc, grader.StateFailed, "No running container of web")
	// The sandbox engine publishes ports: if it stops, the http pass and
	// 404 cases below would not run, so that is a failure, not a detour.
	if ports := b.sh("docker ps --format '{{.Ports}}'"); !strings.Contains(ports, "5001->5000") {
		t.Fatalf("docker run -p 5001:5000 published nothing: ports %q", ports)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(b.check("kind: http\nport: 5001\ncontains: hello world!").Message, "does not contain") && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	b.want("kind: http\nport: 5001\ncontains: hello world!", grader.StateFailed, "does not contain")
	b.sh("docker rm -f other")
	b.want("kind: http\nport: 5001\ncontains: hello world!", grader.StateFailed, "Nothing answers on port 5001")

	b.sh("docker run -d -p 5002:5000 web")
	b.want(ctr, grader.StateFailed, "No container publishes port 5001: run the image with -p 5001:5000")
	b.sh("docker run -d -p 5001:5000 web")
	b.want(ctr, grader.StatePassed, "")
	// The app may need a moment to listen.
	deadline = time.Now().Add(20 * time.Second)
	for b.check(hc).State != grader.StatePassed && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	b.want(hc, grader.StatePassed, "")
	b.want("kind: http\nport: 5001\npath: /missing\ncontains: x", grader.StateFailed, "answered 404")
	b.want("kind: http\nport: 5009", grader.StateFailed, "")
	b.want("kind: clean", grader.StateFailed, "still running")
	b.sh("docker rm -f $(docker ps -aq)")
	b.want("kind: clean\ncontainers: true", grader.StatePassed, "")
}

// checkOf is the check of a YAML mapping's fields, as lab.md would give
// it, under id.
func checkOf(tb testing.TB, id string, fields map[string]any) labs.Check {
	tb.Helper()
	c, err := labs.CheckOf(fields)
	if err != nil {
		tb.Fatal(err)
	}
	c.ID = id
	return c
}

// The guide lists every name a command check accepts with the call it
// stands for, as the grader matches it.
func TestGuideListsCommands(t *testing.T) {
	b, err := os.ReadFile("../docs/authoring.md")
	if err != nil {
		t.Fatal(err)
	}
	guide := string(b)
	for _, c := range grader.Commands() {
		row := fmt.Sprintf("| `%s` | %s | `%s %s` |", c.Name, c.Say, c.Method, strings.ReplaceAll(c.Path, "|", `\|`))
		if !strings.Contains(guide, row) {
			t.Errorf("docs/authoring.md lacks the row\n%s", row)
		}
	}
}
