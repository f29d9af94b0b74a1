package enginetest

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"
)

// tarList lists a tar's entries as "name mode size".
func tarList(t *testing.T, b []byte) []string {
	t.Helper()
	var out []string
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("read tar: %v", err)
		}
		out = append(out, fmt.Sprintf("%s %o %d", h.Name, h.Mode&0o7777, h.Size))
	}
}

func TestCpRoundTrip(t *testing.T) {
	rmf(t, "cp-run")
	src := WriteContext(t, map[string]string{"in.txt|0640": "hello from the host\n", "dir/sub/x|0755": "#!/bin/sh\n"})
	sameOnBoth(t, "cp into a running container and back", func(e *Engine) string {
		var b strings.Builder
		if r := run(t, e, "run", "-d", "--name", "cp-run", "busybox", "sleep", "60"); r.Code != 0 {
			t.Fatalf("%s: run: %s", e.Name, r.Stderr)
		}
		for _, args := range [][]string{
			{"cp", filepath.Join(src, "in.txt"), "cp-run:/tmp/"},
			{"cp", filepath.Join(src, "dir"), "cp-run:/tmp/d2"},
			{"exec", "cp-run", "sh", "-c", "stat -c '%n %a %s' /tmp/in.txt /tmp/d2/sub/x; cat /tmp/in.txt"},
			{"cp", filepath.Join(src, "in.txt"), "cp-run:/nonexistent/dir/"},
			{"cp", filepath.Join(src, "in.txt"), "cp-run:/etc/passwd/x"},
		} {
			r := run(t, e, args...)
			fmt.Fprintf(&b, "%v: %d %q %q\n", args[1:], r.Code, r.Stdout, r.Stderr)
		}
		out := t.TempDir()
		r := run(t, e, "cp", "cp-run:/tmp/in.txt", filepath.Join(out, "back.txt"))
		fmt.Fprintf(&b, "cp back: %d %q\n", r.Code, r.Stderr)
		fi, err := os.Stat(filepath.Join(out, "back.txt"))
		if err != nil {
			t.Fatalf("%s: %v", e.Name, err)
		}
		body, _ := os.ReadFile(filepath.Join(out, "back.txt"))
		fmt.Fprintf(&b, "back: %v %q\n", fi.Mode(), body)
		// A tar on stdout, a directory and a symlink.
		tr := run(t, e, "cp", "cp-run:/tmp/d2", "-")
		fmt.Fprintf(&b, "tar: %d %v\n", tr.Code, tarList(t, []byte(tr.Stdout)))
		run(t, e, "exec", "cp-run", "ln", "-s", "/etc/passwd", "/tmp/link")
		lr := run(t, e, "cp", "cp-run:/tmp/link", "-")
		fmt.Fprintf(&b, "link: %d %v\n", lr.Code, tarList(t, []byte(lr.Stdout)))
		lr = run(t, e, "cp", "-L", "cp-run:/tmp/link", "-")
		fmt.Fprintf(&b, "link -L: %d %v\n", lr.Code, tarList(t, []byte(lr.Stdout)))
		return norm(b.String())
	})
}

func TestCpStoppedContainer(t *testing.T) {
	rmf(t, "cp-stopped")
	src := WriteContext(t, map[string]string{"put.txt|0600": "put while stopped\n"})
	got := sameOnBoth(t, "cp with a stopped container", func(e *Engine) string {
		var b strings.Builder
		if r := run(t, e, "run", "--name", "cp-stopped", "busybox", "sh", "-c", "echo hi > /hello; mkdir /d; echo a > /d/a; rm /bin/true"); r.Code != 0 {
			t.Fatalf("%s: run: %s", e.Name, r.Stderr)
		}
		out := t.TempDir()
		for _, args := range [][]string{
			{"cp", "cp-stopped:/hello", filepath.Join(out, "hello")},
			{"cp", "cp-stopped:/d", filepath.Join(out, "d")},
			{"cp", "cp-stopped:/nope", filepath.Join(out, "nope")},
			{"cp", "cp-stopped:/bin/true", filepath.Join(out, "true")},
			{"cp", filepath.Join(src, "put.txt"), "cp-stopped:/d/"},
			{"cp", "nosuchcontainer:/hello", out},
		} {
			r := run(t, e, args...)
			shown := strings.ReplaceAll(strings.ReplaceAll(fmt.Sprint(args[1:]), out, "OUT"), src, "SRC")
			fmt.Fprintf(&b, "%s: %d %q\n", shown, r.Code, r.Stderr)
		}
		for _, f := range []string{"hello", "d/a"} {
			body, err := os.ReadFile(filepath.Join(out, f))
			fmt.Fprintf(&b, "%s: %q %v\n", f, body, err)
		}
		r := run(t, e, "start", "-a", "cp-stopped")
		fmt.Fprintf(&b, "start: %d\n", r.Code)
		r = run(t, e, "cp", "cp-stopped:/d/put.txt", "-")
		fmt.Fprintf(&b, "put: %v\n", tarList(t, []byte(r.Stdout)))
		diff := strings.Split(strings.TrimSpace(run(t, e, "diff", "cp-stopped").Stdout), "\n")
		sort.Strings(diff)
		fmt.Fprintf(&b, "diff: %v\n", diff)
		return b.String()
	})
	if !strings.Contains(got, `hello: "hi\n"`) || !strings.Contains(got, `put: [put.txt 600 18]`) {
		t.Errorf("unexpected:\n%s", got)
	}
	// The CLI words a missing path itself; the engine's message is dockerd's.
	sameOnBoth(t, "missing path error", func(e *Engine) string {
		cli, err := client.NewClientWithOpts(client.WithHost(e.Host()), client.WithAPIVersionNegotiation())
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		var b strings.Builder
		_, err = cli.ContainerStatPath(ctx2m(t), "cp-stopped", "/nope")
		fmt.Fprintf(&b, "stat: notfound=%v\n", errdefs.IsNotFound(err))
		_, _, err = cli.CopyFromContainer(ctx2m(t), "cp-stopped", "/nope")
		fmt.Fprintf(&b, "get: %v\n", err)
		err = cli.CopyToContainer(ctx2m(t), "cp-stopped", "/hello", strings.NewReader(""), container.CopyToContainerOptions{})
		fmt.Fprintf(&b, "put on a file: %v\n", err)
		st, err := cli.ContainerStatPath(ctx2m(t), "cp-stopped", "/hello")
		fmt.Fprintf(&b, "stat: %s %d %v %v\n", st.Name, st.Size, st.Mode, err)
		st, err = cli.ContainerStatPath(ctx2m(t), "cp-stopped", "/etc/mtab")
		fmt.Fprintf(&b, "stat link: %s %v %q %v\n", st.Name, st.Mode, st.LinkTarget, err)
		return b.String()
	})
}

func TestExport(t *testing.T) {
	rmf(t, "export-me")
	lists := map[string][]string{}
	for _, e := range both(t) {
		if r := run(t, e, "run", "--name", "export-me", "busybox", "sh", "-c", "echo x > /root/marker; rm /bin/ls"); r.Code != 0 {
			t.Fatalf("%s: run: %s", e.Name, r.Stderr)
		}
		r := run(t, e, "export", "export-me")
		if r.Code != 0 {
			t.Fatalf("%s: export: %s", e.Name, r.Stderr)
		}
		var names []string
		tr := tar.NewReader(strings.NewReader(r.Stdout))
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: export tar: %v", e.Name, err)
			}
			names = append(names, h.Name)
		}
		sort.Strings(names)
		lists[e.Name] = names
		joined := "\n" + strings.Join(names, "\n") + "\n"
		for _, want := range []string{"\nroot/marker\n", "\nbin/busybox\n", "\n.dockerenv\n", "\netc/hosts\n"} {
			if !strings.Contains(joined, want) {
				t.Errorf("%s: export lacks %q", e.Name, strings.TrimSpace(want))
			}
		}
		if strings.Contains(joined, "\nbin/ls\n") {
			t.Errorf("%s: export has the deleted bin/ls", e.Name)
		}
	}
	if d := lists["dockerd"]; d != nil && strings.Join(d, "\n") != strings.Join(lists["labd"], "\n") {
		t.Errorf("export listings differ:\nlabd:\n%v\ndockerd:\n%v", lists["labd"], d)
	}
}

var createdRE = regexp.MustCompile(`"CreatedAt": "[^"]*"|"Mountpoint": "[^"]*"`)

func TestVolumesCLI(t *testing.T) {
	rmf(t, "vol-user")
	t.Cleanup(func() {
		for _, e := range both(t) {
			run(t, e, "volume", "rm", "-f", "vol-a", "vol-b", "vol-used")
		}
	})
	sameOnBoth(t, "volume commands", func(e *Engine) string {
		var b strings.Builder
		for _, args := range [][]string{
			{"volume", "create", "vol-a"},
			{"volume", "create", "--label", "k=v", "vol-b"},
			{"volume", "create", "vol-a"},
			{"volume", "create", "bad/name"},
			{"volume", "ls", "--filter", "name=vol-"},
			{"volume", "ls", "-q", "--filter", "label=k=v"},
			{"volume", "inspect", "vol-b"},
			{"volume", "inspect", "--format", "{{.Name}} {{.Driver}} {{.Scope}} {{.Labels}} {{.Options}}", "vol-a"},
			{"volume", "inspect", "nosuchvolume"},
			{"run", "--name", "vol-user", "-v", "vol-used:/data", "busybox", "sh", "-c", "echo 12345 > /data/f"},
			{"volume", "ls", "--filter", "dangling=false", "--filter", "name=vol-"},
			{"volume", "rm", "vol-used"},
			{"volume", "rm", "nosuchvolume"},
			{"volume", "rm", "vol-a"},
			{"volume", "prune", "-f", "--filter", "label=k=v"},
			{"volume", "ls", "--filter", "name=vol-"},
			{"rm", "vol-user"},
			{"run", "--rm", "-v", "vol-used:/data", "busybox", "cat", "/data/f"},
		} {
			r := run(t, e, args...)
			out := createdRE.ReplaceAllString(r.Stdout, "<x>")
			fmt.Fprintf(&b, "%v: %d\n%s%s", args, r.Code, out, r.Stderr)
		}
		return norm(b.String())
	})
}

func TestNetworksCLI(t *testing.T) {
	sameOnBoth(t, "network commands", func(e *Engine) string {
		var b strings.Builder
		for _, args := range [][]string{
			{"network", "ls", "--filter", "driver=null"},
			{"network", "ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}}", "--filter", "name=host"},
			{"network", "inspect", "--format", "{{.Name}} {{.Driver}} {{.Scope}} {{.Options}} {{.Labels}}", "none", "host"},
			{"network", "inspect", "nosuchnet"},
			{"network", "prune", "-f"},
			{"network", "rm", "none"},
		} {
			r := run(t, e, args...)
			fmt.Fprintf(&b, "%v: %d\n%s%s", args, r.Code, r.Stdout, r.Stderr)
		}
		return norm(b.String())
	})
	// labd has the bridge too (dockerd runs here with --bridge none).
	out := pair.Labd.Must(t, DockerCLI20, "", "network", "ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}}")
	if out != "bridge bridge local\nhost host local\nnone null local\n" {
		t.Errorf("labd network ls:\n%s", out)
	}
	r := run(t, pair.Labd, "network", "create", "mynet")
	if r.Code == 0 || !strings.Contains(r.Stderr, "not supported") {
		t.Errorf("network create: %d %q", r.Code, r.Stderr)
	}
	r = run(t, pair.Labd, "run", "--rm", "--network", "host", "busybox", "true")
	if r.Code == 0 {
		t.Errorf("--network host was accepted")
	}
}

var dfNums = regexp.MustCompile(`\s{2,}`)

func TestSystemDF(t *testing.T) {
	rmf(t, "df-c")
	sameOnBoth(t, "system df", func(e *Engine) string {
		run(t, e, "create", "--name", "df-c", "busybox", "true")
		var b strings.Builder
		r := run(t, e, "system", "df", "--format", "{{.Type}}")
		fmt.Fprintf(&b, "types: %d %q\n", r.Code, r.Stdout)
		r = run(t, e, "system", "df")
		lines := strings.Split(r.Stdout, "\n")
		fmt.Fprintf(&b, "header: %q\n", strings.Join(strings.Fields(lines[0]), " "))
		r = run(t, e, "system", "df", "-v")
		var heads []string
		for _, l := range strings.Split(r.Stdout, "\n") {
			if strings.HasSuffix(l, "usage:") || strings.HasPrefix(l, "REPOSITORY") || strings.HasPrefix(l, "CONTAINER ID") || strings.HasPrefix(l, "VOLUME NAME") || strings.HasPrefix(l, "CACHE ID") {
				heads = append(heads, strings.Join(strings.Fields(l), " "))
			}
		}
		fmt.Fprintf(&b, "-v: %d %q\n", r.Code, heads)
		r = run(t, e, "system", "df", "-v", "--format", "{{range .Images}}{{if eq .Repository \"busybox\"}}{{.Repository}} {{.Tag}} {{.Size}}{{end}}{{end}}")
		fmt.Fprintf(&b, "busybox: %q\n", r.Stdout)
		r = run(t, e, "info", "--format", "{{.Containers}} {{.ContainersRunning}} {{.ContainersPaused}}")
		fmt.Fprintf(&b, "info ok: %v\n", r.Code == 0 && r.Stdout != "0 0 0\n")
		return b.String()
	})
}
