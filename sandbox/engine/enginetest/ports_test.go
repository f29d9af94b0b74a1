package enginetest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// freePort returns a TCP port nothing listens on now (the kernel's pick),
// so the test never collides with another package's listener.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// getUntil polls url until it answers 200 and returns the body.
func getUntil(t *testing.T, url string) string {
	t.Helper()
	return getWith(t, &http.Client{Timeout: 5 * time.Second}, url)
}

// getWith polls url with c until it answers 200 (at most 30 s) and returns
// the body.
func getWith(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := c.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return string(b)
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// httpdArgs serve "ok <name>" on port 5000 from a busybox container.
func httpdArgs(name string) []string {
	return []string{"busybox", "sh", "-c", "mkdir /w && echo ok " + name + " > /w/index.html && exec httpd -f -p 5000 -h /w"}
}

// TestPublishedPortsOnHost: standalone `labd engine` publishes on the host
// as dockerd does (`curl localhost:PORT` answers), `docker ps` shows the
// bindings as dockerd 20.10 does, a second binding of the port fails with
// dockerd's message, and containers reach each other by IP on the bridge.
//
// This is labd on the host's loopback; the comparison with a dockerd that
// publishes (inside a network namespace of the test's own, so the host's
// network is never touched) is TestPublishedPortsDifferential.
func TestPublishedPortsOnHost(t *testing.T) {
	e := pair.Labd
	port := freePort(t)
	p := strconv.Itoa(port)
	rmf(t, "pub1", "pub2", "pub3")

	if r := run(t, e, append([]string{"run", "-d", "--name", "pub1", "-p", p + ":5000"}, httpdArgs("pub1")...)...); r.Code != 0 {
		t.Fatalf("run -p: %s", r.Stderr)
	}
	if body := getUntil(t, "http://127.0.0.1:"+p+"/"); body != "ok pub1\n" {
		t.Errorf("GET 127.0.0.1:%s = %q", p, body)
	}

	ports := strings.TrimSpace(run(t, e, "ps", "--filter", "name=pub1", "--format", "{{.Ports}}").Stdout)
	want4 := "0.0.0.0:" + p + "->5000/tcp"
	if ports != want4 && ports != want4+", :::"+p+"->5000/tcp" {
		t.Errorf("docker ps Ports = %q, want %q (and the :: twin where IPv6 works)", ports, want4)
	}
	insp := strings.TrimSpace(run(t, e, "inspect", "--format", `{{json .NetworkSettings.Ports}}`, "pub1").Stdout)
	if !strings.HasPrefix(insp, `{"5000/tcp":[{"HostIp":"0.0.0.0","HostPort":"`+p+`"}`) {
		t.Errorf("inspect Ports = %s", insp)
	}

	// The same host port again: dockerd's error, exit 125, container left
	// created.
	r := run(t, e, append([]string{"run", "-d", "--name", "pub2", "-p", p + ":5000"}, httpdArgs("pub2")...)...)
	wantErr := "Bind for 0.0.0.0:" + p + " failed: port is already allocated"
	if r.Code != 125 || !strings.Contains(r.Stderr, "docker: Error response from daemon: driver failed programming external connectivity on endpoint pub2 (") ||
		!strings.Contains(r.Stderr, "): "+wantErr) {
		t.Errorf("second -p %s: exit %d, stderr %q; want 125 and %q", p, r.Code, r.Stderr, wantErr)
	}
	if st := strings.TrimSpace(run(t, e, "ps", "-a", "--filter", "name=pub2", "--format", "{{.Status}}").Stdout); st != "Created" {
		t.Errorf("pub2 status after the failed start = %q, want Created (as dockerd)", st)
	}

	// Container to container by IP on the bridge.
	ip := strings.TrimSpace(run(t, e, "inspect", "--format", "{{.NetworkSettings.IPAddress}}", "pub1").Stdout)
	if net.ParseIP(ip) == nil {
		t.Fatalf("pub1 IP = %q", ip)
	}
	r = run(t, e, "run", "--name", "pub3", "busybox", "wget", "-qO-", "http://"+ip+":5000/")
	if r.Code != 0 || r.Stdout != "ok pub1\n" {
		t.Errorf("wget pub1 by IP from another container: exit %d, %q %q", r.Code, r.Stdout, r.Stderr)
	}

	// Stopping the container frees the port.
	run(t, e, "rm", "-f", "pub1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "tcp", "127.0.0.1:"+p)
		if err != nil {
			break
		}
		c.Close()
		if ctx.Err() != nil {
			t.Fatalf("port %s still accepts after rm -f", p)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r := run(t, e, "start", "pub2"); r.Code != 0 {
		t.Errorf("start pub2 once the port is free: %s", r.Stderr)
	} else if body := getUntil(t, "http://127.0.0.1:"+p+"/"); body != "ok pub2\n" {
		t.Errorf("GET after restart on the freed port = %q", body)
	}
}
