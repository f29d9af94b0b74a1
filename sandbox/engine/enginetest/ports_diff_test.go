package enginetest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/labd/labd/internal/testenv"
	"github.com/labd/labd/sandbox/engine/mountinfo"
)

// netDockerd is a reference dockerd that publishes ports inside its own
// network namespace, with labd's busybox loaded.
type netDockerd struct {
	*Engine
	ns string
}

// hostNetState is what a netns dockerd could leak onto the host: a
// docker0, DOCKER iptables chains, a labd-ref namespace of this test binary. Only those: other
// packages' tests add and remove their own links at the same time.
func hostNetState(tb testing.TB) string {
	tb.Helper()
	var b strings.Builder
	if _, err := net.InterfaceByName("docker0"); err == nil {
		b.WriteString("docker0 on the host\n")
	}
	ns, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		tb.Fatalf("ip netns list: %v", err)
	}
	for _, l := range splitLines(string(ns)) {
		// Only this test binary's namespaces: grader's tests make their
		// own labd-ref-<pid>- namespaces at the same time.
		if strings.HasPrefix(l, fmt.Sprintf("labd-ref-%d-", os.Getpid())) {
			b.WriteString("netns " + l + "\n")
		}
	}
	for _, table := range []string{"filter", "nat"} {
		out, _ := exec.Command("iptables", "-t", table, "-S").Output()
		for _, l := range splitLines(string(out)) {
			if strings.Contains(l, "DOCKER") || strings.Contains(l, "docker0") {
				b.WriteString(table + ": " + l + "\n")
			}
		}
	}
	return b.String()
}

// startNetDockerd starts the netns dockerd for one test or benchmark and
// checks at the end that the host's links and namespaces are as before.
func startNetDockerd(tb testing.TB) *netDockerd {
	tb.Helper()
	if NoDockerd() {
		testenv.Missing(tb, "LABD_NO_DOCKERD=1: no reference dockerd to compare with")
	}
	before := hostNetState(tb)
	dir, err := os.MkdirTemp("", "labd-refnet-")
	if err != nil {
		tb.Fatal(err)
	}
	var d netDockerd
	tb.Cleanup(func() {
		if d.Engine != nil {
			d.Stop()
		}
		if d.ns != "" {
			if err := RemoveNetNS(d.ns); err != nil {
				tb.Error(err)
			}
		}
		mountinfo.UnmountUnder(dir)
		_ = os.RemoveAll(dir)
		if after := hostNetState(tb); after != before {
			tb.Errorf("host network changed by the netns dockerd:\nbefore: %s\nafter:  %s", before, after)
		}
	})
	d.Engine, d.ns, err = StartDockerdInNetNS(dir)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tarPath := filepath.Join(dir, "busybox.tar")
	if r := pair.Labd.Docker(ctx, DockerCLI20, "", nil, "save", "-o", tarPath, "busybox:latest"); r.Code != 0 {
		tb.Fatalf("save busybox from labd: %s", r.Stderr)
	}
	if r := d.Docker(ctx, DockerCLI20, "", nil, "load", "-i", tarPath); r.Code != 0 {
		tb.Fatalf("load busybox into the netns dockerd: %s", r.Stderr)
	}
	return &d
}

// httpClient reaches 127.0.0.1 of the host (ns "") or of the namespace ns.
func httpClient(ns string) *http.Client {
	tr := &http.Transport{DisableKeepAlives: true}
	if ns != "" {
		tr.DialContext = func(ctx context.Context, _, addr string) (net.Conn, error) {
			return DialInNetNS(ctx, ns, addr)
		}
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: tr}
}

// getIn polls http://127.0.0.1:port/path with c until a 200 and returns
// the body.
func getIn(t *testing.T, c *http.Client, port, path string) string {
	t.Helper()
	return getWith(t, c, "http://127.0.0.1:"+port+path)
}

var hostPortRE = regexp.MustCompile(`:(\d+)->`)

// TestPublishedPortsDifferential runs the lab's `docker run -d -p` on
// standalone labd (publishing on the host's loopback) and on a dockerd
// confined to its own network namespace (publishing there), and compares
// what the learner sees: `docker ps` Ports, the page over 127.0.0.1, the
// error for a port already taken, and -P's ephemeral binding.
func TestPublishedPortsDifferential(t *testing.T) {
	ref := startNetDockerd(t)
	port := strconv.Itoa(freePort(t))
	names := []string{"pdiff1", "pdiff2", "pdiff3"}
	cmd := []string{"busybox", "sh", "-c", "echo hi > /i.html; httpd -f -p 5000 -h /"}
	engines := []struct {
		e  *Engine
		ns string
	}{{pair.Labd, ""}, {ref.Engine, ref.ns}}
	t.Cleanup(func() {
		for _, x := range engines {
			x.e.Docker(context.Background(), DockerCLI20, "", nil, append([]string{"rm", "-f"}, names...)...)
		}
	})

	var ports, errs, codes, ephemeral [2]string
	for i, x := range engines {
		if r := run(t, x.e, append([]string{"run", "-d", "--name", "pdiff1", "-p", port + ":5000"}, cmd...)...); r.Code != 0 {
			t.Fatalf("%s: run -p %s:5000: %s", x.e.Name, port, r.Stderr)
		}
		if body := getIn(t, httpClient(x.ns), port, "/i.html"); body != "hi\n" {
			t.Errorf("%s: GET 127.0.0.1:%s/i.html = %q", x.e.Name, port, body)
		}
		ports[i] = strings.TrimSpace(run(t, x.e, "ps", "--filter", "name=pdiff1", "--format", "{{.Ports}}").Stdout)

		r := run(t, x.e, append([]string{"run", "-d", "--name", "pdiff2", "-p", port + ":5000"}, cmd...)...)
		codes[i] = strconv.Itoa(r.Code)
		errs[i] = norm(r.Stderr)

		if r := run(t, x.e, append([]string{"run", "-d", "--name", "pdiff3", "--expose", "5000", "-P"}, cmd...)...); r.Code != 0 {
			t.Fatalf("%s: run -P: %s", x.e.Name, r.Stderr)
		}
		ephemeral[i] = strings.TrimSpace(run(t, x.e, "ps", "--filter", "name=pdiff3", "--format", "{{.Ports}}").Stdout)
		m := hostPortRE.FindStringSubmatch(ephemeral[i])
		if m == nil {
			t.Errorf("%s: -P Ports = %q, no host port", x.e.Name, ephemeral[i])
			continue
		}
		// dockerd draws from the kernel's ephemeral range (32768-60999
		// by default); labd must do the same.
		if n, _ := strconv.Atoi(m[1]); n < 32768 || n > 60999 {
			t.Errorf("%s: -P host port %d outside 32768-60999", x.e.Name, n)
		}
		if body := getIn(t, httpClient(x.ns), m[1], "/i.html"); body != "hi\n" {
			t.Errorf("%s: GET -P port %s = %q", x.e.Name, m[1], body)
		}
		ephemeral[i] = hostPortRE.ReplaceAllString(ephemeral[i], ":<port>->")
	}
	for _, c := range []struct {
		what string
		v    [2]string
	}{
		{"docker ps Ports for -p " + port + ":5000", ports},
		{"exit code of a second -p " + port + ":5000", codes},
		{"stderr of a second -p " + port + ":5000", errs},
		{"docker ps Ports for -P (port normalised)", ephemeral},
	} {
		t.Logf("%s: labd %q, dockerd %q", c.what, c.v[0], c.v[1])
		if c.v[0] != c.v[1] {
			t.Errorf("%s differs:\nlabd:    %q\ndockerd: %q", c.what, c.v[0], c.v[1])
		}
	}
	if want := "Bind for 0.0.0.0:" + port + " failed: port is already allocated"; !strings.Contains(errs[1], want) {
		t.Errorf("dockerd's error %q lacks %q: the reference is not publishing", errs[1], want)
	}
}

// BenchmarkRunToHTTP200 times `docker run -d -p PORT:5000` of a busybox
// httpd until the first HTTP 200 on 127.0.0.1:PORT, on standalone labd
// (host loopback) and on the netns dockerd (its namespace's loopback, the
// client dialling from inside it), in the same run.
func BenchmarkRunToHTTP200(b *testing.B) {
	ref := startNetDockerd(b)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	for _, x := range []struct {
		name string
		e    *Engine
		ns   string
	}{{"labd", pair.Labd, ""}, {"dockerd-netns", ref.Engine, ref.ns}} {
		b.Run(x.name, func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			c := httpClient(x.ns)
			for i := 0; i < b.N; i++ {
				if r := x.e.Docker(ctx, DockerCLI20, "", nil, "run", "-d", "--name", "to200", "-p", port+":5000",
					"busybox", "sh", "-c", "echo hi > /i.html; exec httpd -f -p 5000 -h /"); r.Code != 0 {
					b.Fatalf("%s: run: %s", x.name, r.Stderr)
				}
				for {
					resp, err := c.Get("http://127.0.0.1:" + port + "/i.html")
					if err == nil {
						resp.Body.Close()
						if resp.StatusCode == 200 {
							break
						}
					}
					if ctx.Err() != nil {
						b.Fatalf("%s: no 200", x.name)
					}
					time.Sleep(2 * time.Millisecond)
				}
				b.StopTimer()
				x.e.Docker(ctx, DockerCLI20, "", nil, "rm", "-f", "to200")
				b.StartTimer()
			}
		})
	}
}
