package distribution

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/registry"
)

func TestNormalizeRegistry(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{in: "127.0.0.1:5000", want: "127.0.0.1:5000"},
		{in: "127.0.0.1:05000", want: "127.0.0.1:5000"},
		{in: "127.0.0.1.:5000", want: "127.0.0.1:5000"},
		{in: "[::ffff:127.0.0.1]:5000", want: "127.0.0.1:5000"},
		{in: "[::FFFF:7f00:1]:5000", want: "127.0.0.1:5000"},
		{in: "[0:0:0:0:0:0:0:1]:5000", want: "[::1]:5000"},
		{in: "::1", want: "[::1]"},
		{in: "LOCALHOST:5000", want: "localhost:5000"},
		{in: "localhost.:5000", want: "localhost:5000"},
		{in: "Registry.Example.EDU", want: "registry.example.edu"},
		{in: "registry-1.docker.io", want: "registry-1.docker.io"},
		{in: "", err: "empty"},
		{in: "https://reg.example", err: "want host[:port]"},
		{in: "reg.example/path", err: "want host[:port]"},
		{in: "user@reg.example", err: "want host[:port]"},
		{in: "127.1:5000", err: "not a canonical IP address"},
		{in: "2130706433:5000", err: "not a canonical IP address"},
		{in: "0x7f000001:5000", err: "not a canonical IP address"},
		{in: "0x7f.0.0.1:5000", err: "not a canonical IP address"},
		{in: "0177.0.0.1:5000", err: "not a canonical IP address"},
		{in: "127.0.0.1:0", err: "bad port"},
		{in: "127.0.0.1:65536", err: "bad port"},
		{in: "127.0.0.1:+80", err: "bad port"},
		{in: "127.0.0.1:", err: "empty port"},
		{in: "[::1", err: "missing ']'"},
		{in: "[fe80::1%eth0]:5000", err: "zone"},
		{in: "[reg.example]:5000", err: "not an IPv6 address"},
		{in: "reg..example", err: "bad host name"},
		{in: "-reg.example", err: "bad host name"},
		{in: "rég.example", err: "bad host name"},
	}
	for _, tc := range tests {
		got, err := NormalizeRegistry(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("NormalizeRegistry(%q) = %q, %v; want an error containing %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("NormalizeRegistry(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// TestAllowlistRegistry: a registry is allowed only when it equals a
// configured one after normalisation; the address to contact is the
// normalised one.
func TestAllowlistRegistry(t *testing.T) {
	a, err := newAllowlist(Options{HubStandIn: "127.0.0.1:5000", AllowedRegistries: []string{"reg.lan:5001", "Mirror.Example"}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		host, want string // want "" = refused
	}{
		{"127.0.0.1:5000", "127.0.0.1:5000"},
		{"127.0.0.1:05000", "127.0.0.1:5000"},
		{"[::ffff:127.0.0.1]:5000", "127.0.0.1:5000"},
		{"127.0.0.1.:5000", "127.0.0.1:5000"},
		{"REG.LAN:5001", "reg.lan:5001"},
		{"reg.lan.:5001", "reg.lan:5001"},
		{"mirror.example", "mirror.example"},
		{"localhost:5000", ""},
		{"[::1]:5000", ""},
		{"0.0.0.0:5000", ""},
		{"127.0.0.1:5001", ""},
		{"127.0.0.1", ""},
		{"127.0.0.2:5000", ""},
		{"127.1:5000", ""},
		{"2130706433:5000", ""},
		{"0x7f000001:5000", ""},
		{"0177.0.0.1:5000", ""},
		{"reg.lan", ""},
		{"reg.lan:5002", ""},
		{"mirror.example:443", ""},
		{"registry-1.docker.io", ""},
		{"auth.docker.io", ""},
		{"169.254.169.254", ""},
		{"", ""},
	}
	for _, tc := range tests {
		got, err := a.registry(tc.host)
		if tc.want == "" {
			var na *NotAllowedError
			if err == nil || !errors.As(err, &na) {
				t.Errorf("registry(%q) = %q, %v; want refused", tc.host, got, err)
				continue
			}
			want := "registry " + tc.host + " is not allowed: this engine reaches only 127.0.0.1:5000 (the classroom registry, for names without a registry such as alice/app), reg.lan:5001 and mirror.example"
			if err.Error() != want {
				t.Errorf("registry(%q) refusal:\n%s\nwant\n%s", tc.host, err, want)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("registry(%q) = %q, %v; want %q", tc.host, got, err, tc.want)
		}
	}
}

// TestAllowlistConfigurations: what each configuration allows, as names
// and as realms or redirect targets, and how refusals describe it.
func TestAllowlistConfigurations(t *testing.T) {
	tests := []struct {
		name      string
		opts      Options
		names     []string // allowed as registry names
		notNames  []string
		urls      []string // allowed as realms, redirects, upload locations
		notURLs   []string
		described string
		err       string
	}{
		{
			name:      "classroom registry only",
			opts:      Options{HubStandIn: "127.0.0.1:5000"},
			names:     []string{"127.0.0.1:5000"},
			notNames:  []string{"registry-1.docker.io", "localhost:5000"},
			urls:      []string{"http://127.0.0.1:5000/auth/token", "https://127.0.0.1:5000/v2/", "HTTP://127.0.0.1:5000/x"},
			notURLs:   []string{"http://localhost:5000/auth/token", "http://127.0.0.1:5001/x", "http://127.0.0.1/x", "ftp://127.0.0.1:5000/x", "http://u:p@127.0.0.1:5000/x", "https://auth.docker.io/token", "http://[::1]:5000/x", "http://2130706433:5000/x"},
			described: "this engine reaches only 127.0.0.1:5000 (the classroom registry, for names without a registry such as alice/app)",
		},
		{
			name:      "Docker Hub upstream",
			opts:      Options{HubStandIn: "127.0.0.1:5000", HubUpstream: "registry-1.docker.io"},
			names:     []string{"127.0.0.1:5000", "registry-1.docker.io", "Registry-1.Docker.IO."},
			notNames:  []string{"auth.docker.io", "production.cloudflare.docker.com", "registry-1.docker.io:443"},
			urls:      []string{"https://auth.docker.io/token", "https://auth.docker.io:443/token", "https://production.cloudflare.docker.com/registry-v2/x", "https://registry-1.docker.io:443/v2/"},
			notURLs:   []string{"https://auth.docker.io:8443/token", "https://evil.docker.io.example/x", "https://docker.io.evil/x"},
			described: "this engine reaches only 127.0.0.1:5000 (the classroom registry) and registry-1.docker.io (for names without a registry such as busybox)",
		},
		{
			name:      "mirror upstream: no Docker Hub services",
			opts:      Options{HubUpstream: "mirror.example:5000"},
			names:     []string{"mirror.example:5000"},
			notNames:  []string{"registry-1.docker.io", "mirror.example"},
			urls:      []string{"https://mirror.example:5000/token"},
			notURLs:   []string{"https://auth.docker.io/token", "https://mirror.example/token"},
			described: "this engine reaches only mirror.example:5000 (for names without a registry such as busybox)",
		},
		{
			name:      "nothing configured: Docker Hub",
			opts:      Options{},
			names:     []string{"registry-1.docker.io"},
			notNames:  []string{"127.0.0.1:5000"},
			urls:      []string{"https://auth.docker.io/token"},
			described: "this engine reaches only registry-1.docker.io (for names without a registry such as busybox)",
		},
		{
			name:      "an allowed registry without a port stands for the scheme's",
			opts:      Options{HubStandIn: "127.0.0.1:5000", AllowedRegistries: []string{"blobs.example", "tokens.example:443"}},
			names:     []string{"blobs.example", "tokens.example:443"},
			notNames:  []string{"blobs.example:443", "tokens.example"},
			urls:      []string{"https://blobs.example/x", "http://blobs.example/x", "https://blobs.example:443/x", "https://tokens.example/t", "http://tokens.example:443/t"},
			notURLs:   []string{"https://blobs.example:8443/x", "http://tokens.example/t"},
			described: "this engine reaches only 127.0.0.1:5000 (the classroom registry, for names without a registry such as alice/app), blobs.example and tokens.example:443",
		},
		{name: "bad allowed registry", opts: Options{AllowedRegistries: []string{"http://x"}}, err: `allowed registry (--allowed-registry, LABD_ALLOWED_REGISTRIES): "http://x" is not a registry address`},
		{name: "bad upstream", opts: Options{HubUpstream: "127.1"}, err: "hub upstream: "},
		{name: "bad classroom registry", opts: Options{HubStandIn: "a b"}, err: "classroom registry: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := newAllowlist(tc.opts)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("newAllowlist = %v; want an error containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range tc.names {
				if _, err := a.registry(n); err != nil {
					t.Errorf("registry(%q) refused: %v", n, err)
				}
			}
			for _, n := range tc.notNames {
				if _, err := a.registry(n); err == nil {
					t.Errorf("registry(%q) allowed", n)
				}
			}
			for _, s := range tc.urls {
				u, _ := url.Parse(s)
				if !a.allowsURL(u) {
					t.Errorf("allowsURL(%s) = false", s)
				}
			}
			for _, s := range tc.notURLs {
				u, _ := url.Parse(s)
				if a.allowsURL(u) {
					t.Errorf("allowsURL(%s) = true", s)
				}
			}
			if a.described != tc.described {
				t.Errorf("described:\n%s\nwant\n%s", a.described, tc.described)
			}
		})
	}
}

// TestRefusedBeforeConnecting: pull, push and login of a registry that is
// not allowed fail before any connection (the trap counts none), with a
// 403 and the same words whether the port is open or closed, for every
// spelling of a loopback address.
func TestRefusedBeforeConnecting(t *testing.T) {
	c, store := testClient(t, Options{HubStandIn: "127.0.0.1:5000"})
	v := testView(t, store, "learner")
	tr := newTrap(t)
	closed := closedAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ops := []struct {
		name string
		do   func(host string) (error, int)
	}{
		{"pull", func(host string) (error, int) {
			_, m, err := pull(t, c, v, host+"/x/y:1")
			return err, len(m.lines)
		}},
		{"push", func(host string) (error, int) {
			m := &messages{}
			n := mustNamed(t, host+"/x/y")
			err := c.Push(ctx, PushRequest{View: v, Name: n, Tag: "1", Out: m.out})
			return err, len(m.lines)
		}},
		{"login", func(host string) (error, int) {
			_, _, err := c.Login(ctx, registry.AuthConfig{Username: "u", Password: "p", ServerAddress: host})
			return err, 0
		}},
		{"login by URL", func(host string) (error, int) {
			_, _, err := c.Login(ctx, registry.AuthConfig{Username: "u", Password: "p", ServerAddress: "http://" + host + "/v2/"})
			return err, 0
		}},
	}
	trapPort, closedPort := portOf(tr.addr()), portOf(closed)
	spellings := []string{"127.0.0.1:%s", "localhost:%s", "127.0.0.1:0%s", "2130706433:%s", "0x7f000001:%s", "127.1:%s", "127.000.000.001:%s"}
	for _, op := range ops {
		for _, sp := range spellings {
			var answers []string
			for _, port := range []string{trapPort, closedPort} {
				host := strings.ReplaceAll(sp, "%s", port)
				err, msgs := op.do(host)
				var na *NotAllowedError
				if err == nil || !errors.As(err, &na) {
					t.Errorf("%s %s = %v; want refused as not allowed", op.name, host, err)
					continue
				}
				var fb interface{ Forbidden() }
				if !errors.As(err, &fb) {
					t.Errorf("%s %s: the refusal is not a 403", op.name, host)
				}
				if msgs != 0 {
					t.Errorf("%s %s: %d messages before the refusal", op.name, host, msgs)
				}
				if !strings.Contains(err.Error(), "is not allowed: this engine reaches only 127.0.0.1:5000 (the classroom registry") {
					t.Errorf("%s %s: %v", op.name, host, err)
				}
				answers = append(answers, strings.ReplaceAll(err.Error(), port, "PORT"))
			}
			if len(answers) == 2 && answers[0] != answers[1] {
				t.Errorf("%s %s: open and closed ports answer differently:\n%s\n%s", op.name, sp, answers[0], answers[1])
			}
		}
	}
	if n := tr.conns.Load(); n != 0 {
		t.Errorf("the engine connected %d times to a registry that is not allowed", n)
	}
}

// TestAllowedSpellingReachesTheRegistry: an address that normalises to an
// allowed registry is contacted at the normalised address.
func TestAllowedSpellingReachesTheRegistry(t *testing.T) {
	reg := newFakeRegistry(t)
	c, _ := testClient(t, Options{HubStandIn: reg.host})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, server := range []string{reg.host, "http://[::ffff:127.0.0.1]:" + portOf(reg.host) + "/", "127.0.0.1:0" + portOf(reg.host), "", "https://index.docker.io/v1/"} {
		status, _, err := c.Login(ctx, registry.AuthConfig{Username: "u", Password: "p", ServerAddress: server})
		if err != nil || status != "Login Succeeded" {
			t.Errorf("login %q = %q, %v", server, status, err)
		}
	}
	reg.mu.Lock()
	defer reg.mu.Unlock()
	for _, h := range reg.hosts {
		if h != reg.host {
			t.Errorf("the registry was asked for host %q; want %q", h, reg.host)
		}
	}
}

// TestTokenRealm: a realm on the registry's own address (the classroom
// registry's) works; one on another host is refused without contacting it.
func TestTokenRealm(t *testing.T) {
	tr := newTrap(t)
	tests := []struct {
		name    string
		realm   string // "SELF": the registry's own /token; "OTHER": a second registry's, allowed
		wantErr string
	}{
		{"on the registry itself", "SELF", ""},
		{"on an allowed host", "OTHER", ""},
		{"on another host", "http://" + tr.addr() + "/token", "token realm http://" + tr.addr() + "/token of registry "},
		{"on localhost for a 127.0.0.1 registry", "http://localhost:" + portOf(tr.addr()) + "/token", "is not allowed"},
		{"https on another host", "https://" + tr.addr() + "/token", "is not allowed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := newFakeRegistry(t)
			reg.realm = tc.realm
			var allowed []string
			if tc.realm == "OTHER" {
				other := newFakeRegistry(t)
				reg.realm = "http://" + other.host + "/token"
				allowed = []string{other.host}
			}
			img := makeImage(t, [][]byte{layerTar(t, "f", "1")}, nil, nil)
			reg.add("x/y:1", img)
			c, store := testClient(t, Options{HubStandIn: reg.host, AllowedRegistries: allowed})
			v := testView(t, store, "learner")
			_, _, err := pull(t, c, v, reg.host+"/x/y:1")
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("pull: %v", err)
				}
				return
			}
			var na *NotAllowedError
			if err == nil || !errors.As(err, &na) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("pull = %v; want a refusal containing %q", err, tc.wantErr)
			}
		})
	}
	if n := tr.conns.Load(); n != 0 {
		t.Errorf("the engine contacted a token realm that is not allowed (%d connections)", n)
	}
}

// TestBlobRedirect: a blob redirect to a host that is not allowed is
// refused before it is followed; to an allowed one it works.
func TestBlobRedirect(t *testing.T) {
	for _, allow := range []bool{false, true} {
		reg := newFakeRegistry(t)
		img := makeImage(t, [][]byte{layerTar(t, "f", "redirected")}, nil, nil)
		reg.add("x/y:1", img)
		bs := newBlobServer(t, reg.blobs)
		reg.blobRedirect = bs.srv.URL
		opts := Options{HubStandIn: reg.host}
		if allow {
			opts.AllowedRegistries = []string{bs.srv.Listener.Addr().String()}
		}
		c, store := testClient(t, opts)
		v := testView(t, store, "learner")
		_, _, err := pull(t, c, v, reg.host+"/x/y:1")
		if allow {
			if err != nil || bs.hits.Load() == 0 {
				t.Errorf("pull through an allowed redirect = %v, %d blob requests", err, bs.hits.Load())
			}
			continue
		}
		var na *NotAllowedError
		if err == nil || !errors.As(err, &na) || !strings.Contains(err.Error(), "redirect from "+reg.host+" to "+bs.srv.URL+"/") {
			t.Errorf("pull through a redirect to another host = %v; want refused", err)
		}
		if n := bs.hits.Load(); n != 0 {
			t.Errorf("the redirect was followed: %d requests", n)
		}
		if len(v.List(true)) != 0 {
			t.Error("the refused pull left an image")
		}
	}
}

// TestUploadLocation: an upload Location on a host that is not allowed is
// never contacted.
func TestUploadLocation(t *testing.T) {
	tr := newTrap(t)
	reg := newFakeRegistry(t)
	reg.uploadLocation = "http://" + tr.addr() + "/upload?_state=x"
	c, store := testClient(t, Options{HubStandIn: reg.host})
	v := testView(t, store, "learner")
	id := putImage(t, v, "push", layerTar(t, "f", "push"))
	if err := v.Tag(id, reg.host+"/x/y:1"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m := &messages{}
	err := c.Push(ctx, PushRequest{View: v, Name: mustNamed(t, reg.host+"/x/y"), Tag: "1", Out: m.out})
	var na *NotAllowedError
	if err == nil || !errors.As(err, &na) || !strings.Contains(err.Error(), "host "+tr.addr()+" is not allowed") {
		t.Errorf("push with an upload elsewhere = %v; want refused", err)
	}
	if n := tr.conns.Load(); n != 0 {
		t.Errorf("the engine followed the upload location (%d connections)", n)
	}
}

func mustNamed(t *testing.T, s string) reference.Named {
	t.Helper()
	n, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
