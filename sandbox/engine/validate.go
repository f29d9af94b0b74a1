package engine

import (
	"errors"
	"fmt"
	"strings"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/labd/labd/sandbox/engine/api"
)

// restriction is one thing a client of labd's engine may not ask for.
type restriction struct {
	option string // as the CLI spells it, for the message
	bad    func(hc *container.HostConfig) bool
}

// restrictions are refused for every engine: they would give a container
// (hence a learner) the host or a way out of the sandbox.
var restrictions = []restriction{
	{"--privileged", func(hc *container.HostConfig) bool { return hc.Privileged }},
	{"--cap-add", func(hc *container.HostConfig) bool { return len(hc.CapAdd) > 0 }},
	{"--pid=host", func(hc *container.HostConfig) bool { return hc.PidMode.IsHost() }},
	{"--network=host", func(hc *container.HostConfig) bool { return hc.NetworkMode.IsHost() }},
	{"--ipc=host", func(hc *container.HostConfig) bool { return hc.IpcMode.IsHost() }},
	{"--uts=host", func(hc *container.HostConfig) bool { return hc.UTSMode.IsHost() }},
	{"--userns=host", func(hc *container.HostConfig) bool { return hc.UsernsMode.IsHost() }},
	{"--cgroupns=host", func(hc *container.HostConfig) bool { return hc.CgroupnsMode.IsHost() }},
	{"--device", func(hc *container.HostConfig) bool {
		return len(hc.Devices) > 0 || len(hc.DeviceCgroupRules) > 0 || len(hc.DeviceRequests) > 0
	}},
	{"--security-opt", func(hc *container.HostConfig) bool { return unconfined(hc.SecurityOpt) }},
	// The CLI turns systempaths=unconfined into empty masked and
	// read-only path lists: only labd's defaults are accepted.
	{"--security-opt systempaths=unconfined", func(hc *container.HostConfig) bool {
		return hc.MaskedPaths != nil || hc.ReadonlyPaths != nil
	}},
	{"--oom-kill-disable", func(hc *container.HostConfig) bool { return hc.OomKillDisable != nil && *hc.OomKillDisable }},
	{"--sysctl", func(hc *container.HostConfig) bool { return len(hc.Sysctls) > 0 }},
	{"--runtime", func(hc *container.HostConfig) bool { return hc.Runtime != "" && hc.Runtime != "runc" }},
	{"--cgroup-parent", func(hc *container.HostConfig) bool { return hc.CgroupParent != "" }},
	{"--volumes-from", func(hc *container.HostConfig) bool { return len(hc.VolumesFrom) > 0 }},
	{"--restart", func(hc *container.HostConfig) bool {
		return hc.RestartPolicy.Name != "" && hc.RestartPolicy.Name != "no"
	}},
}

func unconfined(opts []string) bool {
	for _, o := range opts {
		o = strings.ReplaceAll(o, ":", "=")
		switch o {
		case "seccomp=unconfined", "apparmor=unconfined", "label=disable", "systempaths=unconfined":
			return true
		}
	}
	return false
}

// validateHostConfig refuses what labd's engine never allows, naming the
// option (403: the request is understood and forbidden).
func validateHostConfig(hc *container.HostConfig) error {
	var errs []string
	for _, r := range restrictions {
		if r.bad(hc) {
			errs = append(errs, r.option)
		}
	}
	if len(errs) > 0 {
		return api.ForbiddenError(fmt.Errorf("%s: not allowed by labd's engine", strings.Join(errs, ", ")))
	}
	if hc.NanoCPUs > 0 && (hc.CPUPeriod > 0 || hc.CPUQuota > 0) {
		return api.InvalidParameterError(errors.New("Conflicting options: Nano CPUs and CPU Period cannot both be set"))
	}
	if hc.Memory > 0 && hc.Memory < minMemory {
		return api.InvalidParameterError(fmt.Errorf("Minimum memory limit allowed is %dMB", minMemory>>20))
	}
	return nil
}

// validateBuildOptions refuses the build options that would give RUN
// steps what validateHostConfig refuses containers.
func validateBuildOptions(o *build.ImageBuildOptions) error {
	var errs []string
	switch o.NetworkMode {
	case "", "default", "bridge", "none":
	case "host":
		errs = append(errs, "--network=host")
	default:
		errs = append(errs, "--network="+o.NetworkMode)
	}
	if o.CgroupParent != "" {
		errs = append(errs, "--cgroup-parent")
	}
	if o.Isolation != "" && !o.Isolation.IsDefault() {
		errs = append(errs, "--isolation="+string(o.Isolation))
	}
	if len(o.SecurityOpt) > 0 {
		errs = append(errs, "--security-opt")
	}
	if len(errs) > 0 {
		return api.ForbiddenError(fmt.Errorf("%s: not allowed by labd's engine", strings.Join(errs, ", ")))
	}
	return nil
}

// minMemory is the smallest -m accepted. dockerd's is 6MB; labd's is
// larger because a container's init is the labd binary itself (runc's
// re-exec pattern), which with Docker's seccomp profile touches more than
// 8 MiB charged to the container's cgroup before the command starts: below
// this, the container would die before it runs.
const minMemory = 16 << 20
