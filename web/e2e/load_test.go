package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/labd/labd/internal/testenv"
)

// TestLoad is a class at once (issue 13): LABD_LOAD_N learners (default
// 10) of a real `labd serve` open the bundled Docker images lab within
// one second, each with cookies of its own, over the real HTTP and
// terminal websocket protocol: the page, the prompt, the lab's app.py and
// Dockerfile through the Files panel, `docker build`, `docker run -d -p
// 5001:5000`, the app through labd's port preview, `docker login` and
// `docker push` to the classroom registry under the learner's own user,
// then the terminal closes. Every error of every operation fails the test;
// the timings are only logged (a table, and $LABD_ARTIFACTS/load-N.json),
// never compared with a goal. The class must end within a deadline that
// grows with N: past it, something hung.
//
// "hostile" runs the same class beside one more learner who, before the
// others arrive, starts a fork bomb that holds its sandbox at the pids
// limit, fills memory (an allocation in its shell, a tmpfs, a container
// allocating in a loop) and fills disk (fallocate, and a container
// writing into its workspace in a loop), all of it still running while
// the others work; they must still finish without an error. Its figures
// are reported apart (load-N-hostile.json), with what the hostile sandbox
// went through (pids, memory at its limit, files, its containers).
//
// make test runs both with N=10 (within make test-e2e); make test-load
// N=… runs them alone.
//
// The base images come from LABD_E2E_LABS_DATA when set (as make
// test-e2e), else a fresh data dir is bootstrapped. LABD_LOAD_FILL sets
// the hostile learner's fallocate size (default 8G: bounded, since the
// host's disk is shared where sandboxes have no disk quota);
// LABD_LOAD_FLAGS adds flags to labd serve (e.g. --warm-sandboxes 50),
// LABD_LOAD_SETTLE (a duration) lets the class arrive that long after
// labd started (by default at once).
func TestLoad(t *testing.T) {
	root := moduleRoot(t)
	testenv.Root(t, "sandboxes run in new namespaces")
	n := 10
	if s := os.Getenv("LABD_LOAD_N"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 || v > 200 {
			t.Fatalf("LABD_LOAD_N=%q: want a number of learners from 1 to 200", s)
		}
		n = v
	}
	bin := buildLabd(t, root)
	data := os.Getenv("LABD_E2E_LABS_DATA")
	if data == "" {
		// Short: the engine socket's path must fit in 107 bytes.
		var err error
		if data, err = os.MkdirTemp("", "labd-load-"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(data) })
	}
	data, _ = filepath.Abs(data)
	if out, err := exec.Command(bin, "images", "bootstrap", "all", "--data", data).CombinedOutput(); err != nil {
		t.Fatalf("labd images bootstrap all --data %s: %v\n%s", data, err, out)
	}
	lab := loadLabFiles(t, root)
	for _, hostile := range []bool{false, true} {
		name := "plain"
		if hostile {
			name = "hostile"
		}
		t.Run(name, func(t *testing.T) {
			cl := &class{t: t, n: n, hostile: hostile, data: data, files: lab}
			args := []string{"--addr", "127.0.0.1:0", "--content", filepath.Join(root, "content"),
				"--data", data, "--idle-timeout", "30m", "--registry-addr", freeLoopbackAddr(t),
				// All learners come from 127.0.0.1: a class behind one
				// address needs a burst of one per learner.
				"--max-sandboxes", strconv.Itoa(2*n + 20), "--admission-burst", strconv.Itoa(n + 10)}
			args = append(args, strings.Fields(os.Getenv("LABD_LOAD_FLAGS"))...)
			t.Logf("labd serve %s", strings.Join(args, " "))
			cl.srv = serveLabd(t, bin, args...)
			cl.run()
		})
	}
}

// loadLab is the lab the class works through.
const loadLab = "docker-images"

// The operations of one learner, in order; "learner" is the whole run.
var loadOpNames = []string{"page", "prompt", "files", "build", "run", "preview", "preview-get", "login", "push", "leave", "learner"}

// loadLabFiles reads app.py and the Dockerfile out of the lab's
// solution.sh, so the class builds what the lab builds.
func loadLabFiles(t *testing.T, root string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "content", loadLab, "solution.sh"))
	if err != nil {
		t.Fatal(err)
	}
	heredoc := func(start, end string) string {
		s := string(b)
		i := strings.Index(s, start)
		if i < 0 {
			t.Fatalf("solution.sh changed shape: no %q", start)
		}
		s = s[i+len(start):]
		j := strings.Index(s, end)
		if j < 0 {
			t.Fatalf("solution.sh changed shape: no %q after %q", end, start)
		}
		return s[:j+1]
	}
	files := map[string]string{
		"app.py":     heredoc("cat > app.py <<'PY'\n", "\nPY\n"),
		"Dockerfile": heredoc("cat > Dockerfile <<'DF'\n", "\nDF\n"),
	}
	if !strings.Contains(files["app.py"], "hello world!") || !strings.HasPrefix(files["Dockerfile"], "FROM ") {
		t.Fatalf("solution.sh changed shape: app.py %q, Dockerfile %q", files["app.py"], files["Dockerfile"])
	}
	return files
}

// class is one run of TestLoad against one labd serve.
type class struct {
	t       *testing.T
	n       int
	hostile bool
	data    string
	files   map[string]string
	srv     *labd

	mu      sync.Mutex
	ops     map[string]*loadOp
	where   []string // each learner's operation under way
	sandbox []sandboxMem
	rep     loadReport
}

type loadOp struct {
	Name   string   `json:"name"`
	Count  int      `json:"count"`
	Errors int      `json:"errors"`
	P50Ms  float64  `json:"p50_ms"`
	P99Ms  float64  `json:"p99_ms"`
	MaxMs  float64  `json:"max_ms"`
	First  []string `json:"first_errors,omitempty"`

	durs []time.Duration
}

type sandboxMem struct {
	Sandbox string `json:"sandbox"`
	Current int64  `json:"current_bytes"` // at the end of the learner's run
	Peak    int64  `json:"peak_bytes"`
	Limit   int64  `json:"limit_bytes"`
	Err     string `json:"error,omitempty"`
}

type loadReport struct {
	N        int       `json:"n"`
	Hostile  bool      `json:"hostile"`
	Started  time.Time `json:"started"`
	Deadline string    `json:"deadline"`
	WallS    float64   `json:"wall_s"` // first page request → last learner gone
	Errors   int       `json:"errors"`
	Ops      []*loadOp `json:"ops"`
	// labd serve's CPU time during the class (user+system, its own threads:
	// the web server, the engines, the registry, the pushes' compression).
	LabdCPUS float64 `json:"labd_cpu_s"`
	LabdRSS  struct {
		Before int64 `json:"before_bytes"`
		Peak   int64 `json:"peak_bytes"`
		After  int64 `json:"after_bytes"` // every learner has left
	} `json:"labd_rss"`
	SandboxMem struct {
		CurrentP50 int64        `json:"current_p50_bytes"`
		CurrentMax int64        `json:"current_max_bytes"`
		PeakP50    int64        `json:"peak_p50_bytes"`
		PeakMax    int64        `json:"peak_max_bytes"`
		Each       []sandboxMem `json:"each"`
	} `json:"sandbox_memory"`
	Load struct {
		Start float64 `json:"start"`
		Mean  float64 `json:"mean"`
		Max   float64 `json:"max"`
	} `json:"load_average_1m"`
	// How the pushes placed their layers: "Pushed" (compressed and
	// uploaded), "Mounted" from another repository, "Layer already exists".
	PushLayers     map[string]int `json:"push_layers"`
	HostileLearner *hostileReport `json:"hostile_learner,omitempty"`
}

var pushOutcomeRE = regexp.MustCompile(`[0-9a-f]{12}: (Pushed|Mounted|Layer already exists)`)

// record counts one operation of a learner.
func (cl *class) record(op string, d time.Duration, err error) bool {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	o := cl.ops[op]
	o.Count++
	o.durs = append(o.durs, d)
	if err != nil {
		o.Errors++
		if len(o.First) < 5 {
			o.First = append(o.First, err.Error())
		}
	}
	return err == nil
}

func (cl *class) at(i int, op string) {
	cl.mu.Lock()
	cl.where[i] = op
	cl.mu.Unlock()
}

// loadDeadline bounds a class of n: generous (a loaded 2-core machine,
// every learner's build and push share it), so passing it means a hang.
func loadDeadline(n int) time.Duration {
	return 4*time.Minute + time.Duration(n)*20*time.Second
}

func (cl *class) run() {
	t := cl.t
	cl.ops = map[string]*loadOp{}
	for _, op := range loadOpNames {
		cl.ops[op] = &loadOp{Name: op}
	}
	cl.where = make([]string, cl.n)
	cl.sandbox = make([]sandboxMem, cl.n)
	pid := cl.srv.cmd.Process.Pid
	deadline := loadDeadline(cl.n)
	cl.rep.N, cl.rep.Hostile, cl.rep.Deadline = cl.n, cl.hostile, deadline.String()
	cl.rep.PushLayers = map[string]int{}

	// A class that arrives some time after labd started (a warm pool
	// filled by then), when asked.
	if s := os.Getenv("LABD_LOAD_SETTLE"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("LABD_LOAD_SETTLE=%q: %v", s, err)
		}
		t.Logf("the class arrives %v after labd started", d)
		time.Sleep(d)
	}
	var h *hostileLearner
	if cl.hostile {
		hctx, hcancel := context.WithTimeout(context.Background(), 5*time.Minute)
		h = startHostile(t, hctx, cl.srv, cl.data)
		hcancel()
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()

	// Sample labd's memory, the load and the hostile sandbox while the
	// class works.
	cl.rep.LabdRSS.Before = labdRSS(pid)
	cl.rep.Load.Start = loadAvg()
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var sum float64
		var k int
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			rss := labdRSS(pid)
			la := loadAvg()
			cl.mu.Lock()
			cl.rep.LabdRSS.Peak = max(cl.rep.LabdRSS.Peak, rss)
			cl.rep.Load.Max = max(cl.rep.Load.Max, la)
			sum += la
			k++
			cl.rep.Load.Mean = sum / float64(k)
			cl.mu.Unlock()
			if h != nil {
				h.sample()
			}
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
		}
	}()

	cpu0 := procCPU(pid)
	cl.rep.Started = time.Now()
	var wg sync.WaitGroup
	for i := range cl.n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Everyone within one second.
			time.Sleep(time.Duration(i) * time.Second / time.Duration(cl.n))
			cl.learner(ctx, i)
		}()
	}
	wg.Wait()
	cl.rep.WallS = time.Since(cl.rep.Started).Seconds()
	close(stopSampling)
	<-sampled
	cl.rep.LabdRSS.After = labdRSS(pid)
	cl.rep.LabdCPUS = (procCPU(pid) - cpu0).Seconds()
	if ctx.Err() != nil {
		cl.mu.Lock()
		where := strings.Join(cl.where, ", ")
		cl.mu.Unlock()
		t.Errorf("the class of %d did not finish within %v (a hang, not a timing goal); each learner's operation under way: %s\nlabd log:\n%s",
			cl.n, deadline, where, tail(cl.srv.log(), 4000))
	}
	if h != nil {
		hctx, hcancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cl.rep.HostileLearner = h.finish(t, hctx)
		hcancel()
	}
	cl.report()
	if !labdAnswers(cl.srv) {
		t.Errorf("labd does not answer /healthz after the class:\n%s", tail(cl.srv.log(), 3000))
	}
}

// learner is one learner's whole run; every failure is recorded against
// its operation and ends the learner's run.
func (cl *class) learner(ctx context.Context, i int) {
	l := newLoadLearner(cl.srv)
	defer l.close()
	began := time.Now()
	var t0 time.Time
	step := func(op string, f func() error) bool {
		cl.at(i, op)
		t0 = time.Now()
		err := f()
		if err != nil {
			err = fmt.Errorf("learner %d (sandbox %q): %s: %w", i, l.sid, op, err)
		}
		return cl.record(op, time.Since(t0), err)
	}
	var runDone time.Time
	if !step("page", func() error { return l.openPage(ctx, loadLab) }) {
		cl.at(i, "failed at page")
		return
	}
	// The prompt counts from the page request, as the learner waits.
	cl.at(i, "prompt")
	err := l.attach(ctx)
	if err == nil {
		err = l.waitPrompt(ctx)
	}
	if err != nil {
		err = fmt.Errorf("learner %d (sandbox %q): prompt: %w", i, l.sid, err)
	}
	if !cl.record("prompt", time.Since(began), err) {
		cl.at(i, "failed at prompt")
		return
	}
	ok := step("files", func() error { return l.upload(ctx, "", cl.files) }) &&
		step("build", func() error {
			out, err := l.run(ctx, "docker image build -t python-hello-world .")
			if err == nil && !strings.Contains(out, "Successfully tagged python-hello-world:latest") {
				err = fmt.Errorf("no \"Successfully tagged\":\n%s", tail(out, 1500))
			}
			return err
		}) &&
		step("run", func() error {
			_, err := l.run(ctx, "docker run -d -p 5001:5000 python-hello-world")
			runDone = time.Now()
			return err
		}) &&
		step("preview", func() error {
			// From docker run's return: the app's start is in it.
			t0 = runDone
			_, err := l.waitPreview(ctx, 5001, "hello world!")
			return err
		}) &&
		step("preview-get", func() error {
			code, body, err := l.previewGet(ctx, 5001)
			if err == nil && (code != http.StatusOK || !strings.Contains(body, "hello world!")) {
				err = fmt.Errorf("%d %q", code, tail(body, 300))
			}
			return err
		}) &&
		step("login", func() error {
			if l.user == "" || l.password == "" {
				return fmt.Errorf("the page shows no registry account (user %q)", l.user)
			}
			out, err := l.run(ctx, fmt.Sprintf(`test "$LABD_USER" = %s && printf '%%s\n' %s | docker login -u "$LABD_USER" --password-stdin`, shellQuote(l.user), shellQuote(l.password)))
			if err == nil && !strings.Contains(out, "Login Succeeded") {
				err = fmt.Errorf("no \"Login Succeeded\":\n%s", tail(out, 1500))
			}
			return err
		}) &&
		step("push", func() error {
			out, err := l.run(ctx, `docker tag python-hello-world "$LABD_USER/python-hello-world" && docker push "$LABD_USER/python-hello-world"`)
			if err == nil && !strings.Contains(out, "latest: digest: sha256:") {
				err = fmt.Errorf("no digest:\n%s", tail(out, 1500))
			}
			cl.mu.Lock()
			for _, m := range pushOutcomeRE.FindAllStringSubmatch(out, -1) {
				cl.rep.PushLayers[m[1]]++
			}
			cl.mu.Unlock()
			return err
		})
	if !ok {
		cl.mu.Lock()
		cl.where[i] = "failed at " + cl.where[i]
		cl.mu.Unlock()
		return
	}
	// The sandbox's memory once its learner is done.
	m := sandboxMem{Sandbox: l.sid}
	var errs [3]error
	m.Current, errs[0] = sandboxCgroupInt(cl.data, l.sid, "memory", "memory.usage_in_bytes", "memory.current")
	m.Peak, errs[1] = sandboxCgroupInt(cl.data, l.sid, "memory", "memory.max_usage_in_bytes", "memory.peak")
	m.Limit, errs[2] = sandboxCgroupInt(cl.data, l.sid, "memory", "memory.limit_in_bytes", "memory.max")
	if err := errors.Join(errs[:]...); err != nil {
		m.Err = err.Error()
	}
	cl.mu.Lock()
	cl.sandbox[i] = m
	cl.mu.Unlock()
	if step("leave", func() error { return l.leave(ctx) }) {
		cl.record("learner", time.Since(began), nil)
		cl.at(i, "done")
	}
}

// report logs the figures, writes them as JSON among the artifacts and
// fails the test on any error.
func (cl *class) report() {
	t := cl.t
	r := &cl.rep
	for _, name := range loadOpNames {
		o := cl.ops[name]
		o.P50Ms, o.P99Ms, o.MaxMs = ms(pct(o.durs, 50)), ms(pct(o.durs, 99)), ms(pct(o.durs, 100))
		r.Ops = append(r.Ops, o)
		r.Errors += o.Errors
	}
	var cur, peak []int64
	for _, m := range cl.sandbox {
		if m.Sandbox == "" {
			continue
		}
		if m.Err != "" {
			t.Errorf("the memory of sandbox %s: %s", m.Sandbox, m.Err)
		}
		r.SandboxMem.Each = append(r.SandboxMem.Each, m)
		cur, peak = append(cur, m.Current), append(peak, m.Peak)
	}
	r.SandboxMem.CurrentP50, r.SandboxMem.CurrentMax = pctInt(cur, 50), pctInt(cur, 100)
	r.SandboxMem.PeakP50, r.SandboxMem.PeakMax = pctInt(peak, 50), pctInt(peak, 100)

	kind := "plain"
	if r.Hostile {
		kind = "beside a hostile learner"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "a class of %d (%s): %d errors, %.1f s from the first page request to the last learner gone (deadline %s); load average %.2f at the start, mean %.2f, max %.2f\n",
		r.N, kind, r.Errors, r.WallS, r.Deadline, r.Load.Start, r.Load.Mean, r.Load.Max)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "operation\tcount\terrors\tp50\tp99\tmax\t")
	for _, o := range r.Ops {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t\n", o.Name, o.Count, o.Errors, fmtMs(o.P50Ms), fmtMs(o.P99Ms), fmtMs(o.MaxMs))
	}
	tw.Flush()
	fmt.Fprintf(&b, "labd CPU time during the class: %.1f s (%.1f s per learner)\n", r.LabdCPUS, r.LabdCPUS/float64(r.N))
	fmt.Fprintf(&b, "labd RSS: %s before, %s peak, %s after (%+.1f MiB per learner at the peak)\n",
		mib(r.LabdRSS.Before), mib(r.LabdRSS.Peak), mib(r.LabdRSS.After), float64(r.LabdRSS.Peak-r.LabdRSS.Before)/float64(r.N)/(1<<20))
	lim := int64(0)
	if len(r.SandboxMem.Each) > 0 {
		lim = r.SandboxMem.Each[0].Limit
	}
	fmt.Fprintf(&b, "layers of the pushes: %v\n", r.PushLayers)
	fmt.Fprintf(&b, "sandbox memory (cgroup) after the push: p50 %s, max %s; peak p50 %s, max %s; limit %s\n",
		mib(r.SandboxMem.CurrentP50), mib(r.SandboxMem.CurrentMax), mib(r.SandboxMem.PeakP50), mib(r.SandboxMem.PeakMax), mib(lim))
	if h := r.HostileLearner; h != nil {
		fmt.Fprintf(&b, "hostile learner (sandbox %s): pids peak %d of %d, %d at the end; memory peak %s of %s, %d times at the limit; its containers at the end: %s; its files:\n%s\n",
			h.Sandbox, h.PidsPeak, h.PidsMax, h.PidsEnd, mib(h.MemPeak), mib(h.MemLimit), h.MemFailcnt, h.Containers, h.Files)
	}
	t.Log(b.String())

	if dir := os.Getenv("LABD_ARTIFACTS"); dir != "" {
		name := fmt.Sprintf("load-%d.json", r.N)
		if r.Hostile {
			name = fmt.Sprintf("load-%d-hostile.json", r.N)
		}
		js, _ := json.MarshalIndent(r, "", "  ")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Error(err)
		} else if err := os.WriteFile(filepath.Join(dir, name), append(js, '\n'), 0o644); err != nil {
			t.Error(err)
		} else {
			t.Logf("figures in %s", filepath.Join(dir, name))
		}
	}
	for _, o := range r.Ops {
		for _, e := range o.First {
			t.Errorf("%s", e)
		}
	}
	if done := len(cl.ops["learner"].durs); done != r.N {
		t.Errorf("%d of %d learners finished their run", done, r.N)
	}
}

// labdAnswers: labd runs and answers /healthz.
func labdAnswers(srv *labd) bool {
	select {
	case <-srv.done:
		return false
	default:
	}
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get(srv.url + "/healthz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// hostileScript starts everything and returns; the hogs and the bomb run
// on as containers (removed by finish), the fallocate'd file stays. Order
// matters to get every attack going at once: the shell's allocation comes
// first (labd gives containers oom_score_adj 500 and the shell 0, so while
// it runs the OOM killer ends containers' processes first); the tmpfs then
// takes all of the sandbox's memory but 128 MiB, for good; the bomb
// starts before the allocation loop takes the rest (a container's start
// needs memory too) and forks only once the others have started (once it
// holds every pid of the sandbox nothing new starts); the disk fills last
// (with a disk quota, a full disk refuses new containers). The loops are
// Python that survives a failed fork (a shell dies of it), and what they
// fork volunteers for the OOM killer (oom_score_adj 1000).
const hostileScript = `cd ~
python3 -I -c "x = b'x' * (3 << 30)"; echo "shell hog exit $?"
docker run -d --name tmpfs-hog --tmpfs /big:size=8g busybox sh -c 'dd if=/dev/zero of=/big/fill bs=1M count={{TMPFS_MIB}} 2>/dev/null; exec sleep 100000' >/dev/null; echo "tmpfs hog $?"
docker run -d --name bomb --pids-limit 100000 -v /root/.load:/load:ro labd/sandbox bash -c 'sleep 15; :(){ :|:& };:; exec python3 -I /load/bomb.py' >/dev/null; echo "bomb $?"
docker run -d --name disk-hog -v /root:/w -v /root/.load:/load:ro labd/sandbox python3 -I /load/disk_hog.py >/dev/null; echo "disk hog $?"
docker run -d --name mem-hog -v /root/.load:/load:ro labd/sandbox python3 -I /load/mem_hog.py >/dev/null; echo "memory hog $?"
fallocate -l {{FILL}} load-fill.bin; echo "fallocate exit $?"
`

// hostileFiles are the hostile learner's programs (~/.load).
var hostileFiles = map[string]string{
	// Forks without end; every child sleeps and holds its pid.
	"bomb.py": `import os, time
while True:
    try:
        if os.fork() == 0:
            try:
                open("/proc/self/oom_score_adj", "w").write("1000")
            except OSError:
                pass
            time.sleep(1 << 20)
            os._exit(0)
    except OSError:
        pass
`,
	// Allocates 3 GiB in a child, again and again.
	"mem_hog.py": `import os, time
while True:
    try:
        pid = os.fork()
    except OSError:
        time.sleep(0.1)
        continue
    if pid == 0:
        try:
            open("/proc/self/oom_score_adj", "w").write("1000")
        except OSError:
            pass
        x = b"x" * (3 << 30)
        os._exit(0)
    os.waitpid(pid, 0)
`,
	// Writes 1 GiB into the workspace, again and again, until the disk is full.
	"disk_hog.py": `import os, time
buf = b"\0" * (1 << 20)
while True:
    try:
        with open("/w/load-fill.dd", "wb") as f:
            for _ in range(1024):
                f.write(buf)
            f.flush()
            os.fsync(f.fileno())
    except OSError:
        time.sleep(0.5)
`,
}

var hostileContainers = []string{"bomb", "tmpfs-hog", "mem-hog", "disk-hog"}

type hostileLearner struct {
	l    *loadLearner
	data string
	mu   sync.Mutex
	rep  hostileReport
}

type hostileReport struct {
	Sandbox    string `json:"sandbox"`
	Output     string `json:"output"`
	PidsMax    int64  `json:"pids_max"`
	PidsPeak   int64  `json:"pids_peak"`
	PidsEnd    int64  `json:"pids_end"` // when the class is done
	MemLimit   int64  `json:"memory_limit_bytes"`
	MemPeak    int64  `json:"memory_peak_bytes"`
	MemFailcnt int64  `json:"memory_failcnt"`
	Files      string `json:"files"`      // the filled files and df of the workspace, at the end
	Containers string `json:"containers"` // name: state, at the end
}

// startHostile opens the lab as the hostile learner, starts its attacks
// and waits until the fork bomb holds its sandbox at the pids limit.
func startHostile(t *testing.T, ctx context.Context, srv *labd, data string) *hostileLearner {
	t.Helper()
	h := &hostileLearner{l: newLoadLearner(srv), data: data}
	t.Cleanup(h.l.close)
	if err := h.l.openPage(ctx, loadLab); err != nil {
		t.Fatalf("hostile learner: %v", err)
	}
	h.rep.Sandbox = h.l.sid
	// Before anything can fail: its containers and files go when the test
	// ends, whatever happened.
	t.Cleanup(func() { h.cleanup(t) })
	if err := h.l.attach(ctx); err != nil {
		t.Fatalf("hostile learner: %v", err)
	}
	if err := h.l.waitPrompt(ctx); err != nil {
		t.Fatalf("hostile learner: %v", err)
	}
	h.rep.PidsMax, _ = sandboxCgroupInt(h.data, h.l.sid, "pids", "pids.max", "pids.max")
	h.rep.MemLimit, _ = sandboxCgroupInt(h.data, h.l.sid, "memory", "memory.limit_in_bytes", "memory.max")
	tmpfsMiB := int64(512)
	if h.rep.MemLimit > 256<<20 && h.rep.MemLimit < 1<<40 {
		tmpfsMiB = (h.rep.MemLimit >> 20) - 128
	}
	fill := os.Getenv("LABD_LOAD_FILL")
	if fill == "" {
		fill = "8G"
	}
	script := strings.NewReplacer("{{FILL}}", shellQuote(fill), "{{TMPFS_MIB}}", strconv.FormatInt(tmpfsMiB, 10)).Replace(hostileScript)
	files := map[string]string{"hostile.sh": script}
	for name, body := range hostileFiles {
		files[name] = body
	}
	if err := h.l.upload(ctx, ".load", files); err != nil {
		t.Fatalf("hostile learner: %v", err)
	}
	out, err := h.l.run(ctx, "bash ~/.load/hostile.sh 2>&1; true")
	if err != nil {
		t.Fatalf("hostile learner: %v", err)
	}
	h.rep.Output = ansiRE.ReplaceAllString(out, "")
	t.Logf("hostile learner (sandbox %s):\n%s", h.l.sid, h.rep.Output)
	for _, want := range []string{"tmpfs hog 0", "memory hog 0", "disk hog 0", "bomb 0"} {
		if !strings.Contains(out, want) {
			t.Fatalf("the hostile learner's attacks did not start: no %q", want)
		}
	}
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		h.sample()
		h.mu.Lock()
		peak := h.rep.PidsPeak
		h.mu.Unlock()
		if h.rep.PidsMax > 0 && peak >= h.rep.PidsMax-10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the fork bomb did not reach the sandbox's pids limit %d within 2 minutes (peak %d); containers: %s", h.rep.PidsMax, peak, h.containers())
		}
	}
	return h
}

func (h *hostileLearner) sample() {
	p, _ := sandboxCgroupInt(h.data, h.l.sid, "pids", "pids.current", "pids.current")
	h.mu.Lock()
	h.rep.PidsPeak = max(h.rep.PidsPeak, p)
	h.mu.Unlock()
}

// finish reads what the hostile learner's sandbox went through, then ends
// its attacks: the containers go, and once the shell can fork again, the
// files.
func (h *hostileLearner) finish(t *testing.T, ctx context.Context) *hostileReport {
	t.Helper()
	h.mu.Lock()
	h.rep.PidsEnd, _ = sandboxCgroupInt(h.data, h.l.sid, "pids", "pids.current", "pids.current")
	h.rep.MemPeak, _ = sandboxCgroupInt(h.data, h.l.sid, "memory", "memory.max_usage_in_bytes", "memory.peak")
	h.rep.MemFailcnt, _ = sandboxCgroupInt(h.data, h.l.sid, "memory", "memory.failcnt", "memory.failcnt")
	h.mu.Unlock()
	h.rep.Containers = h.containers()
	h.removeContainers(t)
	out, err := h.l.run(ctx, `stat -c '%n %s bytes' ~/load-fill.*; df -h ~ | tail -1; rm -f ~/load-fill.*`)
	if err != nil {
		t.Errorf("hostile learner's shell after its containers went: %v", err)
	}
	h.rep.Files = strings.TrimSpace(ansiRE.ReplaceAllString(out[strings.Index(out, "\n")+1:], ""))
	return &h.rep
}

// containers says how each of the hostile containers is.
func (h *hostileLearner) containers() string {
	var states []string
	c := h.engine()
	for _, name := range hostileContainers {
		resp, err := c.Get("http://d/v1.41/containers/" + name + "/json")
		if err != nil {
			states = append(states, name+": "+err.Error())
			continue
		}
		var v struct {
			State struct {
				Status    string
				ExitCode  int
				OOMKilled bool
			}
		}
		json.NewDecoder(resp.Body).Decode(&v)
		resp.Body.Close()
		st := v.State.Status
		if st != "running" {
			st += fmt.Sprintf(" (exit %d, OOM-killed %v)", v.State.ExitCode, v.State.OOMKilled)
		}
		states = append(states, name+": "+st)
	}
	return strings.Join(states, ", ")
}

// engine is a client of the hostile sandbox's engine, from labd's side.
func (h *hostileLearner) engine() *http.Client {
	sock := filepath.Join(h.data, "sandboxes", h.l.sid, "docker.sock")
	return &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
}

func (h *hostileLearner) removeContainers(t *testing.T) {
	c := h.engine()
	for _, name := range hostileContainers {
		req, _ := http.NewRequest("DELETE", "http://d/v1.41/containers/"+name+"?force=1", nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Errorf("remove the hostile learner's %s: %v", name, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusNotFound {
			t.Errorf("remove the hostile learner's %s: %s", name, resp.Status)
		}
	}
}

// cleanup is the last resort when the test ended early: the containers go
// and the files are removed where the workspace may be on the host (a
// directory of the sandbox, or in its disk image while mounted).
func (h *hostileLearner) cleanup(t *testing.T) {
	select {
	case <-h.l.srv.done:
	default:
		h.removeContainers(t)
	}
	for _, ws := range []string{"workspace", "disk/workspace"} {
		for _, f := range []string{"load-fill.bin", "load-fill.dd"} {
			os.Remove(filepath.Join(h.data, "sandboxes", h.l.sid, ws, f))
		}
	}
}

// shellQuote quotes s for bash.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func fmtMs(v float64) string {
	if v >= 1000 {
		return fmt.Sprintf("%.2f s", v/1000)
	}
	return fmt.Sprintf("%.0f ms", v)
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// pctInt is pct for byte counts.
func pctInt(v []int64, p int) int64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]int64(nil), v...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (p*len(s)+99)/100 - 1
	return s[max(0, min(i, len(s)-1))]
}
