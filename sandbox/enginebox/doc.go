// Package enginebox is labd's engine-backed sandbox provider: it sits
// beside sandbox/nsbox as a sandbox.Provider, and gives every sandbox a
// Docker engine of its own (sandbox/engine) with the learner's shell.
//
// It exists so that sandbox/engine stays the Docker API front, which the
// standalone engine (`labd engine`, engine.Open) is as well, while what
// only a learner's sandbox needs lives here. A Provider owns, per
// sandbox: its engine on a socket beside the workspace (SocketName) and
// the grader's unrecorded one (GraderSocketName); its cgroup and the
// resolution of Limits into it and into the engine's EngineLimits; its
// disk (quota.go: mounting it, the table of mounted disks, the mounts of
// ended sandboxes' kept workspaces, kept.go) handed to its engine as an
// engine.Disk; its shell, a container of the sandbox image (shell.go),
// or the Inner provider (nsbox) without that image; the grader's check
// containers (check.go); warm sandboxes (warm.go); reset and removal of
// an ended sandbox's files (reset.go, usage.go); and what a server's
// maximum must fit in (SandboxCapacity).
//
// What the engine also needs alone stays in sandbox/engine and is used
// here through a few exported methods of engine.Shared: the subnet pool
// and bridge networks (NewNetwork, SweepSandboxNetworks), the uid range
// pool and user namespaces (NewUserNSWithNet, SweepUserNS, ForgetView),
// a view's files (ResetView), and the engine-side enforcement (the
// EngineLimits counters, the disk accounting against engine.Disk) wired
// by the Engine's setters (SetLimits, SetGroup, SetUserNS, SetNetwork,
// SetAllowBind) and EngineOnDisk.
package enginebox
