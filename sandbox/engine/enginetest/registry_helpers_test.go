package enginetest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// DockerRegistry is Debian's docker-registry (CNCF Distribution 2.8) on
// 127.0.0.1, behind a byte-counting proxy on one of the registry slots
// the pair's labd allows (registryslots.go).
type DockerRegistry struct {
	Addr    string // the proxy: what clients use
	Up      atomic.Int64
	Down    atomic.Int64
	cmd     *exec.Cmd
	slot    *RegistrySlot
	backend string
}

const dockerRegistryBin = "/usr/bin/docker-registry"

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// StartDockerRegistry runs docker-registry with a fresh root; with users,
// htpasswd (bcrypt) authentication for them.
func StartDockerRegistry(t testing.TB, users map[string]string) *DockerRegistry {
	t.Helper()
	if _, err := os.Stat(dockerRegistryBin); err != nil {
		t.Fatal("docker-registry is missing: apt-get install docker-registry (deploy/deps.sh test)")
	}
	dir := t.TempDir()
	backend := freeAddr(t)
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n", filepath.Join(dir, "root"), backend)
	if len(users) > 0 {
		var lines []byte
		for u, p := range users {
			h, err := bcrypt.GenerateFromPassword([]byte(p), bcrypt.MinCost)
			if err != nil {
				t.Fatal(err)
			}
			lines = append(lines, []byte(u+":"+string(h)+"\n")...)
		}
		if err := os.WriteFile(filepath.Join(dir, "htpasswd"), lines, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg += fmt.Sprintf("auth:\n  htpasswd:\n    realm: basic-realm\n    path: %s\n", filepath.Join(dir, "htpasswd"))
	}
	if err := os.WriteFile(filepath.Join(dir, "config.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	r := &DockerRegistry{backend: backend}
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		t.Fatal(err)
	}
	r.cmd = exec.Command(dockerRegistryBin, "serve", filepath.Join(dir, "config.yml"))
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.slot, err = TakeRegistrySlot()
	if err != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		t.Fatal(err)
	}
	r.Addr = r.slot.Addr()
	r.slot.Serve(r.relay)
	t.Cleanup(func() {
		// The backend goes first: relayed connections, kept alive by
		// clients, end with it.
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		logf.Close()
		r.slot.Release()
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + r.Addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "registry.log"))
			t.Fatalf("docker-registry did not come up: %v\n%s", err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.Up.Store(0)
	r.Down.Store(0)
	return r
}

// relay connects a client to the registry, counting bytes each way.
func (r *DockerRegistry) relay(c net.Conn) {
	defer c.Close()
	b, err := net.Dial("tcp", r.backend)
	if err != nil {
		return
	}
	defer b.Close()
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(b, countingReader{c, &r.Up})
		b.(*net.TCPConn).CloseWrite()
		close(done)
	}()
	_, _ = io.Copy(c, countingReader{b, &r.Down})
	c.(*net.TCPConn).CloseWrite()
	<-done
}

// Manifest fetches a schema2 manifest's bytes.
func (r *DockerRegistry) Manifest(ctx context.Context, repo, ref string) ([]byte, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.Addr+"/v2/"+repo+"/manifests/"+ref, nil)
	req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("GET manifest %s:%s: %s", repo, ref, resp.Status)
	}
	return io.ReadAll(resp.Body)
}

type netConn = net.Conn

func dialUnix(ctx context.Context, sock string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", sock)
}

// countingReader counts as it reads, so kept-alive connections count too.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}
