package network

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labd/labd/internal/testenv"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

func requireRoot(t testing.TB) {
	t.Helper()
	testenv.Root(t, "network namespaces")
}

// outsideNetNS makes a network namespace standing in for a sandbox's, with
// lo up, removed at the end of the test.
func outsideNetNS(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "outside")
	if err := newNetNSAt(path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := removeNetNSAt(path); err != nil {
			t.Error(err)
		}
	})
	h, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	lo, err := nl.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := nl.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	return path
}

// newTestNetwork makes a sandbox-style network: the bridge in a test-made
// netns, published ports listening there too.
func newTestNetwork(t testing.TB, subnet string) (*Network, string) {
	t.Helper()
	out := outsideNetNS(t)
	n, err := New(Options{RunDir: filepath.Join(t.TempDir(), "net"), Subnet: netip.MustParsePrefix(subnet), NetNS: out})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close(context.Background()) })
	return n, out
}

// serveIn runs an HTTP server on :port inside the namespace at path,
// answering body to every request; stopped at the end of the test.
func serveIn(t testing.TB, path string, port int, body string) {
	t.Helper()
	var ln net.Listener
	err := inPath(t, path, func() error {
		var err error
		ln, err = net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", port))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// echoIn runs a server that reads its connection to EOF, then writes back
// "got:" and what it read: it answers only if the proxy passes the
// client's half-close on.
func echoIn(t testing.TB, path string, port int) {
	t.Helper()
	var ln net.Listener
	err := inPath(t, path, func() error {
		var err error
		ln, err = net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", port))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b, _ := io.ReadAll(c)
				c.Write(append([]byte("got:"), b...))
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
}

// httpGet fetches http://addr/ through dial, retrying until a deadline
// (busybox httpd needs a moment to listen).
func httpGet(t testing.TB, dial func(ctx context.Context, network, addr string) (net.Conn, error), addr string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		body, err := get(ctx, dial, addr)
		cancel()
		if err == nil {
			return body
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("GET http://%s/: %v", addr, last)
	return ""
}

func get(ctx context.Context, dial func(ctx context.Context, network, addr string) (net.Conn, error), addr string) (string, error) {
	c, err := dial(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if d, ok := ctx.Deadline(); ok {
		c.SetDeadline(d)
	}
	fmt.Fprintf(c, "GET / HTTP/1.0\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	return string(b), nil
}

// busyboxHTTPD runs `busybox httpd -f -p 5000` in the namespace at path,
// serving a directory with index.html = body.
func busyboxHTTPD(t testing.TB, path string, port int, body string) {
	t.Helper()
	if _, err := os.Stat("/bin/busybox"); err != nil {
		testenv.Missing(t, "no /bin/busybox (Debian package busybox-static)")
	}
	www := t.TempDir()
	if err := os.WriteFile(filepath.Join(www, "index.html"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("nsenter", "--net="+path, "/bin/busybox", "httpd", "-f", "-p", fmt.Sprint(port), "-h", www)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
}

// dialer returns a dial function for the namespace at path.
func dialer(t testing.TB, path string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		h, err := netns.GetFromPath(path)
		if err != nil {
			return nil, err
		}
		defer h.Close()
		return dialIn(ctx, h, network, addr)
	}
}

// inPath runs fn in the namespace at path without keeping a handle open.
func inPath(t testing.TB, path string, fn func() error) error {
	t.Helper()
	h, err := netns.GetFromPath(path)
	if err != nil {
		return err
	}
	defer h.Close()
	return inNetNS(h, fn)
}

// counts is what must come back to its value after Detach/Close.
type counts struct {
	mounts  int // mount points under the run dir
	nsfs    int // netns bind mounts under this test's temporary directories
	links   int // links in the outside netns (veths, bridge)
	netfds  int // open netns handles of this process
	sockets int // listening and established TCP sockets, UDP sockets, in the outside netns (proxies)
}

func (c counts) String() string {
	return fmt.Sprintf("mounts=%d nsfs=%d links=%d netfds=%d sockets=%d", c.mounts, c.nsfs, c.links, c.netfds, c.sockets)
}

func count(t testing.TB, runDir, outside string) counts {
	t.Helper()
	var c counts
	mps, err := mountPointsUnder(runDir)
	if err != nil {
		t.Fatal(err)
	}
	c.mounts = len(mps)
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	// Only this test's netns mounts: packages test in parallel, and other
	// packages' namespaces come and go meanwhile. A test's temporary
	// directories all lie under one directory in os.TempDir().
	root := runDir
	for filepath.Dir(root) != filepath.Clean(os.TempDir()) && filepath.Dir(root) != root {
		root = filepath.Dir(root)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); strings.Contains(l, " - nsfs ") && len(f) > 4 && strings.HasPrefix(f[4], root+"/") {
			c.nsfs++
		}
	}
	if outside != "" {
		h, err := netns.GetFromPath(outside)
		if err != nil {
			t.Fatal(err)
		}
		nl, err := netlink.NewHandleAt(h)
		h.Close()
		if err != nil {
			t.Fatal(err)
		}
		links, err := retryDump(nl.LinkList)
		nl.Close()
		if err != nil {
			t.Fatal(err)
		}
		c.links = len(links)
		err = inPath(t, outside, func() error {
			for _, f := range []string{"tcp", "tcp6", "udp", "udp6"} {
				b, err := os.ReadFile("/proc/thread-self/net/" + f)
				if err != nil {
					return err
				}
				for _, l := range strings.Split(string(b), "\n")[1:] {
					fs := strings.Fields(l)
					if len(fs) > 3 && (strings.HasPrefix(f, "udp") || fs[3] == "0A" || fs[3] == "01") {
						c.sockets++
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		if l, _ := os.Readlink("/proc/self/fd/" + fd.Name()); strings.HasPrefix(l, "net:[") {
			c.netfds++
		}
	}
	return c
}

// waitCounts polls until count equals want (goroutines and fds of closed
// connections go away asynchronously).
func waitCounts(t testing.TB, runDir, outside string, want counts) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := count(t, runDir, outside)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("leak: got %v, want %v", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
