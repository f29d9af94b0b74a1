package image

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labd/labd/internal/testenv"
	"github.com/opencontainers/go-digest"

	"github.com/labd/labd/sandbox/engine/runtime"
)

func TestOneLineSources(t *testing.T) {
	text := `# comment
deb http://deb.debian.org/debian bookworm main contrib
deb-src http://deb.debian.org/debian bookworm main
deb [signed-by=/usr/share/keyrings/k.gpg arch=amd64] http://security.debian.org/debian-security bookworm-security main # tail
deb http://deb.debian.org/debian trixie main
deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main
#deb http://deb.debian.org/debian bookworm-updates main
deb [ trusted=yes ] http://mirror.local/debian bookworm-updates main
`
	got := oneLineSources(text, "bookworm")
	want := []string{
		"deb http://deb.debian.org/debian bookworm main contrib",
		"deb [signed-by=/usr/share/keyrings/k.gpg arch=amd64] http://security.debian.org/debian-security bookworm-security main",
		"deb [ trusted=yes ] http://mirror.local/debian bookworm-updates main",
	}
	if !slices.Equal(got, want) {
		t.Errorf("oneLineSources =\n%q\nwant\n%q", got, want)
	}
}

func TestDeb822Sources(t *testing.T) {
	tests := []struct {
		name, text string
		want       []string
	}{
		{"debian default", `Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
`, []string{
			"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main",
			"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-updates main",
			"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security bookworm-security main",
		}},
		{"other suite, disabled, source only", `Types: deb
URIs: https://deb.nodesource.com/node_20.x
Suites: nodistro
Components: main

Types: deb
URIs: http://a/debian
Suites: bookworm
Components: main
Enabled: no

Types: deb-src
URIs: http://a/debian
Suites: bookworm
Components: main
`, nil},
		{"inline key, arch, two URIs", `Types: deb deb-src
URIs: http://a/debian http://b/debian
Suites: bookworm
Components: main contrib
Architectures: amd64
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 xyz
 -----END PGP PUBLIC KEY BLOCK-----
`, []string{
			"deb [arch=amd64] http://a/debian bookworm main contrib",
			"deb [arch=amd64] http://b/debian bookworm main contrib",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := deb822Sources(tt.text, "bookworm"); !slices.Equal(got, tt.want) {
				t.Errorf("got\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

func TestUpstreamVersion(t *testing.T) {
	for deb, want := range map[string]string{"3.11.2-1+b1": "3.11.2", "1:2.3-4": "2.3", "23.0.1+dfsg-1": "23.0.1+dfsg", "5": "5"} {
		if got := upstreamVersion(deb); got != want {
			t.Errorf("upstreamVersion(%q) = %q, want %q", deb, got, want)
		}
	}
}

func TestBootstrapWithoutMmdebstrap(t *testing.T) {
	s := openStore(t)
	_, err := BootstrapPython(context.Background(), s, BootstrapOptions{Mmdebstrap: "/nonexistent/mmdebstrap"})
	if err == nil || !strings.Contains(err.Error(), "apt-get install mmdebstrap") || !strings.Contains(err.Error(), "labd images import") {
		t.Fatalf("err = %v; want the install and import hints", err)
	}
	if tags := view(t, s, BaseView).Tags(); len(tags) != 0 {
		t.Errorf("tags after a failed bootstrap: %v", tags)
	}
}

// An unreachable mirror (a closed port on loopback) must give a message
// saying so and how to import instead, and leave no image.
func TestBootstrapUnreachableMirror(t *testing.T) {
	testenv.Root(t, "mmdebstrap's root mode")
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		t.Fatalf("mmdebstrap missing: apt-get install mmdebstrap (%v)", err)
	}
	s := openStore(t)
	var lines []string
	var mu sync.Mutex
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	_, err := BootstrapPython(ctx, s, BootstrapOptions{
		Sources:  []string{"deb [trusted=yes] http://127.0.0.1:9/debian bookworm main"},
		Progress: func(l string) { mu.Lock(); lines = append(lines, l); mu.Unlock() },
	})
	if err == nil {
		t.Fatal("bootstrap from an unreachable mirror succeeded")
	}
	msg := err.Error()
	t.Logf("error:\n%s", msg)
	for _, want := range []string{"not reachable", "127.0.0.1:9", "python3-flask", "labd images import image.tar", "docker save python:3.11-slim | labd images import -"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if tags := view(t, s, BaseView).Tags(); len(tags) != 0 {
		t.Errorf("tags after a failed bootstrap: %v", tags)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "python:3.11-slim: ") {
		t.Errorf("progress lines = %q", lines)
	}
}

// A host without any network (mmdebstrap in a network namespace with
// only lo, the host's own apt sources): the error names the mirror that
// could not be reached and the packages, and says how to import instead.
func TestBootstrapNoNetwork(t *testing.T) {
	testenv.Root(t, "mmdebstrap's root mode")
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		t.Fatalf("mmdebstrap missing: apt-get install mmdebstrap (%v)", err)
	}
	sources, err := hostSources(AptSources, DebianSuite)
	if err != nil || len(sources) == 0 {
		t.Fatalf("the host has no apt source for %s (%v): the test needs one to fail to reach", DebianSuite, err)
	}
	s := openStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	_, err = BootstrapPython(ctx, s, BootstrapOptions{noNetwork: true})
	if err == nil {
		t.Fatal("bootstrap without network succeeded")
	}
	msg := err.Error()
	t.Logf("error:\n%s", msg)
	uri := strings.Fields(strings.NewReplacer("[", " [", "]", "] ").Replace(sources[0]))
	mirror := ""
	for _, f := range uri {
		if strings.Contains(f, "://") {
			mirror = f
			break
		}
	}
	for _, want := range []string{"not reachable", mirror, "python3, python3-flask, python3-pip, python-is-python3", "labd images import"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q", want)
		}
	}
	checkNoPartialImage(t, s)
}

// Cancelling a bootstrap while mmdebstrap runs stops it, leaves nothing
// in the store (no tag, image, layer, blob or staging file) and no
// process or temporary directory; a bootstrap into the same store then
// succeeds (the one TestBootstrapPythonImage checks).
func TestBootstrapCancel(t *testing.T) {
	if testing.Short() {
		t.Skip("builds an image from Debian packages (about a minute); skipped with -short")
	}
	testenv.Root(t, "mmdebstrap's root mode")
	dir, err := os.MkdirTemp("", "labd-bootstrap-test-")
	if err != nil {
		t.Fatal(err)
	}
	testDirsMu.Lock()
	testDirs = append(testDirs, dir)
	testDirsMu.Unlock()
	s, err := Open(filepath.Join(dir, "engine"))
	if err != nil {
		t.Fatal(err)
	}
	// bootstrapDebian's temporary directory goes under TMPDIR.
	tmp := t.TempDir()
	for _, d := range []string{tmp, filepath.Dir(tmp)} { // as /tmp: apt downloads as _apt
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("TMPDIR", tmp)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Cancel once apt is at work inside the chroot.
	var mu sync.Mutex
	var lines []string
	result := make(chan error, 1)
	go func() {
		_, err := BootstrapPython(ctx, s, BootstrapOptions{Progress: func(l string) {
			mu.Lock()
			lines = append(lines, l)
			mu.Unlock()
			if strings.Contains(l, "I: ") && (strings.Contains(l, "download") || strings.Contains(l, "extract") || strings.Contains(l, "install")) {
				cancel()
			}
		}})
		result <- err
	}()
	select {
	case err = <-result:
	case <-time.After(5 * time.Minute):
		t.Fatal("bootstrap did not end within 5 minutes")
	}
	mu.Lock()
	t.Logf("progress before the cancel:\n%s", strings.Join(lines, "\n"))
	mu.Unlock()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("bootstrap error = %v; want context.Canceled", err)
	}
	checkNoPartialImage(t, s)
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Errorf("temporary files left in TMPDIR: %v", ents)
	}
	if kids := childProcesses(t); len(kids) != 0 {
		t.Errorf("processes left after the cancel: %v", kids)
	}
	// Nothing runs in the chroot any more (not even a process that left
	// mmdebstrap's process group).
	links, _ := filepath.Glob("/proc/[0-9]*/root")
	cwds, _ := filepath.Glob("/proc/[0-9]*/cwd")
	for _, l := range append(links, cwds...) {
		if dst, err := os.Readlink(l); err == nil && strings.HasPrefix(dst, tmp+"/") {
			t.Errorf("%s -> %s after the cancel", l, dst)
		}
	}

	// The same store then bootstraps fine.
	pythonBuild.seed = s
	if _, id := pythonBuild.get(t, BootstrapPython); id == "" {
		t.Fatal("no image after the retry")
	}
	if _, err := view(t, s, BaseView).Resolve("python:3.11-slim"); err != nil {
		t.Errorf("after the retry: %v", err)
	}
}

// checkNoPartialImage fails unless the store holds nothing at all: no
// tag or image in the base view, no layer, blob or staging file.
func checkNoPartialImage(t *testing.T, s *Store) {
	t.Helper()
	base := view(t, s, BaseView)
	if tags := base.Tags(); len(tags) != 0 {
		t.Errorf("tags after a failed bootstrap: %v", tags)
	}
	if imgs := base.List(true); len(imgs) != 0 {
		t.Errorf("images after a failed bootstrap: %v", imgs)
	}
	for _, d := range []string{"tmp", "layers", filepath.Join("blobs", "sha256")} {
		if n := countFiles(t, s.path(d)); n != 0 {
			ents, _ := os.ReadDir(s.path(d))
			t.Errorf("%s holds %d entries after a failed bootstrap: %v", d, n, ents)
		}
	}
}

// childProcesses lists this process's children (pid and command).
func childProcesses(t *testing.T) []string {
	t.Helper()
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// "pid (comm) state ppid ...": comm may hold spaces.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(b[i+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(os.Getpid()) {
			out = append(out, string(b[:i+1]))
		}
	}
	return out
}

// debianBootstrap builds one stand-in into a fresh store (or seed), once
// per test binary, so that several tests share the minute it takes.
type debianBootstrap struct {
	once     sync.Once
	seed     *Store
	store    *Store
	id       digest.Digest
	progress []string
	err      error
}

var pythonBuild, sandboxBuild debianBootstrap

func (b *debianBootstrap) get(t *testing.T, build func(context.Context, *Store, BootstrapOptions) (digest.Digest, error)) (*Store, digest.Digest) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds an image from Debian packages (about a minute); skipped with -short")
	}
	testenv.Root(t, "mmdebstrap's root mode and the runtime")
	b.once.Do(func() {
		if b.seed != nil {
			b.store = b.seed
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			b.id, b.err = build(ctx, b.store, BootstrapOptions{Progress: func(l string) { b.progress = append(b.progress, l) }})
			return
		}
		dir, err := os.MkdirTemp("", "labd-bootstrap-test-")
		if err != nil {
			b.err = err
			return
		}
		// Shared by the tests of this binary: TestMain removes it.
		testDirsMu.Lock()
		testDirs = append(testDirs, dir)
		testDirsMu.Unlock()
		b.store, b.err = Open(filepath.Join(dir, "engine"))
		if b.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		start := time.Now()
		b.id, b.err = build(ctx, b.store, BootstrapOptions{Progress: func(l string) { b.progress = append(b.progress, l) }})
		t.Logf("bootstrap took %s", time.Since(start).Round(time.Second))
	})
	if b.err != nil {
		t.Fatalf("bootstrap: %v\nprogress:\n%s", b.err, strings.Join(b.progress, "\n"))
	}
	return b.store, b.id
}

var (
	testDirsMu sync.Mutex
	testDirs   []string
)

func TestMain(m *testing.M) {
	code := m.Run()
	for _, d := range testDirs {
		os.RemoveAll(d)
	}
	os.Exit(code)
}

func TestBootstrapPythonImage(t *testing.T) {
	t.Parallel()
	s, id := pythonBuild.get(t, BootstrapPython)
	base := view(t, s, BaseView)
	for _, tag := range []string{"python:3.11-slim", "python:3"} {
		if got, err := base.Resolve(tag); err != nil || got != id {
			t.Errorf("Resolve(%s) = %s, %v; want %s", tag, got, err, id)
		}
	}
	// Every learner's view shows it as pulled.
	info, err := view(t, s, "sandbox-1").Image(id)
	if err != nil || info.BuiltLocally {
		t.Errorf("in a sandbox view: %+v, %v", info, err)
	}
	cfg, err := s.Config(id)
	if err != nil {
		t.Fatal(err)
	}
	for _, env := range []string{"LANG=C.UTF-8", "PIP_BREAK_SYSTEM_PACKAGES=1", defaultPath} {
		if !slices.Contains(cfg.Config.Env, env) {
			t.Errorf("Env %q lacks %s", cfg.Config.Env, env)
		}
	}
	if !slices.Equal(cfg.Config.Cmd, []string{"python3"}) || cfg.Config.WorkingDir != "" {
		t.Errorf("Cmd %q WorkingDir %q", cfg.Config.Cmd, cfg.Config.WorkingDir)
	}
	desc := cfg.Config.Labels["org.opencontainers.image.description"]
	if cfg.Config.Labels[StandInLabel] != "true" || !strings.Contains(desc, "stand-in") || !strings.Contains(desc, "not the official image") {
		t.Errorf("labels = %v", cfg.Config.Labels)
	}
	if len(cfg.History) != 2 || cfg.History[1].CreatedBy != `/bin/sh -c #(nop)  CMD ["python3"]` || !cfg.History[1].EmptyLayer {
		t.Errorf("history = %+v", cfg.History)
	}

	dirs, err := s.Layers(id)
	if err != nil || len(dirs) != 1 {
		t.Fatalf("layers = %v, %v", dirs, err)
	}
	root := dirs[0]
	for _, p := range []string{"usr/bin/python3", "usr/bin/python", "usr/bin/pip", "usr/lib/python3/dist-packages/flask/__init__.py", "usr/share/doc/python3/copyright"} {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			t.Errorf("layer lacks %s: %v", p, err)
		}
	}
	// perl-base is essential; the rest of perl (usrmerge's) must not be.
	if libperl, _ := filepath.Glob(filepath.Join(root, "usr/lib/*/libperl.so*")); len(libperl) != 0 {
		t.Errorf("layer has %v", libperl)
	}
	for _, p := range []string{"usr/share/man/man1", "etc/resolv.conf", "etc/hostname", "etc/apt/apt.conf.d/99mmdebstrap", "dev/null"} {
		if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
			t.Errorf("layer has %s", p)
		}
	}
	lists, _ := filepath.Glob(filepath.Join(root, "var/lib/apt/lists/*_Packages*"))
	debs, _ := filepath.Glob(filepath.Join(root, "var/cache/apt/archives/*.deb"))
	if len(lists) != 0 || len(debs) != 0 {
		t.Errorf("apt lists or caches left: %v %v", lists, debs)
	}
	if fi, err := os.Lstat(filepath.Join(root, "bin")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("/bin is not merged into /usr: %v %v", fi, err)
	}
	if fi, err := os.Stat(filepath.Join(root, "dev")); err != nil || !fi.IsDir() {
		t.Errorf("/dev: %v %v", fi, err)
	}

	// Bootstrapping again keeps the image: same ID, nothing new stored.
	blobs := countFiles(t, s.path("blobs", "sha256"))
	var lines []string
	again, err := BootstrapPython(context.Background(), s, BootstrapOptions{Progress: func(l string) { lines = append(lines, l) }})
	if err != nil || again != id {
		t.Errorf("second bootstrap = %s, %v; want %s", again, err, id)
	}
	if n := countFiles(t, s.path("blobs", "sha256")); n != blobs {
		t.Errorf("blobs %d -> %d after a second bootstrap", blobs, n)
	}
	if !slices.Equal(lines, []string{"python:3.11-slim: present"}) {
		t.Errorf("second bootstrap progress = %q", lines)
	}

	// What the lab does with it.
	env := cfg.Config.Env
	if out, code := runIn(t, s, id, env, "python", "-c", "import flask, sys; print('flask', flask.__name__, sys.version_info[:2])"); code != 0 || !strings.Contains(out, "flask flask (3, 11)") {
		t.Errorf("import flask: exit %d\n%s", code, out)
	}
	out, code := runIn(t, s, id, env, "pip", "install", "flask")
	if code != 0 || !strings.Contains(out, "Requirement already satisfied: flask") {
		t.Errorf("pip install flask: exit %d\n%s", code, out)
	}
}

func TestBootstrapSandboxImage(t *testing.T) {
	t.Parallel()
	s, id := sandboxBuild.get(t, BootstrapSandbox)
	if got, err := view(t, s, BaseView).Resolve(SandboxTag); err != nil || got != id {
		t.Errorf("Resolve(%s) = %s, %v; want %s", SandboxTag, got, err, id)
	}
	cfg, err := s.Config(id)
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Config
	if !slices.Equal(c.Cmd, []string{"/bin/bash", "--login"}) || c.WorkingDir != "/root" {
		t.Errorf("Cmd %q WorkingDir %q", c.Cmd, c.WorkingDir)
	}
	for _, env := range []string{"TERM=xterm-256color", "DOCKER_BUILDKIT=0", "LANG=C.UTF-8", defaultPath} {
		if !slices.Contains(c.Env, env) {
			t.Errorf("Env %q lacks %s", c.Env, env)
		}
	}
	dirs, _ := s.Layers(id)
	// The docker CLI only: no daemon, containerd or runc came with it.
	for _, p := range []string{"usr/bin/dockerd", "usr/bin/containerd", "usr/sbin/runc", "usr/bin/runc"} {
		if _, err := os.Lstat(filepath.Join(dirs[0], p)); err == nil {
			t.Errorf("layer has %s", p)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bash", "-c", "echo $BASH_VERSION"}, "5."},
		{[]string{"curl", "--version"}, "curl 7."},
		{[]string{"docker", "--version"}, "Docker version 20.10"},
		{[]string{"python", "-c", "import flask; print('flask ok')"}, "flask ok"},
		{[]string{"bash", "-c", "type -P vi nano less ps ip"}, "/nano\n"},
	} {
		if out, code := runIn(t, s, id, c.Env, tc.args...); code != 0 || !strings.Contains(out, tc.want) {
			t.Errorf("%q: exit %d, want output with %q:\n%s", tc.args, code, tc.want, out)
		}
	}
}

// runIn runs args in a container of image id through the engine's
// runtime, as `docker run` would, and returns stdout+stderr and the exit
// code.
func runIn(t *testing.T, s *Store, id digest.Digest, env []string, args ...string) (string, int) {
	t.Helper()
	lowers, err := s.Layers(id)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	parent := fmt.Sprintf("labd-test-image-%d", os.Getpid())
	rt, err := runtime.New(runtime.Options{Root: filepath.Join(dir, "rt"), CgroupParent: parent})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeCgroupDirs(parent) })
	b := make([]byte, 32)
	rand.Read(b)
	// Stdout and stderr are copied by two goroutines.
	out := &lockedBuffer{}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code, err := rt.Run(ctx, runtime.Spec{
		ID:     fmt.Sprintf("%x", b),
		Lowers: lowers,
		Upper:  filepath.Join(dir, "upper"),
		Work:   filepath.Join(dir, "work"),
		Args:   args,
		Env:    env,
		Stdout: out,
		Stderr: out,
	})
	if err != nil {
		t.Fatalf("run %q: %v\n%s", args, err, out.String())
	}
	return out.String(), code
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// removeCgroupDirs removes the (empty) parent cgroups of the test's
// containers on every hierarchy.
func removeCgroupDirs(parent string) {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + parent)
	dirs = append(dirs, "/sys/fs/cgroup/"+parent)
	for _, d := range dirs {
		os.Remove(d)
	}
}
