package grader_test

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labd/labd/grader"
	"github.com/labd/labd/labs"
	"github.com/labd/labd/sandbox/engine/enginetest"
	"github.com/labd/labd/sandbox/engine/mountinfo"
)

// ref is a real Docker Engine (Debian's dockerd) with a learner workspace
// beside it: what a sandbox whose DOCKER_HOST points at Docker looks like
// to the grader. No labd engine, so no build, push or call records.
type ref struct {
	t   testing.TB
	ws  string
	ns  string // network namespace dockerd publishes ports in
	env *grader.Env
	e   *enginetest.Engine
}

func startRef(t testing.TB) *ref {
	t.Helper()
	if os.Getuid() != 0 {
		t.Fatal("needs root (dockerd); CI runs as root")
	}
	for _, p := range []string{enginetest.Dockerd, enginetest.DockerCLI20, "/bin/busybox"} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%v: apt-get install docker.io busybox-static (deploy/deps.sh test)", err)
		}
	}
	dir, err := os.MkdirTemp("", "grader-dockerd-")
	if err != nil {
		t.Fatal(err)
	}
	// A dockerd inside a namespace of its own can publish ports without
	// touching the host's network.
	e, ns, err := enginetest.StartDockerdInNetNS(dir)
	if err != nil {
		os.RemoveAll(dir)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.Stop()
		if err := enginetest.RemoveNetNS(ns); err != nil {
			t.Error(err)
		}
		mountinfo.UnmountUnder(dir)
		os.RemoveAll(dir)
	})
	ws := filepath.Join(dir, "workspace")
	if err := os.Mkdir(ws, 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := grader.NewClient(e.Socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := &ref{t: t, ws: ws, ns: ns, e: e, env: &grader.Env{Docker: c, Workspace: ws}}
	r.importBusybox(dir)
	return r
}

// importBusybox makes busybox:latest in dockerd from Debian's
// busybox-static (no image can be pulled here): /bin/busybox and a link
// per applet, imported as one layer.
func (r *ref) importBusybox(dir string) {
	r.t.Helper()
	list, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		r.t.Fatalf("busybox --list: %v", err)
	}
	bin, err := os.ReadFile("/bin/busybox")
	if err != nil {
		r.t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range []string{"bin/", "tmp/", "etc/"} {
		tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755})
	}
	tw.WriteHeader(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bin))})
	tw.Write(bin)
	for _, a := range strings.Fields(string(list)) {
		if a != "busybox" {
			tw.WriteHeader(&tar.Header{Name: "bin/" + a, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777})
		}
	}
	if err := tw.Close(); err != nil {
		r.t.Fatal(err)
	}
	tarPath := filepath.Join(dir, "busybox.tar")
	if err := os.WriteFile(tarPath, buf.Bytes(), 0o644); err != nil {
		r.t.Fatal(err)
	}
	r.sh(`docker import --change 'CMD ["sh"]' ` + tarPath + ` busybox:latest`)
}

// sh runs a script in the workspace with DOCKER_HOST at dockerd, as a
// learner's shell would, and fails the test unless it exits 0.
func (r *ref) sh(script string) string {
	r.t.Helper()
	return mustSucceed(r.t, script, r.try)
}

func (r *ref) try(script string) (string, int) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	home := filepath.Join(filepath.Dir(r.ws), "home")
	cmd := exec.CommandContext(ctx, "bash", "-c", script)
	cmd.Dir = r.ws
	// Debian's CLI 20.10 first: it builds with the classic builder unless
	// DOCKER_BUILDKIT=1, as a learner's Docker 20.10 would.
	cmd.Env = []string{"DOCKER_HOST=" + r.e.Host(), "HOME=" + home, "DOCKER_CONFIG=" + filepath.Join(home, ".docker"),
		"PATH=/usr/bin:/bin:/usr/sbin:/sbin:/usr/local/bin", "DOCKER_CLI_HINTS=false"}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), ee.ExitCode()
	} else if err != nil {
		r.t.Fatalf("%s: %v", script, err)
	}
	return out.String(), 0
}

func (r *ref) want(y string, st grader.State, msgPart string) {
	r.t.Helper()
	wantState(r.t, r.env, "on dockerd, ", y, st, msgPart)
}

// dockerdLab is a lab whose checks cover every kind; the "records" step
// holds the kinds only labd's engine can answer.
const dockerdLab = `---
title: Grader on a real Docker Engine
summary: Every check kind against dockerd.
duration: 5 min
level: beginner
---
Intro.

## Files

` + "```check" + `
- kind: file
  path: hello.txt
  contains: Hello
- kind: dockerfile
  from: busybox
  last: COPY app.txt
` + "```" + `

## Image

` + "```check" + `
- kind: image
  image: hello-app
  built: true
  dockerfile: Dockerfile
- kind: image
  image: hello-app
  history: ['echo built']
` + "```" + `

## Run

` + "```check" + `
- kind: container
  image: web
  publish: "5001:5000"
` + "```" + `

## Records

` + "```check" + `
- kind: build
  image: hello-app
  cache_reused: true
- kind: push
  repository: "{{user}}/hello-app"
  image: hello-app
- kind: command
  command: history
` + "```" + `

## Clean

` + "```check" + `
- kind: clean
  pruned: true
` + "```" + `

## Sandbox

` + "```check" + `
- kind: http
  port: 5001
  contains: hello
- kind: script
  run: "true"
` + "```" + `
`

// TestGraderOnDockerd runs the grader against Debian's dockerd, as for a
// sandbox whose DOCKER_HOST is a real Docker Engine: every kind the Docker
// API can answer passes and fails as on labd's engine; the kinds that need
// labd's records (build, push, command, clean's pruned) and a live sandbox
// (http, script) say "could not check" with the reason, never passed.
func TestGraderOnDockerd(t *testing.T) {
	r := startRef(t)
	labDir := filepath.Join(t.TempDir(), "on-dockerd")
	if err := os.MkdirAll(labDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(labDir, "lab.md"), []byte(dockerdLab), 0o644); err != nil {
		t.Fatal(err)
	}
	lab, problems := labs.Load(labDir)
	if len(problems) > 0 {
		t.Fatalf("lab: %v", problems)
	}
	byTitle := func(res grader.LabResult) map[string]grader.StepResult {
		m := map[string]grader.StepResult{}
		for _, st := range res.Steps {
			m[st.Title] = st
		}
		return m
	}
	// wantRecords: the kinds needing labd's engine or a sandbox are errors
	// with their reason, whatever the learner did.
	wantRecords := func(res grader.LabResult) {
		t.Helper()
		for _, title := range []string{"Records", "Sandbox"} {
			st := byTitle(res)[title]
			if st.State != grader.StateError {
				t.Errorf("step %s = %s, want error", title, st.State)
			}
			for _, c := range st.Checks {
				want := "could not check: needs labd's engine"
				if title == "Sandbox" {
					want = "checks need a running sandbox"
				}
				if c.State != grader.StateError || !strings.Contains(c.Message, want) {
					t.Errorf("%s check = %s %q, want error containing %q", c.Kind, c.State, c.Message, want)
				}
			}
		}
	}

	// An empty engine and workspace: nothing passes.
	res := grader.Grade(context.Background(), r.env, lab)
	if res.Passed != 0 {
		t.Fatalf("on an empty dockerd %d checks pass: %+v", res.Passed, res)
	}
	for _, title := range []string{"Files", "Image", "Run"} {
		if st := byTitle(res)[title]; st.State != grader.StateFailed {
			t.Errorf("empty: step %s = %s, want failed", title, st.State)
		}
	}
	wantRecords(res)
	if c := byTitle(res)["Clean"].Checks[0]; c.State != grader.StateError || !strings.Contains(c.Message, "could not check: needs labd's engine") {
		t.Errorf("empty: clean pruned = %s %q, want could not check", c.State, c.Message)
	}

	t.Run("file", func(t *testing.T) {
		r.t = t
		r.want("kind: file\npath: hello.txt", grader.StateFailed, "There is no file hello.txt")
		r.sh("echo 'Hello, shell' > hello.txt")
		r.want("kind: file\npath: hello.txt\ncontains: Hello, shell", grader.StatePassed, "")
		r.want("kind: file\npath: hello.txt\ncontains: Goodbye", grader.StateFailed, `does not contain "Goodbye"`)
	})
	t.Run("dockerfile", func(t *testing.T) {
		r.t = t
		df := "kind: dockerfile\nfrom: busybox\nlast: COPY app.txt"
		r.want(df, grader.StateFailed, "There is no Dockerfile")
		r.sh("printf '" + strings.ReplaceAll(dockerfile, "\n", `\n`) + "' > Dockerfile && echo one > app.txt")
		r.want(df, grader.StatePassed, "")
		r.want("kind: dockerfile\nfrom: python", grader.StateFailed, "this step needs FROM python")
	})
	t.Run("image", func(t *testing.T) {
		r.t = t
		exists := "kind: image\nimage: hello-app"
		built := "kind: image\nimage: hello-app\nbuilt: true"
		fromDF := "kind: image\nimage: hello-app\nbuilt: true\ndockerfile: Dockerfile"
		r.want(exists, grader.StateFailed, "There is no image hello-app yet")
		// Adversarial: another image tagged with the name exists, but was
		// not built here (no Parent, no BuildKit history).
		r.sh("docker tag busybox hello-app")
		r.want(exists, grader.StatePassed, "")
		r.want(built, grader.StateFailed, "was not built here from a Dockerfile")
		r.want(fromDF, grader.StateFailed, "was not built here from a Dockerfile")
		r.sh("docker rmi hello-app")

		// The classic builder (CLI 20.10's default): dockerd records the
		// parent image and one history entry per instruction.
		r.sh("docker build -t hello-app .")
		r.want(built, grader.StatePassed, "")
		r.want(fromDF, grader.StatePassed, "")
		r.want("kind: image\nimage: hello-app\nhistory: ['echo built']", grader.StatePassed, "")
		r.want("kind: image\nimage: hello-app\nhistory: ['pip install']", grader.StateFailed, "no layer made by")
		// The Dockerfile changed since the build: not built from this one.
		r.sh("echo 'LABEL x=y' >> Dockerfile")
		r.want(fromDF, grader.StateFailed, "built from a different Dockerfile than your Dockerfile")
		r.want(built, grader.StatePassed, "") // built here all the same
		r.sh("sed -i '$d' Dockerfile && sed -i 's/echo built/echo other/' Dockerfile")
		r.want(fromDF, grader.StateFailed, "built from a different Dockerfile")
		r.sh("sed -i 's/echo other/echo built/' Dockerfile")
		r.want(fromDF, grader.StatePassed, "")

		// BuildKit: no Parent; the history, which a pulled image built
		// with BuildKit has too, is matched with the workspace Dockerfile.
		bk := "kind: image\nimage: bk-app\nbuilt: true"
		r.sh("DOCKER_BUILDKIT=1 docker build -t bk-app .")
		r.want(bk, grader.StatePassed, "")
		r.want(bk+"\ndockerfile: Dockerfile", grader.StatePassed, "")
		r.sh("echo 'LABEL x=y' >> Dockerfile")
		r.want(bk+"\ndockerfile: Dockerfile", grader.StateFailed, "built from a different Dockerfile")
		// Without a Dockerfile to hold it to, a BuildKit image that does
		// not match ./Dockerfile may be pulled or built from another file.
		r.want(bk, grader.StateError, "could not check: bk-app was built with BuildKit")
		r.sh("sed -i '$d' Dockerfile")
		r.want(bk, grader.StatePassed, "")
	})
	t.Run("container", func(t *testing.T) {
		r.t = t
		r.sh("mkdir -p web/site && echo hello > web/site/index.html && printf 'FROM busybox\\nCOPY site /www\\nCMD [\"httpd\",\"-f\",\"-p\",\"5000\",\"-h\",\"/www\"]\\n' > web/Dockerfile && docker build -t web web")
		r.sh("mkdir -p o && cp -r web/site web/Dockerfile o/ && echo something else > o/site/index.html && docker build -t other o")
		ctr := "kind: container\nimage: web\npublish: '5001:5000'"
		r.want(ctr, grader.StateFailed, "No running container of web")
		// Adversarial: another image publishes 5001.
		r.sh("docker run -d --name other -p 5001:5000 other")
		r.want(ctr, grader.StateFailed, "No running container of web: start one with docker run -d -p 5001:5000 web")
		r.want("kind: container\nname: other\npublish: '5001:5000'", grader.StatePassed, "")
		r.sh("docker rm -f other")
		r.sh("docker run -d -p 5002:5000 web")
		r.want(ctr, grader.StateFailed, "No container publishes port 5001: run the image with -p 5001:5000")
		r.sh("docker run -d --name web1 -p 5001:5000 web")
		r.want(ctr, grader.StatePassed, "")
		r.want("kind: container\nimage: web\npublish: '5001:80'", grader.StateFailed, "Port 5001 goes to port 5000 of the container")
		// dockerd really publishes it (in its own network namespace).
		out := r.sh("docker ps --format '{{.Names}} {{.Ports}}'")
		if !strings.Contains(out, "web1 0.0.0.0:5001->5000/tcp") {
			t.Fatalf("dockerd does not publish 5001:\n%s", out)
		}
		// httpd as PID 1 ignores SIGTERM: -t 1 spares the test 10 s.
		r.sh("docker stop -t 1 web1")
		r.want(ctr, grader.StateFailed, "No container publishes port 5001") // the 5002 one still runs
		r.want("kind: container\nname: web1\nrunning: false", grader.StatePassed, "")
		r.sh("docker start web1")
		r.want(ctr, grader.StatePassed, "")

		// The whole lab: what dockerd can answer passes, the rest says why not.
		res := grader.Grade(context.Background(), r.env, lab)
		for _, title := range []string{"Files", "Image", "Run"} {
			if st := byTitle(res)[title]; st.State != grader.StatePassed {
				t.Errorf("step %s = %s, want passed: %+v", title, st.State, st.Checks)
			}
		}
		wantRecords(res)
		// Running containers fail clean before its record part is asked.
		if c := byTitle(res)["Clean"].Checks[0]; c.State != grader.StateFailed || !strings.Contains(c.Message, "still running") {
			t.Errorf("clean pruned with containers running = %s %q, want failed", c.State, c.Message)
		}
		if res.Passed != 5 || res.Total != 11 {
			t.Errorf("lab: %d of %d passed, want 5 of 11", res.Passed, res.Total)
		}
	})
	t.Run("clean", func(t *testing.T) {
		r.t = t
		r.want("kind: clean", grader.StateFailed, "still running")
		r.sh("docker stop -t 1 $(docker ps -q)")
		r.want("kind: clean", grader.StatePassed, "")
		r.want("kind: clean\ncontainers: true", grader.StateFailed, "Stopped containers are left")
		r.sh("docker container prune -f")
		r.want("kind: clean\ncontainers: true", grader.StatePassed, "")
		r.want("kind: clean\nimages: [hello-app]", grader.StateFailed, "The image hello-app is still there")
		r.sh("docker rmi hello-app")
		r.want("kind: clean\nimages: [hello-app]", grader.StatePassed, "")
		// dockerd pruned, but keeps no record of it: could not check.
		r.want("kind: clean\npruned: true", grader.StateError, "could not check: needs labd's engine")
	})
	t.Run("records", func(t *testing.T) {
		r.t = t
		// What the learner did is real, but only labd's engine records it.
		r.sh("docker image history bk-app && DOCKER_BUILDKIT=0 docker build -t bk-app . && docker image ls")
		for _, y := range []string{
			"kind: build\nimage: bk-app\ncached_min: 1",
			"kind: build\nimage: never-built",
			"kind: push\nrepository: '{{user}}/bk-app'",
			"kind: command\ncommand: history",
			"kind: command\nmethod: GET\npath: '^/images/json$'",
		} {
			r.want(y, grader.StateError, "could not check: needs labd's engine (this engine keeps no build, push or command records)")
		}
	})
}
