package enginetest

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/docker/docker/api/types"
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

// dfCols splits a row of `docker system df`'s table: the CLI pads
// columns with at least two spaces, and "Local Volumes" has one inside.
var dfCols = regexp.MustCompile(`\s{2,}`)

// dfCounts is TOTAL and ACTIVE per TYPE of `docker system df`.
func dfCounts(t *testing.T, e *Engine) map[string][2]int {
	t.Helper()
	out := e.Must(t, DockerCLI20, "", "system", "df")
	counts := map[string][2]int{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		f := dfCols.Split(strings.TrimSpace(l), -1)
		if len(f) != 5 {
			t.Fatalf("%s: system df row %q: %d columns", e.Name, l, len(f))
		}
		total, err1 := strconv.Atoi(f[1])
		active, err2 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil {
			t.Fatalf("%s: system df row %q: TOTAL and ACTIVE are not numbers", e.Name, l)
		}
		counts[f[0]] = [2]int{total, active}
	}
	return counts
}

// dfBytes is what `docker system df` adds up, from the API's exact sizes
// rather than the table's rounded ones.
type dfBytes struct {
	layers                     int64
	containers, containersFree int64 // SizeRw of all, of those not active (running, paused, restarting)
	volumes, volumesFree       int64 // sizes of all, of those no container references
}

func diskUsage(t *testing.T, e *Engine) (types.DiskUsage, dfBytes) {
	t.Helper()
	c, err := client.NewClientWithOpts(client.WithHost(e.Host()), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	du, err := c.DiskUsage(ctx2m(t), types.DiskUsageOptions{})
	if err != nil {
		t.Fatalf("%s: system df: %v", e.Name, err)
	}
	sum := dfBytes{layers: du.LayersSize}
	for _, ctr := range du.Containers {
		sum.containers += ctr.SizeRw
		if ctr.State != "running" && ctr.State != "paused" && ctr.State != "restarting" {
			sum.containersFree += ctr.SizeRw
		}
	}
	for _, v := range du.Volumes {
		if v.UsageData == nil {
			t.Fatalf("%s: system df: volume %s without usage data", e.Name, v.Name)
		}
		if v.UsageData.Size == -1 { // not measured: the CLI skips it too
			continue
		}
		sum.volumes += v.UsageData.Size
		if v.UsageData.RefCount == 0 {
			sum.volumesFree += v.UsageData.Size
		}
	}
	return du, sum
}

// TestSystemDF makes an image, three containers and three volumes of
// known sizes on each engine and checks what `docker system df` reports
// for them: the same on both engines, and what the test wrote. Other
// tests leave objects behind (some on labd only), so totals are compared
// as the change the test made.
func TestSystemDF(t *testing.T) {
	t.Cleanup(func() {
		for _, e := range both(t) {
			ctx := context.Background()
			e.Docker(ctx, DockerCLI20, "", nil, "rm", "-f", "df-run", "df-created", "df-exited")
			e.Docker(ctx, DockerCLI20, "", nil, "volume", "rm", "-f", "df-used", "df-kept", "df-unused")
			e.Docker(ctx, DockerCLI20, "", nil, "rmi", "-f", "df-img")
		}
	})
	// Hard links count once in dockerd's sizes (layers, rw layers and
	// volumes alike); the second name of each file checks that.
	src := WriteContext(t, map[string]string{"Dockerfile": "FROM busybox\nRUN head -c 2000 /dev/zero > /x && ln /x /x2\n"})
	sameOnBoth(t, "system df", func(e *Engine) string {
		var b strings.Builder
		info := func() []int {
			var n [5]int
			out := e.Must(t, DockerCLI20, "", "info", "--format", "{{.Images}} {{.Containers}} {{.ContainersRunning}} {{.ContainersPaused}} {{.ContainersStopped}}")
			if _, err := fmt.Sscan(out, &n[0], &n[1], &n[2], &n[3], &n[4]); err != nil {
				t.Fatalf("%s: info %q: %v", e.Name, out, err)
			}
			return n[:]
		}
		infoBefore, countsBefore := info(), dfCounts(t, e)
		_, bytesBefore := diskUsage(t, e)

		e.Must(t, DockerCLI20, src, "build", "--no-cache", "-q", "-t", "df-img", ".")
		e.Must(t, DockerCLI20, "", "run", "-d", "--name", "df-run", "-v", "df-used:/data", "df-img", "sh", "-c",
			"head -c 3000 /dev/zero > /data/f && ln /data/f /data/f2 && head -c 1000 /dev/zero > /r && ln /r /r2 && touch /ready && exec sleep 300")
		waitFor(t, "df-run's files", func() bool { return run(t, e, "exec", "df-run", "test", "-e", "/ready").Code == 0 })
		e.Must(t, DockerCLI20, "", "create", "--name", "df-created", "-v", "df-kept:/k", "df-img", "true")
		e.Must(t, DockerCLI20, "", "run", "--name", "df-exited", "df-img", "sh", "-c", "head -c 4000 /dev/zero > /e")
		e.Must(t, DockerCLI20, "", "run", "--rm", "-v", "df-unused:/u", "df-img", "sh", "-c", "head -c 5000 /dev/zero > /u/f")

		// The table's counts: one image (used by three containers), three
		// containers (one running), three volumes (two referenced, by a
		// running and by a created container), no build cache.
		countsAfter := dfCounts(t, e)
		var changes []string
		for _, typ := range []string{"Images", "Containers", "Local Volumes", "Build Cache"} {
			a, bf := countsAfter[typ], countsBefore[typ]
			changes = append(changes, fmt.Sprintf("%s %+d/%+d", typ, a[0]-bf[0], a[1]-bf[1]))
		}
		got := strings.Join(changes, ", ")
		if want := "Images +1/+1, Containers +3/+1, Local Volumes +3/+2, Build Cache +0/+0"; got != want {
			t.Errorf("%s: system df TOTAL/ACTIVE changed by %s, want %s", e.Name, got, want)
		}
		fmt.Fprintf(&b, "table TOTAL/ACTIVE: %s\n", got)

		// RECLAIMABLE and SIZE as the CLI adds them up. Images' RECLAIMABLE
		// is left out: it subtracts the unique size of every used image,
		// and the busybox layer df-img shares may or may not have been
		// shared (and busybox used) before, depending on the tests that ran.
		du, bytesAfter := diskUsage(t, e)
		got = fmt.Sprintf("layers %+d, containers %+d (reclaimable %+d), volumes %+d (reclaimable %+d)",
			bytesAfter.layers-bytesBefore.layers,
			bytesAfter.containers-bytesBefore.containers, bytesAfter.containersFree-bytesBefore.containersFree,
			bytesAfter.volumes-bytesBefore.volumes, bytesAfter.volumesFree-bytesBefore.volumesFree)
		if want := "layers +2000, containers +5000 (reclaimable +4000), volumes +8000 (reclaimable +5000)"; got != want {
			t.Errorf("%s: system df sizes changed by %s, want %s", e.Name, got, want)
		}
		fmt.Fprintf(&b, "bytes: %s\n", got)

		// The objects themselves, exactly.
		var objs []string
		var busybox int64 = -1
		for _, im := range du.Images {
			for _, tag := range im.RepoTags {
				if tag == "busybox:latest" {
					busybox = im.Size
				}
			}
		}
		for _, im := range du.Images {
			if len(im.RepoTags) == 1 && im.RepoTags[0] == "df-img:latest" {
				objs = append(objs, fmt.Sprintf("image df-img: busybox%+d, shared busybox%+d, containers %d", im.Size-busybox, im.SharedSize-busybox, im.Containers))
			}
		}
		for _, c := range du.Containers {
			if len(c.Names) == 1 && strings.HasPrefix(c.Names[0], "/df-") {
				objs = append(objs, fmt.Sprintf("container %s: %s %s rw %d", c.Names[0], c.Image, c.State, c.SizeRw))
			}
		}
		for _, v := range du.Volumes {
			if strings.HasPrefix(v.Name, "df-") {
				objs = append(objs, fmt.Sprintf("volume %s: %d bytes, %d refs", v.Name, v.UsageData.Size, v.UsageData.RefCount))
			}
		}
		sort.Strings(objs)
		got = strings.Join(objs, "\n")
		if want := `container /df-created: df-img created rw 0
container /df-exited: df-img exited rw 4000
container /df-run: df-img running rw 1000
image df-img: busybox+2000, shared busybox+0, containers 3
volume df-kept: 0 bytes, 1 refs
volume df-unused: 5000 bytes, 0 refs
volume df-used: 3000 bytes, 1 refs`; got != want {
			t.Errorf("%s: system df objects:\n%s\nwant:\n%s", e.Name, got, want)
		}
		fmt.Fprintf(&b, "objects:\n%s\nbusybox: %d bytes\n", got, busybox)

		// docker info counts the same containers (a created one is
		// stopped) and the image.
		infoAfter := info()
		var delta []string
		for i := range infoAfter {
			delta = append(delta, fmt.Sprintf("%+d", infoAfter[i]-infoBefore[i]))
		}
		got = strings.Join(delta, " ")
		if want := "+1 +3 +1 +0 +2"; got != want {
			t.Errorf("%s: info images/containers/running/paused/stopped changed by %s, want %s", e.Name, got, want)
		}
		fmt.Fprintf(&b, "info: %s\n", got)

		// How the CLI shows it: types, headers, and the rows of this
		// test's objects (times left out: they differ by the run).
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
		r = run(t, e, "system", "df", "-v", "--format",
			`{{range .Images}}{{if eq .Repository "busybox" "df-img"}}{{.Repository}} {{.Tag}} {{.Size}}{{if eq .Repository "df-img"}} shared {{.SharedSize}} unique {{.UniqueSize}} containers {{.Containers}}{{end}}
{{end}}{{end}}{{range .Containers}}{{if eq .Names "df-run" "df-created" "df-exited"}}{{.Names}} {{.Image}} {{.Command}} {{.LocalVolumes}} {{.Size}} {{.State}}
{{end}}{{end}}{{range .Volumes}}{{if eq .Name "df-used" "df-kept" "df-unused"}}{{.Name}} {{.Links}} {{.Size}}
{{end}}{{end}}`)
		rows := strings.Split(strings.TrimSpace(r.Stdout), "\n")
		sort.Strings(rows)
		fmt.Fprintf(&b, "-v rows: %d\n%s\n", r.Code, strings.Join(rows, "\n"))
		return b.String()
	})
}
