package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/opencontainers/go-digest"
)

// DebianSuite is the Debian release the Debian-based stand-ins are built
// from. Its python3 is 3.11, hence PythonTags.
const DebianSuite = "bookworm"

// PythonTags are the names BootstrapPython gives its image in the base
// view: the lab's FROM line uses the first.
var PythonTags = []string{"python:3.11-slim", "python:3"}

// SandboxTag is the learner's shell image made by BootstrapSandbox.
const SandboxTag = "labd/sandbox:latest"

// AptSources are the files whose Debian entries (suite DebianSuite and
// its -updates/-security suites) mmdebstrap gets when
// BootstrapOptions.Sources is empty: the host's own apt configuration is
// what is known to work (mirror, proxy), so labd names no mirror itself.
var AptSources = []string{"/etc/apt/sources.list", "/etc/apt/sources.list.d/*.list", "/etc/apt/sources.list.d/*.sources"}

// BootstrapOptions tune BootstrapPython and BootstrapSandbox.
type BootstrapOptions struct {
	// Force rebuilds an image whose tag is already in the base view.
	Force bool
	// Progress gets one line at a time (no newline), for the log and the
	// page. Optional.
	Progress func(string)
	// Sources are one-line apt entries ("deb URI SUITE COMPONENT...");
	// empty means the host's entries for DebianSuite (see AptSources).
	Sources []string
	// Mmdebstrap is the mmdebstrap binary; default: looked up in PATH.
	Mmdebstrap string

	// noNetwork runs mmdebstrap in a network namespace of its own with
	// only lo (tests: a host without network).
	noNetwork bool
}

// debianImage describes one image built by mmdebstrap.
type debianImage struct {
	tags     []string
	packages []string
	// hooks are extra mmdebstrap --customize-hook commands, run before
	// the common cleanup hook.
	hooks []string
	// config fills the container config; versions are the Debian
	// package versions installed (from the layer's dpkg status).
	config func(versions map[string]string) *container.Config
}

// slimDpkgOpts keep documentation, man pages and translations out of the
// image, as Debian's "slim" images do; they stay in the image's dpkg
// configuration so packages installed later are slim too.
var slimDpkgOpts = []string{
	"path-exclude=/usr/share/man/*",
	"path-exclude=/usr/share/info/*",
	"path-exclude=/usr/share/groff/*",
	"path-exclude=/usr/share/lintian/*",
	"path-exclude=/usr/share/locale/*",
	"path-exclude=/usr/share/doc/*",
	"path-include=/usr/share/doc/*/copyright",
}

// MergedUsrHooks is mmdebstrap's hook directory that sets up merged /usr
// the way debootstrap does (symlinks plus usr-is-merged), as Debian's
// official images are made; without it bookworm's init-system-helpers
// pulls in usrmerge and with it the whole of perl (~50 MB).
var MergedUsrHooks = "/usr/share/mmdebstrap/hooks/merged-usr"

const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

var pythonImage = debianImage{
	tags:     PythonTags,
	packages: []string{"python3", "python3-flask", "python3-pip", "python-is-python3"},
	config: func(v map[string]string) *container.Config {
		pyVersion := upstreamVersion(v["python3"])
		return &container.Config{
			Env: []string{
				defaultPath,
				"LANG=C.UTF-8",
				"PYTHON_VERSION=" + pyVersion,
				// Debian marks its Python as externally managed (PEP 668);
				// the official image's pip installs freely, and the lab's
				// `RUN pip install flask` must answer "Requirement already
				// satisfied" offline instead of refusing.
				"PIP_BREAK_SYSTEM_PACKAGES=1",
				// No network: do not ask PyPI for a newer pip.
				"PIP_DISABLE_PIP_VERSION_CHECK=1",
			},
			Cmd: []string{"python3"},
			Labels: map[string]string{
				StandInLabel: "true",
				"org.opencontainers.image.description": "labd: locally built stand-in for the official python image, from Debian " +
					DebianSuite + " packages (python3 " + v["python3"] + ", python3-flask " + v["python3-flask"] +
					", python3-pip " + v["python3-pip"] + "); not the official image",
			},
		}
	},
}

// dockerCLIHook takes the docker CLI alone out of Debian's docker.io
// package (no daemon, containerd or runc): the binary needs only libc.
const dockerCLIHook = `chroot "$1" sh -ec 'cd /tmp; apt-get -q download docker.io; dpkg-deb --fsys-tarfile docker.io_*.deb | tar -xO ./usr/bin/docker >/usr/bin/docker; chmod 0755 /usr/bin/docker; rm -f docker.io_*.deb; docker --version'`

var sandboxImage = debianImage{
	tags: []string{SandboxTag},
	packages: []string{"bash", "vim-tiny", "nano", "curl", "less", "procps", "iproute2", "ca-certificates",
		"python3", "python3-flask", "python-is-python3"},
	hooks: []string{dockerCLIHook},
	config: func(v map[string]string) *container.Config {
		return &container.Config{
			Env: []string{
				defaultPath,
				"TERM=xterm-256color",
				"LANG=C.UTF-8",
				// The classic builder's output is what the labs show.
				"DOCKER_BUILDKIT=0",
			},
			Cmd:        []string{"/bin/bash", "--login"},
			WorkingDir: "/root",
			Labels: map[string]string{
				StandInLabel: "true",
				"org.opencontainers.image.description": "labd: the learner's shell, built locally from Debian " + DebianSuite +
					" packages (bash, vim-tiny, nano, curl, less, procps, iproute2, python3) with the docker CLI from Debian's docker.io",
			},
		}
	},
}

// BootstrapPython builds the Python stand-in from Debian packages with
// mmdebstrap (minbase + python3, python3-flask, python3-pip,
// python-is-python3; no documentation, no apt lists) into the base view,
// tagged PythonTags, and returns its ID. The config follows the official
// image (Cmd ["python3"], LANG=C.UTF-8) with PIP_BREAK_SYSTEM_PACKAGES=1,
// and is labelled as a local stand-in. An image already tagged is kept
// unless opts.Force.
func BootstrapPython(ctx context.Context, s *Store, opts BootstrapOptions) (digest.Digest, error) {
	return bootstrapDebian(ctx, s, opts, pythonImage)
}

// BootstrapSandbox builds the learner's shell image (SandboxTag) the same
// way: minbase + bash, vim-tiny, nano, curl, less, procps, iproute2,
// ca-certificates, python3 and Flask, and the docker CLI taken alone from
// Debian's docker.io package. Cmd ["/bin/bash","--login"], WorkingDir
// /root, DOCKER_BUILDKIT=0.
func BootstrapSandbox(ctx context.Context, s *Store, opts BootstrapOptions) (digest.Digest, error) {
	return bootstrapDebian(ctx, s, opts, sandboxImage)
}

// importHint tells an operator without network what to do instead.
func importHint(tag string) string {
	return fmt.Sprintf("Without network, import the image instead: on a machine with Docker, `docker pull %s` (or build it) and "+
		"`docker save %s -o image.tar`, copy image.tar here and run `labd images import image.tar`; "+
		"or, where both run, `docker save %s | labd images import -`", tag, tag, tag)
}

func bootstrapDebian(ctx context.Context, s *Store, opts BootstrapOptions, img debianImage) (digest.Digest, error) {
	name := img.tags[0]
	progress := func(format string, a ...any) {
		if opts.Progress != nil {
			opts.Progress(name + ": " + fmt.Sprintf(format, a...))
		}
	}
	base, err := s.View(BaseView)
	if err != nil {
		return "", err
	}
	if !opts.Force {
		if id, err := base.Resolve(name); err == nil {
			if err := tagAll(base, id, img.tags); err != nil {
				return "", fmt.Errorf("bootstrap %s: %w", name, err)
			}
			progress("present")
			return id, nil
		}
	}

	bin := opts.Mmdebstrap
	if bin == "" {
		bin = "mmdebstrap"
	}
	bin, err = exec.LookPath(bin)
	if err != nil {
		return "", fmt.Errorf("bootstrap %s: mmdebstrap not found: %w\nInstall it with `apt-get install mmdebstrap`.\n%s", name, err, importHint(name))
	}
	sources := opts.Sources
	if len(sources) == 0 {
		sources, err = hostSources(AptSources, DebianSuite)
		if err != nil {
			return "", fmt.Errorf("bootstrap %s: %w", name, err)
		}
		if len(sources) == 0 {
			return "", fmt.Errorf("bootstrap %s: no apt source for Debian %s in %s; add one.\n%s", name, DebianSuite, strings.Join(AptSources, ", "), importHint(name))
		}
	}
	tmp, err := os.MkdirTemp("", "labd-bootstrap-")
	if err != nil {
		return "", fmt.Errorf("bootstrap %s: %w", name, err)
	}
	defer os.RemoveAll(tmp)
	// apt downloads as _apt into mmdebstrap's tempdir below this one.
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", fmt.Errorf("bootstrap %s: %w", name, err)
	}
	sourcesFile := filepath.Join(tmp, "sources.list")
	if err := os.WriteFile(sourcesFile, []byte(strings.Join(sources, "\n")+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("bootstrap %s: %w", name, err)
	}
	epoch := sourceDateEpoch(DebianSuite)

	args := []string{
		"--variant=minbase", "--format=tar",
		// mmdebstrap would put device nodes in /dev; images have an empty
		// /dev (the runtime mounts a tmpfs there), written below.
		"--skip=output/dev",
		"--include=" + strings.Join(img.packages, ","),
	}
	if fi, err := os.Stat(MergedUsrHooks); err == nil && fi.IsDir() {
		args = append(args, "--hook-dir="+MergedUsrHooks)
	}
	for _, o := range slimDpkgOpts {
		args = append(args, "--dpkgopt="+o)
	}
	if conf := hostAptConfig(ctx); conf != "" {
		aptFile := filepath.Join(tmp, "apt.conf")
		if err := os.WriteFile(aptFile, []byte(conf), 0o644); err != nil {
			return "", fmt.Errorf("bootstrap %s: %w", name, err)
		}
		args = append(args, "--aptopt="+aptFile)
	}
	for _, h := range img.hooks {
		args = append(args, "--customize-hook="+h)
	}
	// The host's apt options (proxy) must not stay in the image, nor the
	// host's resolv.conf and hostname (the runtime provides both).
	args = append(args, `--customize-hook=rm -f "$1/etc/apt/apt.conf.d/99mmdebstrap" "$1/etc/resolv.conf" "$1/etc/hostname"`)
	args = append(args, DebianSuite, "-", sourcesFile)

	start := time.Now()
	progress("building from Debian %s packages with mmdebstrap: %s", DebianSuite, strings.Join(img.packages, " "))
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(runCtx, bin, args...)
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH="+strconv.FormatInt(epoch.Unix(), 10), "TMPDIR="+tmp)
	// SIGTERM lets mmdebstrap unmount /proc, /sys and /dev of its chroot.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = time.Minute
	if os.Geteuid() == 0 {
		// The chroot's mounts (proc, sys, dev nodes) live in a mount
		// namespace of mmdebstrap's own: however it ends, none stays on
		// the host below tmp for RemoveAll to walk into. So a cancel can
		// kill its whole process group at once (on SIGTERM mmdebstrap
		// would finish downloading and installing first).
		cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Setpgid: true}
		if opts.noNetwork {
			cmd.SysProcAttr.Unshareflags |= syscall.CLONE_NEWNET
		}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("bootstrap %s: %w", name, err)
	}
	tail := &lineTail{max: 20}
	stderrDone := make(chan struct{})
	go func() {
		defer close(stderrDone)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := strings.TrimRight(sc.Text(), "\r")
			if line == "" {
				continue
			}
			tail.add(line)
			// mmdebstrap's own status lines; apt's and dpkg's chatter
			// only goes into error messages.
			if len(line) > 3 && strings.Contains("IWE", line[:1]) && line[1:3] == ": " {
				progress("%s", line)
			}
		}
	}()

	pr, pw := io.Pipe()
	var waitErr error
	exited := make(chan struct{})
	go func() {
		// A "./dev/" directory entry first, then mmdebstrap's tar: two
		// concatenated archives are one, as long as the first has no
		// end-of-archive blocks.
		tw := tar.NewWriter(pw)
		err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "./dev/", Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX})
		if err == nil {
			err = tw.Flush()
		}
		if err == nil {
			_, err = io.Copy(pw, stdout)
		}
		io.Copy(io.Discard, stdout)
		<-stderrDone
		waitErr = cmd.Wait()
		if waitErr != nil {
			err = waitErr
		}
		// exited closes before the pipe does: when PutLayer fails because
		// mmdebstrap did, exited is already closed.
		close(exited)
		pw.CloseWithError(err)
	}()
	info, putErr := s.PutLayer(ctx, pr)
	stopped := false
	if putErr != nil {
		select {
		case <-exited:
		default:
			// A layer that cannot be stored: stop mmdebstrap.
			stopped = true
			cancel()
		}
	}
	pr.CloseWithError(errors.New("layer import ended"))
	<-exited
	if ctx.Err() != nil {
		return "", fmt.Errorf("bootstrap %s: %w", name, ctx.Err())
	}
	if waitErr != nil && !stopped {
		return "", mmdebstrapError(name, img.packages, sources, waitErr, tail.lines())
	}
	if putErr != nil {
		return "", fmt.Errorf("bootstrap %s: import layer: %w", name, putErr)
	}
	progress("layer %s imported (%.1f MB) in %s", info.DiffID.Encoded()[:12], float64(info.Size)/1e6, time.Since(start).Round(time.Second))

	versions, err := dpkgVersions(filepath.Join(s.LayerDir(info.DiffID), "var", "lib", "dpkg", "status"))
	if err != nil {
		return "", fmt.Errorf("bootstrap %s: %w", name, err)
	}
	for _, p := range img.packages {
		if versions[p] == "" {
			return "", fmt.Errorf("bootstrap %s: package %s missing from the built image", name, p)
		}
	}
	ccfg := img.config(versions)
	cmdJSON, err := json.Marshal(ccfg.Cmd)
	if err != nil {
		return "", err
	}
	cfg := &Config{
		Architecture: runtime.GOARCH,
		Config:       ccfg,
		Created:      epoch,
		History: []History{
			{Created: epoch, CreatedBy: "/bin/sh -c #(nop) ADD file:" + info.DiffID.Encoded() + " in / ",
				Comment: "labd: mmdebstrap --variant=minbase " + DebianSuite + " --include=" + strings.Join(img.packages, ",")},
			{Created: epoch, CreatedBy: "/bin/sh -c #(nop)  CMD " + string(cmdJSON), EmptyLayer: true},
		},
		OS:     "linux",
		RootFS: &RootFS{Type: "layers", DiffIDs: []digest.Digest{info.DiffID}},
	}
	raw, err := cfg.Marshal()
	if err != nil {
		return "", err
	}
	id, err := s.PutImage(ctx, raw)
	if err != nil {
		return "", fmt.Errorf("bootstrap %s: %w", name, err)
	}
	if err := base.Add(id, "", false); err != nil {
		return "", fmt.Errorf("bootstrap %s: %w", name, err)
	}
	if err := tagAll(base, id, img.tags); err != nil {
		return "", fmt.Errorf("bootstrap %s: %w", name, err)
	}
	progress("done: %s (%s, %.1f MB) in %s", strings.Join(img.tags, ", "), id.Encoded()[:12], float64(info.Size)/1e6, time.Since(start).Round(time.Second))
	return id, nil
}

func tagAll(v *View, id digest.Digest, tags []string) error {
	for _, t := range tags {
		if cur, err := v.Resolve(t); err == nil && cur == id {
			continue
		}
		if err := v.AddTag(id, t); err != nil {
			return err
		}
	}
	return nil
}

// mmdebstrapError explains a failed mmdebstrap run, naming what is
// missing when the mirror could not be reached.
func mmdebstrapError(name string, packages, sources []string, err error, tail []string) error {
	all := strings.Join(tail, "\n")
	// apt's errors ("E: ...", "Err:N ..." and their indented details)
	// say what failed; the rest is progress.
	var errs []string
	for _, l := range tail {
		if strings.HasPrefix(l, "E: ") || strings.HasPrefix(l, "Err:") || strings.HasPrefix(l, " ") {
			errs = append(errs, "  "+strings.TrimSpace(l))
		}
	}
	if len(errs) == 0 {
		for _, l := range tail {
			errs = append(errs, "  "+l)
		}
	}
	out := strings.Join(errs, "\n")
	if netFailure.MatchString(all) {
		return fmt.Errorf("bootstrap %s: the Debian package mirror is not reachable, so the Debian %s packages it is built from "+
			"(%s and what they depend on) cannot be downloaded (apt sources: %s): mmdebstrap: %w\n%s\n%s",
			name, DebianSuite, strings.Join(packages, ", "), strings.Join(sources, "; "), err, out, importHint(name))
	}
	return fmt.Errorf("bootstrap %s: mmdebstrap: %w\n%s\n%s", name, err, out, importHint(name))
}

var netFailure = regexp.MustCompile(`(?i)failed to fetch|could not resolve|temporary failure resolving|unable to connect|could not connect|connection refused|network is unreachable|no route to host|apt-get update .*failed|some index files failed`)

// lineTail keeps the last lines of a stream (for error messages).
type lineTail struct {
	max int
	buf []string
}

func (t *lineTail) add(l string) {
	t.buf = append(t.buf, l)
	if len(t.buf) > t.max {
		t.buf = t.buf[len(t.buf)-t.max:]
	}
}

func (t *lineTail) lines() []string { return t.buf }

// hostSources returns the host's one-line apt entries ("deb ...") for
// suite and its -updates/-security suites, from one-line .list files and
// deb822 .sources files.
func hostSources(globs []string, suite string) ([]string, error) {
	var out []string
	for _, g := range globs {
		files, err := filepath.Glob(g)
		if err != nil {
			return nil, err
		}
		sort.Strings(files)
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				if errors.Is(err, os.ErrNotExist) {
					continue
				}
				return nil, fmt.Errorf("read apt sources: %w", err)
			}
			if strings.HasSuffix(f, ".sources") {
				out = append(out, deb822Sources(string(b), suite)...)
			} else {
				out = append(out, oneLineSources(string(b), suite)...)
			}
		}
	}
	return out, nil
}

func suiteMatches(s, suite string) bool {
	return s == suite || strings.HasPrefix(s, suite+"-") || strings.HasPrefix(s, suite+"/")
}

// oneLineSources keeps the "deb" lines of a sources.list for suite.
func oneLineSources(text, suite string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if i := strings.IndexByte(l, '#'); i >= 0 {
			l = l[:i]
		}
		f := strings.Fields(l)
		if len(f) < 3 || f[0] != "deb" {
			continue
		}
		rest := f[1:]
		if strings.HasPrefix(rest[0], "[") {
			for len(rest) > 0 && !strings.HasSuffix(rest[0], "]") {
				rest = rest[1:]
			}
			if len(rest) == 0 {
				continue
			}
			rest = rest[1:]
		}
		if len(rest) >= 2 && suiteMatches(rest[1], suite) {
			out = append(out, strings.Join(f, " "))
		}
	}
	return out
}

// deb822Sources converts the stanzas of a .sources file for suite to
// one-line entries, keeping Signed-By (a keyring path), Architectures and
// Trusted.
func deb822Sources(text, suite string) []string {
	var out []string
	for _, stanza := range splitStanzas(text) {
		if strings.EqualFold(stanza["enabled"], "no") || !containsField(stanza["types"], "deb") {
			continue
		}
		var opts []string
		if sb := stanza["signed-by"]; sb != "" && !strings.Contains(sb, "\n") && !strings.Contains(sb, "BEGIN PGP") {
			opts = append(opts, "signed-by="+strings.Join(strings.Fields(sb), ","))
		}
		if a := stanza["architectures"]; a != "" {
			opts = append(opts, "arch="+strings.Join(strings.Fields(a), ","))
		}
		if t := stanza["trusted"]; t != "" {
			opts = append(opts, "trusted="+t)
		}
		prefix := "deb "
		if len(opts) > 0 {
			prefix += "[" + strings.Join(opts, " ") + "] "
		}
		comps := strings.Join(strings.Fields(stanza["components"]), " ")
		for _, uri := range strings.Fields(stanza["uris"]) {
			for _, s := range strings.Fields(stanza["suites"]) {
				if suiteMatches(s, suite) {
					out = append(out, strings.TrimSpace(prefix+uri+" "+s+" "+comps))
				}
			}
		}
	}
	return out
}

func containsField(list, v string) bool {
	for _, f := range strings.Fields(list) {
		if f == v {
			return true
		}
	}
	return false
}

// splitStanzas parses deb822 text: stanzas separated by blank lines,
// "Key: value" fields (keys lowercased), continuation lines starting
// with white space, comments starting with '#'.
func splitStanzas(text string) []map[string]string {
	var out []map[string]string
	cur := map[string]string{}
	key := ""
	flush := func() {
		if len(cur) > 0 {
			out = append(out, cur)
		}
		cur, key = map[string]string{}, ""
	}
	for _, l := range strings.Split(text, "\n") {
		switch {
		case strings.HasPrefix(l, "#"):
		case strings.TrimSpace(l) == "":
			flush()
		case l[0] == ' ' || l[0] == '\t':
			if key != "" {
				cur[key] += "\n" + strings.TrimSpace(l)
			}
		default:
			k, v, ok := strings.Cut(l, ":")
			if !ok {
				continue
			}
			key = strings.ToLower(strings.TrimSpace(k))
			cur[key] = strings.TrimSpace(v)
		}
	}
	flush()
	return out
}

// aptConfigKeys are the host apt settings mmdebstrap's apt needs to reach
// the mirror the way the host's apt does.
var aptConfigKeys = []string{"Acquire::http::Proxy", "Acquire::https::Proxy", "Acquire::ftp::Proxy", "Acquire::Check-Valid-Until", "Acquire::Check-Date"}

// hostAptConfig returns those settings as apt.conf lines ("" when none).
func hostAptConfig(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "apt-config", "dump").Output()
	if err != nil {
		return ""
	}
	var b strings.Builder
	for _, l := range strings.Split(string(out), "\n") {
		k, _, _ := strings.Cut(l, " ")
		for _, want := range aptConfigKeys {
			if strings.EqualFold(k, want) || strings.HasPrefix(strings.ToLower(k), strings.ToLower(want)+"::") {
				b.WriteString(l + "\n")
				break
			}
		}
	}
	return b.String()
}

// sourceDateEpoch is the timestamp of the build: the newest Date of the
// host's downloaded Release files for suite, so that the same package
// set gives the same image on a rebuild; now when there are none.
func sourceDateEpoch(suite string) time.Time {
	files, _ := filepath.Glob("/var/lib/apt/lists/*_dists_" + suite + "*Release")
	var newest time.Time
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			v, ok := strings.CutPrefix(sc.Text(), "Date: ")
			if !ok {
				continue
			}
			if t, err := time.Parse(time.RFC1123, strings.TrimSpace(v)); err == nil && t.After(newest) {
				newest = t
			}
			break
		}
	}
	if newest.IsZero() {
		newest = time.Now()
	}
	return newest.UTC().Truncate(time.Second)
}

// dpkgVersions reads Package → Version of the installed packages from a
// dpkg status file.
func dpkgVersions(statusFile string) (map[string]string, error) {
	b, err := os.ReadFile(statusFile)
	if err != nil {
		return nil, fmt.Errorf("read dpkg status: %w", err)
	}
	v := map[string]string{}
	for _, st := range splitStanzas(string(b)) {
		if strings.Contains(st["status"], "installed") && !strings.Contains(st["status"], "not-installed") {
			v[st["package"]] = st["version"]
		}
	}
	return v, nil
}

// upstreamVersion turns a Debian version ("3.11.2-1+b1") into the
// upstream one ("3.11.2").
func upstreamVersion(deb string) string {
	if _, after, ok := strings.Cut(deb, ":"); ok {
		deb = after
	}
	if i := strings.LastIndexByte(deb, '-'); i > 0 {
		deb = deb[:i]
	}
	return deb
}
