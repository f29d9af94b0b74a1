package engine

import (
	"strings"
	"testing"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/labd/labd/sandbox/engine/api"
)

func TestValidateHostConfig(t *testing.T) {
	pid := int64(5)
	oomOff := true
	tests := []struct {
		name   string
		hc     container.HostConfig
		option string // "" = allowed
		status int
	}{
		{"defaults", container.HostConfig{}, "", 0},
		{"limits", container.HostConfig{Resources: container.Resources{Memory: 16 << 20, NanoCPUs: 5e8, PidsLimit: &pid}}, "", 0},
		{"privileged", container.HostConfig{Privileged: true}, "--privileged", 403},
		{"cap-add", container.HostConfig{CapAdd: []string{"NET_ADMIN"}}, "--cap-add", 403},
		{"cap-drop is fine", container.HostConfig{CapDrop: []string{"ALL"}}, "", 0},
		{"pid host", container.HostConfig{PidMode: "host"}, "--pid=host", 403},
		{"net host", container.HostConfig{NetworkMode: "host"}, "--network=host", 403},
		{"ipc host", container.HostConfig{IpcMode: "host"}, "--ipc=host", 403},
		{"uts host", container.HostConfig{UTSMode: "host"}, "--uts=host", 403},
		{"userns host", container.HostConfig{UsernsMode: "host"}, "--userns=host", 403},
		{"cgroupns host", container.HostConfig{CgroupnsMode: "host"}, "--cgroupns=host", 403},
		{"devices", container.HostConfig{Resources: container.Resources{Devices: []container.DeviceMapping{{PathOnHost: "/dev/sda"}}}}, "--device", 403},
		{"seccomp", container.HostConfig{SecurityOpt: []string{"seccomp=unconfined"}}, "--security-opt", 403},
		{"apparmor colon", container.HostConfig{SecurityOpt: []string{"apparmor:unconfined"}}, "--security-opt", 403},
		{"label disable", container.HostConfig{SecurityOpt: []string{"label=disable"}}, "--security-opt", 403},
		{"no-new-privileges is fine", container.HostConfig{SecurityOpt: []string{"no-new-privileges"}}, "", 0},
		{"sysctls", container.HostConfig{Sysctls: map[string]string{"net.ipv4.ip_forward": "1"}}, "--sysctl", 403},
		{"runtime", container.HostConfig{Runtime: "kata"}, "--runtime", 403},
		{"runc runtime", container.HostConfig{Runtime: "runc"}, "", 0},
		{"restart always", container.HostConfig{RestartPolicy: container.RestartPolicy{Name: "always"}}, "--restart", 403},
		{"restart no", container.HostConfig{RestartPolicy: container.RestartPolicy{Name: "no"}}, "", 0},
		{"two at once", container.HostConfig{Privileged: true, Sysctls: map[string]string{"a": "b"}}, "--privileged, --sysctl", 403},
		{"tiny memory", container.HostConfig{Resources: container.Resources{Memory: 1 << 20}}, "Minimum memory limit", 400},
		{"below labd's minimum", container.HostConfig{Resources: container.Resources{Memory: 8 << 20}}, "Minimum memory limit allowed is 16MB", 400},
		{"systempaths unconfined", container.HostConfig{MaskedPaths: []string{}, ReadonlyPaths: []string{}}, "systempaths=unconfined", 403},
		{"oom-kill-disable", container.HostConfig{Resources: container.Resources{OomKillDisable: &oomOff}}, "--oom-kill-disable", 403},
		{"oom-kill-disable false is fine", container.HostConfig{Resources: container.Resources{OomKillDisable: new(bool)}}, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := validateHostConfig(&tt.hc)
			if tt.option == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("allowed, want %s refused", tt.option)
			}
			if !strings.Contains(err.Error(), tt.option) {
				t.Errorf("message %q does not name %s", err, tt.option)
			}
			if got := api.StatusCode(err); got != tt.status {
				t.Errorf("status %d, want %d", got, tt.status)
			}
		})
	}
}

func TestValidateBuildOptions(t *testing.T) {
	for _, tt := range []struct {
		name   string
		o      build.ImageBuildOptions
		option string // "" = allowed
	}{
		{"defaults", build.ImageBuildOptions{}, ""},
		{"network none", build.ImageBuildOptions{NetworkMode: "none"}, ""},
		{"network default", build.ImageBuildOptions{NetworkMode: "default"}, ""},
		{"network host", build.ImageBuildOptions{NetworkMode: "host"}, "--network=host"},
		{"network of a container", build.ImageBuildOptions{NetworkMode: "container:victim"}, "--network=container:victim"},
		{"cgroup parent", build.ImageBuildOptions{CgroupParent: "/"}, "--cgroup-parent"},
		{"isolation host", build.ImageBuildOptions{Isolation: "host"}, "--isolation=host"},
		{"isolation default", build.ImageBuildOptions{Isolation: "default"}, ""},
		{"security opt", build.ImageBuildOptions{SecurityOpt: []string{"seccomp=unconfined"}}, "--security-opt"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := validateBuildOptions(&tt.o)
			switch {
			case tt.option == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.option != "" && err == nil:
				t.Fatalf("allowed, want %s refused", tt.option)
			case tt.option != "" && (!strings.Contains(err.Error(), tt.option) || api.StatusCode(err) != 403):
				t.Errorf("refusal %q (status %d), want 403 naming %s", err, api.StatusCode(err), tt.option)
			}
		})
	}
}

func TestParsePS(t *testing.T) {
	out := []byte("UID          PID    PPID  C STIME TTY          TIME CMD\n" +
		"root           1       0  0 06:00 ?        00:00:01 /sbin/init splash\n" +
		"root        4242    4000  0 06:01 ?        00:00:00 sleep 300\n")
	top, err := parsePS(out, []int{4242})
	if err != nil {
		t.Fatal(err)
	}
	if len(top.Processes) != 1 || top.Processes[0][1] != "4242" || top.Processes[0][7] != "sleep 300" {
		t.Errorf("processes %q", top.Processes)
	}
	if len(top.Titles) != 8 || top.Titles[7] != "CMD" {
		t.Errorf("titles %q", top.Titles)
	}
}
