package network

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/go-connections/nat"
)

func TestHostsFile(t *testing.T) {
	want, err := os.ReadFile("testdata/hosts.golden")
	if err != nil {
		t.Fatal(err)
	}
	if got := HostsFile("3f4e5a6b7c8d", netip.MustParseAddr("172.17.0.2")); string(got) != string(want) {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	none := HostsFile("x", netip.Addr{})
	if string(none) != string(want[:len(hostsHeader)]) {
		t.Errorf("none mode: %q", none)
	}
	if string(ResolvConf()) != "\nnameserver 8.8.8.8\nnameserver 8.8.4.4" {
		t.Errorf("resolv.conf %q", ResolvConf())
	}
	if MacAddress(netip.MustParseAddr("172.17.0.2")).String() != "02:42:ac:11:00:02" {
		t.Error(MacAddress(netip.MustParseAddr("172.17.0.2")))
	}
}

func TestParseMode(t *testing.T) {
	tests := []struct {
		in      string
		want    Mode
		wantErr string
	}{
		{"", ModeBridge, ""},
		{"default", ModeBridge, ""},
		{"bridge", ModeBridge, ""},
		{"none", ModeNone, ""},
		{"host", "", ErrHostNetwork.Error()},
		{"mynet", "", "network mynet not found"},
		{"container:abc", "", `network mode "container:abc" is not supported`},
	}
	for _, tt := range tests {
		got, err := ParseMode(tt.in)
		if got != tt.want || (err == nil) != (tt.wantErr == "") || (err != nil && err.Error() != tt.wantErr) {
			t.Errorf("ParseMode(%q) = %q, %v; want %q, %q", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestBindingsFromDocker(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	tests := []struct {
		name       string
		exposed    nat.PortSet
		bindings   nat.PortMap
		publishAll bool
		want       []PortBinding
		wantErr    bool
	}{
		{"-p 5001:5000", nat.PortSet{"5000/tcp": {}}, nat.PortMap{"5000/tcp": {{HostPort: "5001"}}}, false,
			[]PortBinding{{Proto: "tcp", ContainerPort: 5000, HostPort: 5001}}, false},
		{"-p 127.0.0.1:5001:5000", nil, nat.PortMap{"5000/tcp": {{HostIP: "127.0.0.1", HostPort: "5001"}}}, false,
			[]PortBinding{{Proto: "tcp", ContainerPort: 5000, HostIP: lo, HostPort: 5001}}, false},
		{"-P", nat.PortSet{"80/tcp": {}, "53/udp": {}}, nil, true,
			[]PortBinding{{Proto: "udp", ContainerPort: 53}, {Proto: "tcp", ContainerPort: 80}}, false},
		{"exposed without -P", nat.PortSet{"80/tcp": {}}, nil, false, nil, false},
		{"range", nil, nat.PortMap{"80/tcp": {{HostPort: "8000-8010"}}}, false,
			[]PortBinding{{Proto: "tcp", ContainerPort: 80, HostPort: 8000, HostPortEnd: 8010}}, false},
		{"bad ip", nil, nat.PortMap{"80/tcp": {{HostIP: "nope", HostPort: "1"}}}, false, nil, true},
		{"bad port", nil, nat.PortMap{"80/tcp": {{HostPort: "x"}}}, false, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := BindingsFromDocker(tt.exposed, tt.bindings, tt.publishAll)
			if (err != nil) != tt.wantErr || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestPortMapAndAPIPorts(t *testing.T) {
	pubs := []PublishedPort{{"tcp", 5000, ipv4Any, 5001}, {"tcp", 5000, ipv6Any, 5001}}
	exposed := nat.PortSet{"5000/tcp": {}, "9000/tcp": {}}
	pm := PortMap(exposed, pubs)
	want := nat.PortMap{"5000/tcp": {{HostIP: "0.0.0.0", HostPort: "5001"}, {HostIP: "::", HostPort: "5001"}}, "9000/tcp": nil}
	if !reflect.DeepEqual(pm, want) {
		t.Errorf("PortMap %v", pm)
	}
	ps := APIPorts(exposed, pubs)
	wantPs := []container.Port{{IP: "0.0.0.0", PrivatePort: 5000, PublicPort: 5001, Type: "tcp"}, {IP: "::", PrivatePort: 5000, PublicPort: 5001, Type: "tcp"}, {PrivatePort: 9000, Type: "tcp"}}
	if !reflect.DeepEqual(ps, wantPs) {
		t.Errorf("APIPorts %v", ps)
	}
}

func TestPool(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pool")
	p, err := OpenPool(dir, netip.MustParsePrefix("10.9.0.0/22"), 24)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := p.Allocate("sb-a")
	b, _ := p.Allocate("sb-b")
	if a.String() != "10.9.0.0/24" || b.String() != "10.9.1.0/24" {
		t.Fatalf("got %s %s", a, b)
	}
	if again, _ := p.Allocate("sb-a"); again != a {
		t.Errorf("owner got %s then %s", a, again)
	}
	// Persisted: a restarted labd sees the allocations.
	p2, err := OpenPool(dir, netip.MustParsePrefix("10.9.0.0/22"), 24)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := p2.Allocations(); !reflect.DeepEqual(got, map[string]netip.Prefix{"sb-a": a, "sb-b": b}) {
		t.Errorf("allocations %v", got)
	}
	if err := p2.Release("sb-a"); err != nil {
		t.Fatal(err)
	}
	c, _ := p2.Allocate("sb-c")
	d, _ := p2.Allocate("sb-d")
	e, _ := p2.Allocate("sb-e")
	if c != a || d.String() != "10.9.2.0/24" || e.String() != "10.9.3.0/24" {
		t.Errorf("got %s %s %s", c, d, e)
	}
	if _, err := p2.Allocate("sb-f"); err == nil {
		t.Error("exhausted pool gave a subnet")
	}
}
