package main

import (
	"flag"
	"fmt"
	"strconv"

	"github.com/docker/go-units"
	"github.com/labd/labd/labs"
	"github.com/labd/labd/sandbox/engine/api"
	"github.com/labd/labd/sandbox/enginebox"
)

// limitFlags are labd serve's limits per sandbox: its cgroup (memory,
// processes, CPU weight; a lab's front matter may ask for more up to the
// maximum) and its engine (builds, execs, published ports, request
// sizes). docs/engine.md, "Limits per sandbox", says why the defaults.
type limitFlags struct {
	memory, maxMemory                         string
	pids, maxPids, cpuShares                  string
	builds, execs, ports                      string
	disk, maxDisk, containerLog               string
	maxContext, maxLoad, maxCopy, maxJSONBody string
}

func addLimitFlags(fs *flag.FlagSet) *limitFlags {
	f := &limitFlags{}
	str := func(p *string, name, env, def, usage string) {
		fs.StringVar(p, name, envDefault(env, def), usage+" (env "+env+")")
	}
	str(&f.memory, "sandbox-memory", "LABD_SANDBOX_MEMORY", "1g", `memory of each sandbox (its shell, containers and builds together; tmpfs included), swap as much again; a lab may ask for more ("resources:"); "none": no limit`)
	str(&f.maxMemory, "sandbox-max-memory", "LABD_SANDBOX_MAX_MEMORY", "4g", `most memory a lab's "resources:" may ask for; "none": no maximum`)
	str(&f.pids, "sandbox-pids", "LABD_SANDBOX_PIDS", "512", `processes and threads of each sandbox; "none": no limit`)
	str(&f.maxPids, "sandbox-max-pids", "LABD_SANDBOX_MAX_PIDS", "4096", `most processes a lab's "resources:" may ask for; "none": no maximum`)
	str(&f.cpuShares, "sandbox-cpu-shares", "LABD_SANDBOX_CPU_SHARES", "1024", "CPU weight of each sandbox against the others when the CPUs are busy (as --cpu-shares; the same for all gives each an equal share)")
	str(&f.disk, "sandbox-disk", "LABD_SANDBOX_DISK", "2g", `disk quota of each sandbox: its workspace, shell, containers' writable layers and logs, volumes, build scratch and the images it builds or loads; a lab may ask for more ("resources:"); "none": no quota`)
	str(&f.maxDisk, "sandbox-max-disk", "LABD_SANDBOX_MAX_DISK", "16g", `most disk a lab's "resources:" may ask for; "none": no maximum`)
	str(&f.containerLog, "max-container-log", "LABD_MAX_CONTAINER_LOG", "30m", "log one container keeps on disk (rotated in 3 files, as json-file's max-size and max-file; docker run --log-opt may ask for less)")
	str(&f.builds, "max-builds", "LABD_MAX_BUILDS", strconv.Itoa(enginebox.DefaultMaxBuilds), `builds one sandbox runs at once; "none": no limit`)
	str(&f.execs, "max-execs", "LABD_MAX_EXECS", strconv.Itoa(enginebox.DefaultMaxExecs), `docker exec processes one sandbox runs at once; "none": no limit`)
	str(&f.ports, "max-ports", "LABD_MAX_PORTS", strconv.Itoa(enginebox.DefaultMaxPorts), `host ports one sandbox's running containers publish; "none": no limit`)
	str(&f.maxContext, "max-context", "LABD_MAX_CONTEXT", "1g", "largest build context a sandbox's engine accepts")
	str(&f.maxLoad, "max-load", "LABD_MAX_LOAD", "1g", "largest docker load archive a sandbox's engine accepts")
	str(&f.maxCopy, "max-copy", "LABD_MAX_COPY", "1g", "largest docker cp archive into a container a sandbox's engine accepts")
	str(&f.maxJSONBody, "max-request-body", "LABD_MAX_REQUEST_BODY", "1m", "largest other request body (JSON) a sandbox's engine accepts")
	return f
}

// serveLimits are the resolved limitFlags.
type serveLimits struct {
	sandbox                                   enginebox.Limits
	maxContext, maxLoad, maxCopy, maxJSONBody int64
}

// none is how the flags say "no limit": enginebox.Limits' negative values.
func none(s string) bool { return s == "none" || s == "0" }

// size reads a size flag such as 1g or 512m; noneOK allows "none" (-1).
func size(name, v string, min int64, noneOK bool) (int64, error) {
	if noneOK && none(v) {
		return -1, nil
	}
	n, err := units.RAMInBytes(v)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("--%s %q: want a size such as 1g or 512m", name, v)
	}
	if n < min {
		return 0, fmt.Errorf("--%s %s: below %s", name, v, units.BytesSize(float64(min)))
	}
	return n, nil
}

// count reads a whole-number flag; noneOK allows "none" (-1).
func count(name, v string, min, max int64, noneOK bool) (int64, error) {
	if noneOK && none(v) {
		return -1, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < min || (max > 0 && n > max) {
		want := fmt.Sprintf("a whole number from %d", min)
		if max > 0 {
			want += fmt.Sprintf(" to %d", max)
		}
		if noneOK {
			want += ` or "none"`
		}
		return 0, fmt.Errorf("--%s %q: want %s", name, v, want)
	}
	return n, nil
}

func (f *limitFlags) resolve() (serveLimits, error) {
	var l serveLimits
	var errs []error
	get := func(v int64, err error) int64 {
		if err != nil {
			errs = append(errs, err)
		}
		return v
	}
	l.sandbox.Memory = get(size("sandbox-memory", f.memory, labs.MinMemory, true))
	l.sandbox.MaxMemory = get(size("sandbox-max-memory", f.maxMemory, labs.MinMemory, true))
	l.sandbox.Pids = get(count("sandbox-pids", f.pids, labs.MinPids, 0, true))
	l.sandbox.MaxPids = get(count("sandbox-max-pids", f.maxPids, labs.MinPids, 0, true))
	l.sandbox.CPUShares = get(count("sandbox-cpu-shares", f.cpuShares, 2, 262144, false))
	l.sandbox.Disk = get(size("sandbox-disk", f.disk, labs.MinDisk, true))
	l.sandbox.MaxDisk = get(size("sandbox-max-disk", f.maxDisk, labs.MinDisk, true))
	l.sandbox.Logs = get(size("max-container-log", f.containerLog, 1<<20, false))
	l.sandbox.Builds = int(get(count("max-builds", f.builds, 1, 0, true)))
	l.sandbox.Execs = int(get(count("max-execs", f.execs, 1, 0, true)))
	l.sandbox.Ports = int(get(count("max-ports", f.ports, 1, 65535, true)))
	l.maxContext = get(size("max-context", f.maxContext, 1, false))
	l.maxLoad = get(size("max-load", f.maxLoad, 1, false))
	l.maxCopy = get(size("max-copy", f.maxCopy, 1, false))
	l.maxJSONBody = get(size("max-request-body", f.maxJSONBody, 64<<10, false))
	if len(errs) > 0 {
		return l, errs[0]
	}
	if m, max := l.sandbox.Memory, l.sandbox.MaxMemory; max > 0 && (m < 0 || m > max) {
		return l, fmt.Errorf("--sandbox-memory %s is above --sandbox-max-memory %s", f.memory, f.maxMemory)
	}
	if d, max := l.sandbox.Disk, l.sandbox.MaxDisk; max > 0 && (d < 0 || d > max) {
		return l, fmt.Errorf("--sandbox-disk %s is above --sandbox-max-disk %s", f.disk, f.maxDisk)
	}
	if p, max := l.sandbox.Pids, l.sandbox.MaxPids; max > 0 && (p < 0 || p > max) {
		return l, fmt.Errorf("--sandbox-pids %s is above --sandbox-max-pids %s", f.pids, f.maxPids)
	}
	return l, nil
}

// apiOptions sets the request size limits of o.
func (l serveLimits) apiOptions(o api.Options) api.Options {
	o.MaxContextSize, o.MaxLoadSize, o.MaxCopySize, o.MaxRequestBody = l.maxContext, l.maxLoad, l.maxCopy, l.maxJSONBody
	return o
}
