package distribution

import (
	"net/http"
	"testing"

	"github.com/distribution/reference"
)

func TestResolve(t *testing.T) {
	tests := []struct {
		opts             Options
		name             string
		host, path, full string
	}{
		{Options{HubStandIn: "127.0.0.1:5000"}, "alice/app", "127.0.0.1:5000", "alice/app", "docker.io/alice/app"},
		{Options{HubStandIn: "127.0.0.1:5000"}, "busybox", "127.0.0.1:5000", "library/busybox", "docker.io/library/busybox"},
		{Options{HubStandIn: "127.0.0.1:5000", HubUpstream: "mirror.example"}, "alice/app", "mirror.example", "alice/app", "docker.io/alice/app"},
		{Options{}, "alice/app", DefaultHub, "alice/app", "docker.io/alice/app"},
		{Options{HubStandIn: "127.0.0.1:5000"}, "reg.example:5001/x/y:v1", "reg.example:5001", "x/y", "reg.example:5001/x/y"},
	}
	for _, tt := range tests {
		n, err := reference.ParseNormalizedNamed(tt.name)
		if err != nil {
			t.Fatal(err)
		}
		r := tt.opts.Resolve(n)
		if r.Host != tt.host || r.Path != tt.path || r.Named.Name() != tt.full {
			t.Errorf("%s: got %s %s %s", tt.name, r.Host, r.Path, r.Named.Name())
		}
	}
}

func TestLoginHostAndInsecure(t *testing.T) {
	o := Options{HubStandIn: "127.0.0.1:5000", InsecureRegistries: []string{"10.0.0.0/8", "reg.lan:5000"}}
	for in, want := range map[string]string{
		"": "127.0.0.1:5000", "https://index.docker.io/v1/": "127.0.0.1:5000", "docker.io": "127.0.0.1:5000",
		"localhost:5001": "localhost:5001", "http://127.0.0.1:5002/": "127.0.0.1:5002",
	} {
		if got, err := o.LoginHost(in); err != nil || got != want {
			t.Errorf("LoginHost(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for host, want := range map[string]bool{
		"127.0.0.1:5000": true, "localhost:5000": true, "[::1]:5000": true, "10.1.2.3:5000": true,
		"reg.lan:5000": true, "reg.lan:5001": false, "registry-1.docker.io": false, "192.168.1.1:5000": false,
	} {
		if got := o.insecure(host); got != want {
			t.Errorf("insecure(%s) = %v", host, got)
		}
	}
}

func TestParseChallenges(t *testing.T) {
	h := http.Header{}
	h.Add("Www-Authenticate", `Bearer realm="http://127.0.0.1:5000/auth/token",service="labd",scope="repository:bob/app:pull,push",error="insufficient_scope"`)
	h.Add("Www-Authenticate", `Basic realm="basic-realm"`)
	cs := parseChallenges(h)
	if len(cs) != 2 || cs[0].scheme != "bearer" || cs[1].scheme != "basic" {
		t.Fatalf("%+v", cs)
	}
	p := cs[0].params
	if p["realm"] != "http://127.0.0.1:5000/auth/token" || p["service"] != "labd" || p["scope"] != "repository:bob/app:pull,push" || p["error"] != "insufficient_scope" {
		t.Errorf("%+v", p)
	}
	if cs[1].params["realm"] != "basic-realm" {
		t.Errorf("%+v", cs[1].params)
	}
}

func TestErrorText(t *testing.T) {
	errs := parseErrorBody(403, []byte(`{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}`))
	if len(errs) != 1 || errs[0].Error() != "denied: requested access to the resource is denied" {
		t.Errorf("%v", errs)
	}
	errs = parseErrorBody(401, []byte(`{"details":"incorrect username or password"}`))
	if len(errs) != 1 || errs[0].Error() != "unauthorized: incorrect username or password" {
		t.Errorf("%v", errs)
	}
	errs = parseErrorBody(404, []byte(`{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}`))
	if errs[0].Error() != "manifest unknown: manifest unknown" {
		t.Errorf("%v", errs)
	}
}
