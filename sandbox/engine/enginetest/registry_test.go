package enginetest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/labd/labd/sandbox/engine"
	"github.com/labd/labd/sandbox/engine/api"
	"github.com/labd/labd/sandbox/engine/distribution"
)

const pushDockerfile = "FROM busybox\nCOPY a.txt /a.txt\nCOPY b.txt /b.txt\nCOPY app.py /app.py\n"

// buildOnBoth builds the context in labd and loads the very same image
// into dockerd (docker save | docker load), tagged ref in both.
func buildOnBoth(t *testing.T, files map[string]string, ref string) {
	t.Helper()
	dir := WriteContext(t, files)
	pair.Labd.Must(t, DockerCLI20, dir, "build", "-q", "-t", ref, ".")
	if pair.Dockerd == nil {
		return
	}
	tarPath := filepath.Join(t.TempDir(), "img.tar")
	pair.Labd.Must(t, DockerCLI20, "", "save", "-o", tarPath, ref)
	pair.Dockerd.Must(t, DockerCLI20, "", "load", "-i", tarPath)
}

var hostRE = regexp.MustCompile(`127\.0\.0\.1:\d+`)

// pushLines normalises a push's output: the registry address, and the
// per-layer lines sorted (uploads finish in any order).
func pushLines(out string) []string {
	var head, layers []string
	for _, l := range strings.Split(strings.TrimSpace(hostRE.ReplaceAllString(out, "REG")), "\n") {
		if regexp.MustCompile(`^[0-9a-f]{12}: `).MatchString(l) && !strings.HasSuffix(l, ": Preparing") {
			layers = append(layers, l)
		} else {
			head = append(head, l)
		}
	}
	slices.Sort(layers)
	return append(head, layers...)
}

func count(lines []string, suffix string) int {
	n := 0
	for _, l := range lines {
		if strings.HasSuffix(l, suffix) {
			n++
		}
	}
	return n
}

func readTransfers(t *testing.T, dataDir, view string) []distribution.Transfer {
	t.Helper()
	f, err := os.Open(filepath.Join(dataDir, "engine", "distribution", "transfers", view+".jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []distribution.Transfer
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var tr distribution.Transfer
		if err := json.Unmarshal(sc.Bytes(), &tr); err != nil {
			t.Fatal(err)
		}
		out = append(out, tr)
	}
	return out
}

// TestRegistryLogin: docker login with a wrong and a right password
// against docker-registry with htpasswd prints and exits as with dockerd.
func TestRegistryLogin(t *testing.T) {
	reg := StartDockerRegistry(t, map[string]string{"alice": "secret"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var results [][2]Result
	for _, e := range both(t) {
		wrong := e.Docker(ctx, DockerCLI20, "", []byte("wrong\n"), "login", "-u", "alice", "--password-stdin", reg.Addr)
		right := e.Docker(ctx, DockerCLI20, "", []byte("secret\n"), "login", "-u", "alice", "--password-stdin", reg.Addr)
		e.Docker(ctx, DockerCLI20, "", nil, "logout", reg.Addr)
		if wrong.Code == 0 || !strings.Contains(wrong.Stderr, "login attempt to http://"+reg.Addr+"/v2/ failed with status: 401 Unauthorized") {
			t.Errorf("%s: wrong password: exit %d, stderr %q", e.Name, wrong.Code, wrong.Stderr)
		}
		if right.Code != 0 || !strings.Contains(right.Stdout, "Login Succeeded") {
			t.Errorf("%s: right password: exit %d, stdout %q, stderr %q", e.Name, right.Code, right.Stdout, right.Stderr)
		}
		results = append(results, [2]Result{wrong, right})
	}
	if len(results) == 2 && results[0] != results[1] {
		t.Errorf("login differs:\nlabd:    %+v\ndockerd: %+v", results[0], results[1])
	}
}

// TestRegistryPushDifferential pushes the same 4-layer image from labd and
// from dockerd to two docker-registries, changes only app.py, and pushes
// again: same statuses, same manifests (hence digests); the second push
// uploads one layer.
func TestRegistryPushDifferential(t *testing.T) {
	regs := map[string]*DockerRegistry{}
	for _, e := range both(t) {
		regs[e.Name] = StartDockerRegistry(t, nil)
	}
	files := map[string]string{"Dockerfile": pushDockerfile, "a.txt": "a\n", "b.txt": "b\n", "app.py": "print('v1')\n"}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	round := func(label string) map[string][]string {
		buildOnBoth(t, files, "pushdiff:"+label)
		out := map[string][]string{}
		for _, e := range both(t) {
			ref := regs[e.Name].Addr + "/alice/pushdiff"
			e.Must(t, DockerCLI20, "", "tag", "pushdiff:"+label, ref)
			before := regs[e.Name].Up.Load()
			start := time.Now()
			o := e.Must(t, DockerCLI20, "", "push", ref)
			t.Logf("%s push %s: %v, %d bytes sent", e.Name, label, time.Since(start), regs[e.Name].Up.Load()-before)
			out[e.Name] = pushLines(o)
		}
		if pair.Dockerd != nil && !slices.Equal(out["labd"], out["dockerd"]) {
			t.Errorf("push %s differs:\nlabd:\n%s\ndockerd:\n%s", label, strings.Join(out["labd"], "\n"), strings.Join(out["dockerd"], "\n"))
		}
		if pair.Dockerd != nil {
			ml, err := regs["labd"].Manifest(ctx, "alice/pushdiff", "latest")
			if err != nil {
				t.Fatal(err)
			}
			md, err := regs["dockerd"].Manifest(ctx, "alice/pushdiff", "latest")
			if err != nil {
				t.Fatal(err)
			}
			if string(ml) != string(md) {
				t.Errorf("manifests differ:\nlabd:\n%s\ndockerd:\n%s", ml, md)
			}
		}
		return out
	}
	first := round("v1")["labd"]
	if n := count(first, ": Pushed"); n != 4 {
		t.Errorf("first push: %d layers Pushed, want 4:\n%s", n, strings.Join(first, "\n"))
	}
	upFirst := regs["labd"].Up.Load()
	files["app.py"] = "print('v2')\n"
	second := round("v2")["labd"]
	if count(second, ": Pushed") != 1 || count(second, ": Layer already exists") != 3 {
		t.Errorf("second push: want 1 Pushed, 3 Layer already exists:\n%s", strings.Join(second, "\n"))
	}
	if upSecond := regs["labd"].Up.Load() - upFirst; upSecond > upFirst/4 {
		t.Errorf("second push sent %d bytes, first %d: unchanged layers went again", upSecond, upFirst)
	}
	// A second repository on the same registry mounts every layer.
	ref := regs["labd"].Addr + "/bob/pushdiff"
	pair.Labd.Must(t, DockerCLI20, "", "tag", "pushdiff:v2", ref)
	mounted := pushLines(pair.Labd.Must(t, DockerCLI20, "", "push", ref))
	if count(mounted, ": Mounted from alice/pushdiff") != 4 {
		t.Errorf("push to another repository:\n%s", strings.Join(mounted, "\n"))
	}
	// The grader's records.
	trs := readTransfers(t, filepath.Join(pair.Dir, "labd-data"), engine.DefaultView)
	var last []distribution.Transfer
	for _, tr := range trs {
		if tr.Kind == "push" && strings.Contains(tr.Repository, "/pushdiff") && tr.Registry == regs["labd"].Addr {
			last = append(last, tr)
		}
	}
	if len(last) != 3 {
		t.Fatalf("transfers: %d pushes recorded, want 3: %+v", len(last), last)
	}
	outcomes := func(tr distribution.Transfer) string {
		var s []string
		for _, l := range tr.Layers {
			s = append(s, l.Outcome)
		}
		return strings.Join(s, ",")
	}
	if got := outcomes(last[1]); got != "exists,exists,exists,pushed" {
		t.Errorf("second push outcomes %s", got)
	}
	if got := outcomes(last[2]); got != "mounted,mounted,mounted,mounted" || last[2].Layers[0].From != "alice/pushdiff" {
		t.Errorf("mount push outcomes %s (%+v)", got, last[2].Layers)
	}
	if last[1].Digest == "" || last[1].Tag != "latest" || last[1].Repository != regs["labd"].Addr+"/alice/pushdiff" {
		t.Errorf("transfer record: %+v", last[1])
	}
	// RepoDigests after push, as dockerd records them.
	rd := pair.Labd.Must(t, DockerCLI20, "", "image", "inspect", "--format", "{{json .RepoDigests}}", "pushdiff:v2")
	if !strings.Contains(rd, regs["labd"].Addr+"/alice/pushdiff@"+last[1].Digest.String()) {
		t.Errorf("RepoDigests after push: %s", rd)
	}
	for _, l := range last[0].Layers {
		if l.Reused {
			t.Errorf("first push: layer %s reused a blob nobody had made yet", l.DiffID)
		}
	}
	// A registry where nothing can be mounted from (another host): every
	// layer goes again, compressed once already (the kept gzip blobs), so
	// a class pushing one base layer into many namespaces compresses it once.
	fresh := StartDockerRegistry(t, nil)
	ref = fresh.Addr + "/carol/pushdiff"
	pair.Labd.Must(t, DockerCLI20, "", "tag", "pushdiff:v2", ref)
	if again := pushLines(pair.Labd.Must(t, DockerCLI20, "", "push", ref)); count(again, ": Pushed") != 4 {
		t.Errorf("push to another registry:\n%s", strings.Join(again, "\n"))
	}
	var carol *distribution.Transfer
	for _, tr := range readTransfers(t, filepath.Join(pair.Dir, "labd-data"), engine.DefaultView) {
		if tr.Kind == "push" && tr.Registry == fresh.Addr {
			carol = &tr
		}
	}
	if carol == nil || len(carol.Layers) != 4 {
		t.Fatalf("push to another registry: transfer %+v", carol)
	}
	for _, l := range carol.Layers {
		if !l.Reused || l.Outcome != "pushed" {
			t.Errorf("push to another registry: layer %+v, want pushed from the kept blob", l)
		}
	}
}

// TestRegistryBadInput: a tag that does not exist locally, malformed
// references, a missing manifest: the same answers as dockerd.
func TestRegistryBadInput(t *testing.T) {
	reg := StartDockerRegistry(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	type answer struct {
		Res  Result
		Code int
		Body string
	}
	var got []answer
	for _, e := range both(t) {
		var a answer
		r := e.Docker(ctx, DockerCLI20, "", nil, "push", reg.Addr+"/alice/nothere")
		r2 := e.Docker(ctx, DockerCLI20, "", nil, "pull", reg.Addr+"/alice/nothere")
		a.Res = Result{Stdout: r.Stdout + r2.Stdout, Stderr: r.Stderr + r2.Stderr, Code: r.Code*10 + r2.Code}
		if r.Code != 1 || !strings.Contains(r.Stderr, "An image does not exist locally with the tag: "+reg.Addr+"/alice/nothere") {
			t.Errorf("%s: push of a missing tag: %+v", e.Name, r)
		}
		if r2.Code != 1 || !strings.Contains(r2.Stderr, "manifest for "+reg.Addr+"/alice/nothere:latest not found: manifest unknown: manifest unknown") {
			t.Errorf("%s: pull of a missing image: %+v", e.Name, r2)
		}
		hc := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (netConn, error) {
			return dialUnix(ctx, e.Socket)
		}}}
		for _, u := range []string{"/v1.41/images/UPPER/push", "/v1.41/images/create?fromImage=a::b", "/v1.41/images/create?fromImage=UPPER"} {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://docker"+u, nil)
			req.Header.Set("X-Registry-Auth", "e30=")
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var body struct{ Message string }
			_ = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			a.Code = a.Code*1000 + resp.StatusCode
			a.Body += body.Message + "\n"
		}
		if !strings.Contains(a.Body, "invalid reference format") {
			t.Errorf("%s: malformed references answered %q", e.Name, a.Body)
		}
		got = append(got, a)
	}
	if len(got) == 2 && got[0] != got[1] {
		t.Errorf("answers differ:\nlabd:    %+v\ndockerd: %+v", got[0], got[1])
	}
}

// TestRegistryPullIntoOtherSandboxes pushes from labd, then pulls into two
// views of another engine at once (two sandboxes of one labd): same image
// ID and repo digest, each blob downloaded once, "up to date" the second time.
func TestRegistryPullIntoOtherSandboxes(t *testing.T) {
	reg := StartDockerRegistry(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := WriteContext(t, map[string]string{"Dockerfile": pushDockerfile, "a.txt": "pa\n", "b.txt": "pb\n", "app.py": "print('pull')\n"})
	ref := reg.Addr + "/alice/pullme:v1"
	pair.Labd.Must(t, DockerCLI20, dir, "build", "-q", "-t", ref, ".")
	pair.Labd.Must(t, DockerCLI20, "", "push", ref)
	wantID := strings.TrimSpace(pair.Labd.Must(t, DockerCLI20, "", "image", "inspect", "--format", "{{.Id}}", ref))
	wantRD := strings.TrimSpace(pair.Labd.Must(t, DockerCLI20, "", "image", "inspect", "--format", "{{json .RepoDigests}}", ref))
	pushedUp := reg.Up.Load()

	data := t.TempDir()
	s, err := engine.OpenShared(data, engine.SharedOptions{NoRuntime: true, Registry: distribution.Options{AllowedRegistries: []string{reg.Addr}}})
	if err != nil {
		t.Fatal(err)
	}
	var engs []*engine.Engine
	var socks []string
	for _, v := range []string{"sb1", "sb2"} {
		e, err := s.Engine(v)
		if err != nil {
			t.Fatal(err)
		}
		sock := filepath.Join(data, v+".sock")
		srv, err := api.ServeUnix(sock, api.New(e, api.Options{}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = srv.Close(context.Background()) })
		engs = append(engs, e)
		socks = append(socks, sock)
	}
	down0 := reg.Down.Load()
	outs := make([]Result, 2)
	var wg sync.WaitGroup
	for i := range socks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i] = (&Engine{Name: "view", Socket: socks[i]}).Docker(ctx, DockerCLI20, "", nil, "pull", ref)
		}()
	}
	wg.Wait()
	for i, r := range outs {
		if r.Code != 0 || !strings.Contains(r.Stdout, "v1: Pulling from alice/pullme") ||
			!strings.Contains(r.Stdout, "Status: Downloaded newer image for "+ref) || !strings.Contains(r.Stdout, "Digest: sha256:") {
			t.Errorf("pull %d: %+v", i, r)
		}
		v := &Engine{Name: "view", Socket: socks[i]}
		if id := strings.TrimSpace(v.Must(t, DockerCLI20, "", "image", "inspect", "--format", "{{.Id}}", ref)); id != wantID {
			t.Errorf("view %d: image %s, pushed %s", i, id, wantID)
		}
		if rd := strings.TrimSpace(v.Must(t, DockerCLI20, "", "image", "inspect", "--format", "{{json .RepoDigests}}", ref)); rd != wantRD {
			t.Errorf("view %d: RepoDigests %s, pusher has %s", i, rd, wantRD)
		}
	}
	// Both views pulled; the blobs crossed the wire once (the first push's
	// upload is the size of one copy).
	if down := reg.Down.Load() - down0; down > pushedUp*3/2 {
		t.Errorf("two concurrent pulls received %d bytes; one copy is about %d", down, pushedUp)
	}
	again := (&Engine{Name: "view", Socket: socks[0]}).Must(t, DockerCLI20, "", "pull", ref)
	if !strings.Contains(again, "Status: Image is up to date for "+ref) || strings.Contains(again, "Pulling fs layer") {
		t.Errorf("second pull:\n%s", again)
	}
	trs := engs[0].Transfers()
	if len(trs) != 2 || trs[0].Kind != "pull" || len(trs[0].Layers) != 4 {
		t.Fatalf("transfers of sb1: %+v", trs)
	}
	if len(engs[1].Transfers()) != 1 {
		t.Errorf("transfers of sb2: %+v", engs[1].Transfers())
	}
}

// TestRegistryImplicitPull: docker run and FROM of an image only in the
// registry pull it first.
func TestRegistryImplicitPull(t *testing.T) {
	reg := StartDockerRegistry(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := WriteContext(t, map[string]string{"Dockerfile": pushDockerfile, "a.txt": "ia\n", "b.txt": "ib\n", "app.py": "print('implicit')\n"})
	ref := reg.Addr + "/alice/implicit:v1"
	e := pair.Labd
	e.Must(t, DockerCLI20, dir, "build", "-q", "-t", ref, ".")
	e.Must(t, DockerCLI20, "", "push", ref)
	e.Must(t, DockerCLI20, "", "rmi", ref)
	r := e.Docker(ctx, DockerCLI20, "", nil, "run", "--rm", ref, "cat", "/app.py")
	if r.Code != 0 || r.Stdout != "print('implicit')\n" || !strings.Contains(r.Stderr, "Unable to find image '"+ref+"' locally") ||
		!strings.Contains(r.Stderr, "Status: Downloaded newer image for "+ref) {
		t.Errorf("run of a pushed image: %+v", r)
	}
	e.Must(t, DockerCLI20, "", "rmi", ref)
	dir2 := WriteContext(t, map[string]string{"Dockerfile": "FROM " + ref + "\nCOPY x.txt /x.txt\n", "x.txt": "x\n"})
	out := e.Must(t, DockerCLI20, dir2, "build", "-t", "fromimplicit", ".")
	if !strings.Contains(out, "v1: Pulling from alice/implicit") || !strings.Contains(out, "Status: Downloaded newer image for "+ref) {
		t.Errorf("FROM of a pushed image:\n%s", out)
	}
}

// TestRegistryPushInterrupted: the client goes away in the middle of an
// upload; the repository is not broken and a re-push succeeds, and dockerd
// pulls the result (verifying every digest).
func TestRegistryPushInterrupted(t *testing.T) {
	reg := StartDockerRegistry(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	big := make([]byte, 24<<20)
	for i := range big {
		big[i] = byte((i*7919 + i/4096*31) ^ (i >> 9))
	}
	dir := WriteContext(t, map[string]string{"Dockerfile": "FROM busybox\nCOPY big.bin /big.bin\nCOPY app.py /app.py\n", "big.bin": string(big), "app.py": "print('big')\n"})
	ref := reg.Addr + "/alice/interrupted:latest"
	pair.Labd.Must(t, DockerCLI20, dir, "build", "-q", "-t", ref, ".")

	cli, err := client.NewClientWithOpts(client.WithHost(pair.Labd.Host()), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	pctx, pcancel := context.WithCancel(ctx)
	rc, err := cli.ImagePush(pctx, ref, image.PushOptions{RegistryAuth: "e30="})
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(rc)
	for {
		var m struct {
			Status string
			Error  string
		}
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("push stream ended before any upload progress: %v", err)
		}
		if m.Status == "Pushing" {
			break
		}
	}
	pcancel()
	rc.Close()
	if _, err := reg.Manifest(ctx, "alice/interrupted", "latest"); err == nil {
		t.Error("a manifest exists after an interrupted push")
	}
	out := pair.Labd.Must(t, DockerCLI20, "", "push", ref)
	if !strings.Contains(out, "latest: digest: sha256:") {
		t.Fatalf("re-push:\n%s", out)
	}
	if pair.Dockerd != nil {
		pull := pair.Dockerd.Must(t, DockerCLI20, "", "pull", ref)
		if !strings.Contains(pull, "Status: Downloaded newer image for "+ref) {
			t.Errorf("dockerd pull after re-push:\n%s", pull)
		}
		id := strings.TrimSpace(pair.Dockerd.Must(t, DockerCLI20, "", "image", "inspect", "--format", "{{.Id}}", ref))
		want := strings.TrimSpace(pair.Labd.Must(t, DockerCLI20, "", "image", "inspect", "--format", "{{.Id}}", ref))
		if id != want {
			t.Errorf("dockerd pulled %s, labd pushed %s", id, want)
		}
		pair.Dockerd.Must(t, DockerCLI20, "", "rmi", ref)
	}
	_ = fmt.Sprint()
}
