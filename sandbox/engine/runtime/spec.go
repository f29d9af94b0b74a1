package runtime

import (
	"fmt"
	"path"
	"path/filepath"
	"sort"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// DefaultCapabilities is Docker's default capability set (moby
// oci.DefaultCapabilities). As a /proc/<pid>/status mask it is
// 00000000a80425fb.
var DefaultCapabilities = []string{
	"CAP_CHOWN",
	"CAP_DAC_OVERRIDE",
	"CAP_FSETID",
	"CAP_FOWNER",
	"CAP_MKNOD",
	"CAP_NET_RAW",
	"CAP_SETGID",
	"CAP_SETUID",
	"CAP_SETFCAP",
	"CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT",
	"CAP_KILL",
	"CAP_AUDIT_WRITE",
}

// Docker's masked and read-only paths (moby oci/defaults.go, v28).
var (
	maskedPaths = []string{
		"/proc/asound",
		"/proc/acpi",
		"/proc/interrupts",
		"/proc/kcore",
		"/proc/keys",
		"/proc/latency_stats",
		"/proc/timer_list",
		"/proc/timer_stats",
		"/proc/sched_debug",
		"/proc/scsi",
		"/sys/firmware",
		"/sys/devices/virtual/powercap",
	}
	readonlyPaths = []string{
		"/proc/bus",
		"/proc/fs",
		"/proc/irq",
		"/proc/sys",
		"/proc/sysrq-trigger",
	}
)

// DefaultMaskedPaths and DefaultReadonlyPaths are copies of Docker's
// lists, for what shows them (docker inspect's HostConfig) to use the
// runtime's own.
func DefaultMaskedPaths() []string   { return append([]string(nil), maskedPaths...) }
func DefaultReadonlyPaths() []string { return append([]string(nil), readonlyPaths...) }

// defaultMounts are Docker's default container mounts (moby
// oci.DefaultLinuxSpec). /dev/shm gets Docker's default --shm-size.
func defaultMounts() []specs.Mount {
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"rw", "nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"rw", "nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"rw", "nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"ro", "nosuid", "noexec", "nodev"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"ro", "nosuid", "noexec", "nodev"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"rw", "nosuid", "noexec", "nodev"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"rw", "nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
	}
}

// Docker's device cgroup rules: deny everything, then allow the default
// devices (null, zero, full, random, urandom, tty, ptmx, pts) and keep
// /dev/net/tun out. libcontainer adds the rules for its default devices.
func deviceRules() []specs.LinuxDeviceCgroup {
	i := func(v int64) *int64 { return &v }
	return []specs.LinuxDeviceCgroup{
		{Allow: false, Access: "rwm"},
		{Allow: true, Type: "c", Major: i(1), Minor: i(5), Access: "rwm"},
		{Allow: true, Type: "c", Major: i(1), Minor: i(3), Access: "rwm"},
		{Allow: true, Type: "c", Major: i(1), Minor: i(9), Access: "rwm"},
		{Allow: true, Type: "c", Major: i(1), Minor: i(8), Access: "rwm"},
		{Allow: true, Type: "c", Major: i(5), Minor: i(0), Access: "rwm"},
		{Allow: true, Type: "c", Major: i(5), Minor: i(1), Access: "rwm"},
		{Allow: false, Type: "c", Major: i(10), Minor: i(229), Access: "rwm"},
	}
}

// ociSpec builds the runtime spec of a container whose overlay root is
// mounted at rootfs and whose bind-mounted /etc files are in bundle.
func (r *Runtime) ociSpec(s *Spec, rootfs, bundle string) (*specs.Spec, error) {
	caps := append([]string(nil), DefaultCapabilities...)
	spec := &specs.Spec{
		Version:  specs.Version,
		Root:     &specs.Root{Path: rootfs},
		Hostname: s.Hostname,
		Process: &specs.Process{
			Terminal:        s.Tty,
			Args:            s.Args,
			Env:             s.Env,
			Cwd:             s.Cwd,
			NoNewPrivileges: true,
			Capabilities: &specs.LinuxCapabilities{
				Bounding:  caps,
				Effective: caps,
				Permitted: caps,
			},
		},
		Mounts: defaultMounts(),
		Linux: &specs.Linux{
			CgroupsPath:   r.cgroupsPath(s),
			MaskedPaths:   maskedPaths,
			ReadonlyPaths: readonlyPaths,
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.MountNamespace},
				{Type: specs.NetworkNamespace, Path: s.NetNS},
				{Type: specs.UTSNamespace},
				{Type: specs.PIDNamespace},
				{Type: specs.IPCNamespace},
				{Type: specs.CgroupNamespace},
			},
			Resources: &specs.LinuxResources{Devices: deviceRules()},
			Seccomp:   r.seccomp,
		},
	}
	if s.OOMScoreAdj != nil {
		v := *s.OOMScoreAdj
		spec.Process.OOMScoreAdj = &v
	}
	if u := s.UserNS; u != nil {
		// The mappings tell libcontainer the host id of container root;
		// Start then makes it join u.Path instead of creating a namespace
		// (joinUserNS).
		spec.Linux.Namespaces = append(spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
		m := []specs.LinuxIDMapping{{ContainerID: 0, HostID: u.IDs.Base, Size: u.IDs.Size}}
		spec.Linux.UIDMappings, spec.Linux.GIDMappings = m, m
		// Docker lets every group of the container open ICMP sockets
		// ("0 2147483647"); values are read in the container's user
		// namespace, where only its own range exists.
		spec.Linux.Sysctl = map[string]string{"net.ipv4.ping_group_range": fmt.Sprintf("0 %d", u.IDs.Size-1)}
	}
	res := spec.Linux.Resources
	if s.Memory > 0 || s.MemorySwap != 0 {
		m := &specs.LinuxMemory{}
		if s.Memory > 0 {
			m.Limit = &s.Memory
		}
		if swap := memorySwap(s.Memory, s.MemorySwap); swap != 0 {
			m.Swap = &swap
		}
		res.Memory = m
	}
	if s.PidsLimit > 0 {
		res.Pids = &specs.LinuxPids{Limit: &s.PidsLimit}
	}
	if s.CPUShares > 0 || s.CPUQuota > 0 || s.CPUPeriod > 0 {
		c := &specs.LinuxCPU{}
		if s.CPUShares > 0 {
			v := uint64(s.CPUShares)
			c.Shares = &v
		}
		if s.CPUQuota > 0 {
			c.Quota = &s.CPUQuota
		}
		if s.CPUPeriod > 0 {
			v := uint64(s.CPUPeriod)
			c.Period = &v
		}
		res.CPU = c
	}

	// /etc/hosts, /etc/hostname and /etc/resolv.conf: bind mounts, as
	// dockerd does, so they never land in the upper directory.
	for _, f := range etcFiles {
		spec.Mounts = append(spec.Mounts, specs.Mount{
			Destination: "/etc/" + f,
			Type:        "bind",
			Source:      filepath.Join(bundle, f),
			Options:     []string{"rbind", "rprivate"},
		})
	}
	extra := make([]specs.Mount, 0, len(s.Mounts))
	for _, m := range s.Mounts {
		if !path.IsAbs(m.Destination) {
			return nil, fmt.Errorf("mount destination %q: not an absolute path", m.Destination)
		}
		om := specs.Mount{Destination: path.Clean(m.Destination), Source: m.Source, Type: m.Type, Options: m.Options}
		if om.Type == "" {
			om.Type = "bind"
		}
		if om.Type == "bind" {
			om.Options = append([]string{"rbind", "rprivate"}, om.Options...)
		}
		if m.ReadOnly {
			om.Options = append(om.Options, "ro")
		}
		extra = append(extra, om)
	}
	// Parents before children, whatever order the caller used.
	sort.SliceStable(extra, func(i, j int) bool { return len(extra[i].Destination) < len(extra[j].Destination) })
	spec.Mounts = append(spec.Mounts, extra...)
	return spec, nil
}

// cgroupsPath is the container's cgroup below each hierarchy's root:
// <parent>/<id>, or <parent>/<group>/<id> in a group.
func (r *Runtime) cgroupsPath(s *Spec) string {
	if s.Group != nil {
		return "/" + path.Join(r.cgroupParent, s.Group.name, s.ID)
	}
	return "/" + path.Join(r.cgroupParent, s.ID)
}

// memorySwap applies Docker's rule: with a memory limit and no swap limit,
// the container may use as much swap as memory (memory+swap = 2×memory);
// -1 means unlimited.
func memorySwap(memory, swap int64) int64 {
	switch {
	case swap != 0:
		return swap
	case memory > 0:
		return 2 * memory
	}
	return 0
}

// signalExitCode is Docker's exit code of a process killed by a signal.
func signalExitCode(sig unix.Signal) int { return 128 + int(sig) }
