package e2e_test

import (
	"context"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/labd/labd/grader/progress"
	"github.com/labd/labd/internal/testenv"
	"github.com/labd/labd/sandbox/engine"
	"github.com/labd/labd/sandbox/engine/image"
	"github.com/labd/labd/sandbox/engine/mountinfo"
)

// TestPersistAcrossKill is issue 13's "nothing lost on kill -9": two
// learners of a real `labd serve` each build an image, run it with -p
// 5001:5000, push it to the classroom registry and pass the lab's first
// step (one of them also keeps a file in a named volume); then labd gets
// SIGKILL while one of them is in the middle of a build's RUN step, and
// is started again on the same data dir and addresses. Right after the
// restart nothing of the dead labd is left on the host (mounts, cgroups,
// processes, network namespaces, scratch directories, its listeners).
// The learners reopen the lab and find everything: workspace files,
// images, build cache, the volume's file, what they pushed, their
// registry password, their passed step; their containers are listed as
// exited, and `docker start` makes port 5001 answer again in the shell
// and through the port preview. The interrupted build left no image. A
// clean stop at the end leaves nothing either.
func TestPersistAcrossKill(t *testing.T) {
	root := moduleRoot(t)
	testenv.Root(t, "sandboxes run in new namespaces")
	testenv.Command(t, "nsenter", "util-linux")
	testenv.Command(t, "ip", "iproute2")
	bin := buildLabd(t, root)
	data := persistData(t, bin)
	// A cgroup parent of this test's own: other tests' labd (default
	// parent "labd") run at the same time and must not be counted.
	scope := leakScope{data: data, run: filepath.Dir(engine.RuntimeRoot(data, true)), parent: fmt.Sprintf("labd-persist-%d", os.Getpid()), bin: bin}
	t.Cleanup(func() { removeCgroupParent(scope.parent) })
	if got := scope.count(t, 0); !got.empty() {
		t.Fatalf("before labd started, the test's scope is not empty:\n%s", got)
	}
	addr, regAddr := freeLoopbackAddr(t), freeLoopbackAddr(t)
	args := func(warm string) []string {
		return []string{"--addr", addr, "--content", filepath.Join(root, "web/e2e/testdata/persist"), "--data", data,
			"--idle-timeout", "30m", "--registry-addr", regAddr, "--cgroup-parent", scope.parent, "--warm-sandboxes", warm}
	}
	// A warm pool: the learners' sandboxes are given out from it, so
	// their files live under DATA/sandboxes/sb-w… behind a link.
	srv := serveLabd(t, bin, args("2")...)

	type learnerState struct {
		l         *wsLearner
		who       string
		password  string
		learnerID string
		imageID   string
		volume    bool
	}
	learners := []*learnerState{{who: "alice", volume: true}, {who: "bob"}}
	for _, ls := range learners {
		ls.l = openLab(t, srv, persistLab)
		ls.l.waitPrompt(t)
		ls.password = registryPassword(t, srv, ls.l)
		vol := ""
		if ls.volume {
			vol = `docker volume create keep && docker run --rm -v keep:/v busybox sh -c 'echo vol-` + ls.who + ` > /v/f.txt'`
		}
		out, code, ok := ls.l.sh(`set -e
mkdir -p ~/app && cd ~/app
printf 'FROM busybox\nARG WHO\nRUN mkdir /www && echo "persist-$WHO" > /www/index.html\nRUN echo layer-two > /www/two.txt\nCMD ["httpd", "-f", "-p", "5000", "-h", "/www"]\n' > Dockerfile
docker build --build-arg WHO=`+ls.who+` -t persist-web .
docker run -d --name web -p 5001:5000 persist-web
`+vol+`
for i in $(seq 150); do curl -sf localhost:5001 && break; sleep 0.2; done
printf '%s\n' '`+ls.password+`' | docker login -u "$LABD_USER" --password-stdin
docker tag persist-web "$LABD_USER/persist-web"
docker push "$LABD_USER/persist-web"
echo kept-`+ls.who+` > ~/persist.txt
echo "IMAGE $(docker image inspect -f '{{.Id}}' persist-web)"
`, 5*time.Minute)
		if !ok || code != 0 {
			t.Fatalf("%s's work before the kill: exit %d (done %v):\n%s", ls.who, code, ok, out)
		}
		if !strings.Contains(out, "persist-"+ls.who) {
			t.Fatalf("%s's container did not answer on port 5001:\n%s", ls.who, out)
		}
		m := regexp.MustCompile(`IMAGE (sha256:[0-9a-f]{64})`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no image ID in:\n%s", out)
		}
		ls.imageID = m[1]
		waitPreview(t, ls.l, srv, "persist-"+ls.who)
		ls.learnerID = grade(t, filepath.Join(data, "grade.sock"), ls.l.sid, persistLab).Learner
	}
	// The live grader records the passes (what the kill must not lose).
	for _, ls := range learners {
		waitPassed(t, data, ls.learnerID, "kept-file", "web-running", "web-pushed")
	}
	running := scope.count(t, srv.cmd.Process.Pid)
	t.Logf("held by labd and two sandboxes:\n%s", running)

	// A build in the middle of a RUN step when labd dies.
	alice := learners[0].l
	alice.upload("half", map[string]string{"Dockerfile": "FROM busybox\nRUN echo one > /one\nRUN echo started-sleep && sleep 300\n"})
	off := len(alice.output())
	alice.typeLine(`docker build -t halfbuilt ~/half`)
	if _, ok := alice.waitFor(off, regexp.MustCompile(`started-sleep`), 3*time.Minute); !ok {
		t.Fatalf("the build's RUN step did not start:\n%s", alice.output()[off:])
	}
	if err := srv.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-srv.done
	t.Logf("after SIGKILL, before the restart:\n%s", scope.count(t, 0))
	// Its listeners died with it, although its sandboxes' processes
	// live on until the next start sweeps them.
	for _, a := range []string{addr, regAddr} {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			t.Errorf("the killed labd's address %s is still taken: %v", a, err)
			continue
		}
		ln.Close()
	}

	// No warm pool this time: right after the start no sandbox exists,
	// so whatever is counted is the dead labd's.
	srv = serveLabd(t, bin, args("none")...)
	restarted := srv
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the restarted labd's log:\n%s", tail(restarted.log(), 6000))
		}
	})
	if got := scope.count(t, srv.cmd.Process.Pid); !got.empty() {
		t.Errorf("after the restart, before any learner came back, the killed labd's sandboxes left:\n%s", got)
	}

	for _, ls := range learners {
		ls.l.ws.Close()
		ls.l = reattach(t, srv, persistLab, ls.l)
		ls.l.waitPrompt(t)
		if pw := registryPassword(t, srv, ls.l); pw != ls.password {
			t.Errorf("%s's registry password changed across the restart: %q, was %q", ls.who, pw, ls.password)
		}
		// The grade before `docker start`: the container check fails
		// now, and the step stays passed from the progress store.
		rep := grade(t, filepath.Join(data, "grade.sock"), ls.l.sid, persistLab)
		if len(rep.Result.Steps) == 0 || rep.Result.Steps[0].State != "passed" {
			t.Errorf("%s's first step is not passed after the restart: %+v", ls.who, rep.Result.Steps)
		}
		if !slices.Contains(rep.Sticky, "web-running") {
			t.Errorf("%s: web-running should be passed from the progress store (sticky) while the container is stopped; sticky %q", ls.who, rep.Sticky)
		}
		vol := ""
		if ls.volume {
			vol = `echo "VOLUMES $(docker volume ls -q | tr '\n' ' ')"; echo "VOLFILE $(docker run --rm -v keep:/v busybox cat /v/f.txt)"`
		}
		out, code, ok := ls.l.sh(`echo "FILE $(cat ~/persist.txt)"
echo "IMAGE $(docker image inspect -f '{{.Id}}' persist-web)"
docker ps -a --format 'PS {{.Names}} {{.State}} {{.Status}}'
docker inspect -f 'INSPECT {{.State.Status}} running={{.State.Running}} pid={{.State.Pid}} exit={{.State.ExitCode}}' web
`+vol+`
cd ~/app && docker build --build-arg WHO=`+ls.who+` -t persist-web . 2>&1 | sed 's/^/BUILD /'
printf '%s\n' '`+ls.password+`' | docker login -u "$LABD_USER" --password-stdin 2>&1 | sed 's/^/LOGIN /'
docker rmi "$LABD_USER/persist-web" >/dev/null
docker pull "$LABD_USER/persist-web" 2>&1 | sed 's/^/PULL /'
echo "PULLED $(docker image inspect -f '{{.Id}}' "$LABD_USER/persist-web")"
docker images -a --format 'IMAGES {{.Repository}}:{{.Tag}} {{.ID}}'
for id in $(docker images -a -q); do docker history -q $id >/dev/null || echo "BROKEN $id"; done
docker start web >/dev/null && for i in $(seq 150); do curl -sf localhost:5001 && break; sleep 0.2; done | sed 's/^/CURL /'
docker ps --format 'UP {{.Names}} {{.Ports}}'
`, 5*time.Minute)
		if !ok || code != 0 {
			t.Fatalf("%s after the restart: exit %d (done %v):\n%s", ls.who, code, ok, out)
		}
		want := []string{
			"FILE kept-" + ls.who,
			"IMAGE " + ls.imageID,
			"PS web exited Exited (",
			"INSPECT exited running=false pid=0",
			"LOGIN Login Succeeded",
			"PULLED " + ls.imageID,
			"CURL persist-" + ls.who,
			"UP web ",
		}
		if ls.volume {
			want = append(want, "VOLUMES keep", "VOLFILE vol-"+ls.who)
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("%s after the restart: no %q in:\n%s", ls.who, w, out)
			}
		}
		// Every step after FROM: ARG, both RUNs, CMD.
		if n := strings.Count(out, "BUILD  ---> Using cache"); n != 4 {
			t.Errorf("%s's rebuild used the cache for %d of its 4 steps after FROM:\n%s", ls.who, n, out)
		}
		for _, bad := range []string{"halfbuilt", "BROKEN", "PS web running"} {
			if strings.Contains(out, bad) {
				t.Errorf("%s after the restart: %q in:\n%s", ls.who, bad, out)
			}
		}
		waitPreview(t, ls.l, srv, "persist-"+ls.who)
	}
	// The interrupted build: its finished RUN step is build cache, the
	// killed one left nothing, and it builds (without the sleep) and tags.
	out, code, ok := learners[0].l.sh(`sed -i 's/sleep 300/sleep 0/' ~/half/Dockerfile && docker build -t halfbuilt ~/half`, 3*time.Minute)
	if !ok || code != 0 || !regexp.MustCompile(`Step 2/3 : RUN echo one > /one\n ---> Using cache\n`).MatchString(out) || !strings.Contains(out, "Successfully tagged halfbuilt:latest") {
		t.Errorf("the interrupted build again: exit %d (done %v), want its first RUN step from the cache:\n%s", code, ok, out)
	}
	t.Logf("after the restart, the learners back:\n%s", scope.count(t, srv.cmd.Process.Pid))

	srv.stop(t)
	if got := scope.count(t, 0); !got.empty() {
		t.Errorf("after a clean stop, left:\n%s", got)
	}
}

const persistLab = "persist-lab"

// persistData makes a data dir of the test's own with busybox and the
// sandbox image, saved from LABD_E2E_LABS_DATA's base view (opened
// read-only) or bootstrapped, and imported as an operator would; removed
// with everything mounted under it at the end.
func persistData(t *testing.T, bin string) string {
	t.Helper()
	data, err := os.MkdirTemp("", "labd-persist-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		mountinfo.UnmountUnder(data)
		os.RemoveAll(data)
	})
	src := os.Getenv("LABD_E2E_LABS_DATA")
	if src == "" {
		src = data
		for _, img := range []string{"busybox", "sandbox"} {
			if out, err := exec.Command(bin, "images", "bootstrap", img, "--data", data).CombinedOutput(); err != nil {
				t.Fatalf("bootstrap %s: %v\n%s", img, err, out)
			}
		}
		return data
	}
	st, err := image.OpenReadOnly(filepath.Join(src, "engine"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := st.View(image.BaseView)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(v.Save(ctx, []string{"busybox:latest", image.SandboxTag}, pw)) }()
	imp := exec.CommandContext(ctx, bin, "images", "import", "-", "--data", data)
	imp.Stdin = pr
	if out, err := imp.CombinedOutput(); err != nil {
		t.Fatalf("labd images import from %s: %v\n%s", src, err, out)
	}
	return data
}

var registryPasswordRE = regexp.MustCompile(`class="registry-password">([^<]*)<`)

// registryPassword is the password the lab page shows l.
func registryPassword(t *testing.T, srv *labd, l *wsLearner) string {
	t.Helper()
	req, _ := http.NewRequest("GET", srv.url+"/labs/"+persistLab, nil)
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	resp, err := l.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := registryPasswordRE.FindSubmatch(body)
	if m == nil || len(m[1]) == 0 {
		t.Fatalf("the lab page shows no registry password (%d):\n%s", resp.StatusCode, body)
	}
	return html.UnescapeString(string(m[1]))
}

// waitPassed waits until the progress store in DATA/labd.db has every
// check passed for learner.
func waitPassed(t *testing.T, data, learner string, checks ...string) {
	t.Helper()
	ctx := context.Background()
	st, err := progress.Open(ctx, filepath.Join(data, "labd.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		passed, err := st.Passed(ctx, learner, persistLab)
		if err != nil {
			t.Fatal(err)
		}
		missing := 0
		for _, c := range checks {
			if _, ok := passed[c]; !ok {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("learner %s: passes recorded %v, want %v", learner, passed, checks)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
