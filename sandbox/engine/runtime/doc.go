// Package runtime runs processes in containers through runc's libcontainer,
// embedded in the labd binary: the classic builder's RUN steps now, `docker
// run` containers later.
//
// A container is an overlay root filesystem (the image's layer directories
// as lowers, the caller's upper and work directories) plus Docker's default
// isolation: mount, pid, uts, ipc, net and cgroup namespaces; Docker's
// default capability set; masked and read-only /proc and /sys paths;
// no_new_privs; /proc, /dev (tmpfs with the default devices), /dev/pts,
// /dev/shm, /dev/mqueue, a read-only /sys and /sys/fs/cgroup; a cgroup
// <CgroupParent>/<id> on both cgroup v1 (and hybrid) and v2 hosts, or
// <CgroupParent>/<group>/<id> for a container of a Group (NewGroup): a
// cgroup with limits of its own that its containers share, whatever each
// asks for (a sandbox's shell, containers, build steps and checks).
//
// Like dockerd, every container gets an "init layer" as its topmost lower
// (/.dockerenv, /etc/hosts, /etc/hostname, /etc/resolv.conf, /etc/mtab,
// /dev/console, /proc, /sys, /dev/pts, /dev/shm) and /etc/hosts,
// /etc/hostname and /etc/resolv.conf are bind mounts of files kept outside
// the rootfs, so the upper directory (a RUN step's layer) never contains
// them.
//
// On-disk layout under Options.Root:
//
//	ROOT/                      0711
//	├── state/<id>/            libcontainer's state (state.json, exec fifo)
//	├── groups/<name>          one empty file per Group made and not yet removed
//	└── bundles/<id>/          0711
//	    ├── rootfs/            the overlay mount point
//	    ├── init/              the init layer (topmost lower; the only one for FROM scratch)
//	    ├── binds/<i>          pinned bind sources (Mount.Beneath, Mount.IDMap)
//	    └── hosts, hostname, resolv.conf
//
// Everything under state/<id> and bundles/<id>, the overlay mount and the
// cgroups are removed as soon as the container's init process has exited;
// a group's cgroup once Remove was called and its last container is gone.
// New sweeps whatever a killed labd left behind, groups included. The upper and work
// directories belong to the caller and are left in place.
//
// The re-exec: libcontainer starts a container by executing the current
// binary (a sealed copy of /proc/self/exe) as "<argv0> init"; the C
// constructor of libcontainer/nsenter joins namespaces before the Go runtime
// starts, then this package's init function hands over to libcontainer.Init.
// Any binary (labd, test binaries of consumers) that links this package is
// therefore ready to start containers; no TestMain hook is needed. The same
// init function locks the main goroutine to the main thread (see reexec.go).
//
// User namespaces: with Spec.UserNS a container joins a user namespace the
// caller pinned (package userns; one per sandbox), so container root is an
// unprivileged host id (the range's base). The runtime then
//   - mounts the overlay with idmapped lowers (open_tree and mount_setattr
//     MOUNT_ATTR_IDMAP with that namespace, then fsconfig lowerdir+ by
//     descriptor; on kernels before 6.13 the idmapped layers are attached
//     in bundles/<id>/layers for mount(2) and detached right after): the
//     layer directories keep their ids on disk and stay shared;
//   - gives container root the upper's root directory, the bundle's hosts,
//     hostname and resolv.conf and the working directory it creates; the
//     upper then holds host ids (base + container id), which
//     layer.DiffShifted maps back;
//   - pins binds with Mount.IDMap as idmapped mounts of the same namespace
//     (a workspace keeps container ids on disk);
//   - requires Spec.NetNS, when set, to be owned by that namespace
//     (userns.NewNetNS), and sets net.ipv4.ping_group_range to the
//     container's groups;
//   - makes runc join the namespace by path without reading its maps
//     (specconv sees the mappings, the path is set afterwards).
//
// Container root must be able to search its way to bundles/<id>/rootfs:
// New makes Root and bundles/ 0711 and Start refuses a Root below a
// directory without o+x. Device nodes are bind mounts of the host's
// (runc's way in a user namespace) and mknod is refused, as with dockerd's
// userns-remap.
//
// Seccomp: Options.Seccomp applies a profile (for example Docker's default
// one) only when the binary is built with `-tags seccomp` against
// libseccomp; otherwise New refuses a non-nil profile. By default none is
// applied.
//
// Everything here needs root.
package runtime
