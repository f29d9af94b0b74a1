#!/bin/sh
# labd-entrypoint: the entrypoint of labd's container image (under tini).
# Before `labd serve` it checks that the container was started with what
# labd needs to run learners' sandboxes (README, "Run it in a container")
# and names every flag that is missing, instead of letting the first
# learner meet a sandbox that cannot start; then it makes the container's
# own cgroup writable for labd. Other commands (`labd images import -`)
# run as they are.
set -eu

if [ "${1:-}" != serve ]; then
	exec labd "$@"
fi

problems=""
problem() {
	problems="$problems
  - $*"
}

# has_cap N: capability number N is in the effective set.
has_cap() {
	eff=$(awk '$1 == "CapEff:" { print $2 }' /proc/self/status)
	[ $(((0x$eff >> $1) & 1)) -eq 1 ]
}

# mounts_of TYPE...: the mount points of the given file system types, from
# mountinfo (the type follows the "-" that ends the optional fields).
mounts_of() {
	awk -v types=" $* " '{
		for (i = 7; i < NF; i++) if ($i == "-") {
			if (index(types, " " $(i + 1) " ")) print $5
			break
		}
	}' /proc/self/mountinfo
}

if ! has_cap 21; then
	problem "--cap-add SYS_ADMIN: labd makes the namespaces and mounts of every sandbox (overlay, idmapped layers)"
fi
if ! has_cap 19; then
	problem "--cap-add SYS_PTRACE: labd's runtime opens the mount namespace of containers whose root is an unprivileged uid"
fi
if [ "$(stat -f -c %T /run)" != tmpfs ]; then
	problem "--tmpfs /run: the runtime directory /run/labd must support idmapped mounts, which the image's overlay root does not"
fi
# Docker's masked paths are mounts over /proc: while they are there the
# kernel refuses a fresh proc mount in a learner's user namespace, and
# /proc/sys stays read-only.
if awk '$5 ~ "^/proc/" { found = 1 } END { exit !found }' /proc/self/mountinfo; then
	problem "--security-opt systempaths=unconfined: learners' containers mount their own /proc, which the kernel refuses while parts of this container's /proc are masked"
fi

if [ -z "$problems" ]; then
	# labd puts every shell, container and build step in a cgroup below
	# its own: Docker mounts the cgroup file systems read-only. With
	# --cgroupns private they show only this container's cgroup.
	for m in $(mounts_of cgroup cgroup2); do
		if ! mount -o remount,bind,rw "$m" 2>/dev/null; then
			problem "a writable cgroup: cannot remount $m read-write (on AppArmor hosts add --security-opt apparmor=unconfined)"
		fi
	done
fi
if [ -z "$problems" ] && [ "$(stat -f -c %T /sys/fs/cgroup)" = cgroup2fs ]; then
	# cgroup v2 gives controllers to child cgroups only while the parent
	# has no processes of its own: move this container's into a leaf.
	cg=/sys/fs/cgroup
	mkdir -p "$cg/init"
	for pid in $(cat "$cg/cgroup.procs"); do
		echo "$pid" >"$cg/init/cgroup.procs" 2>/dev/null || true
	done
	for c in $(cat "$cg/cgroup.controllers"); do
		echo "+$c" >"$cg/cgroup.subtree_control" 2>/dev/null ||
			echo "labd-entrypoint: cgroup controller $c not delegated to labd's containers" >&2
	done
fi

if [ -n "$problems" ]; then
	echo "labd-entrypoint: this container cannot run learners' sandboxes; start it with:$problems" >&2
	echo "The whole docker run line, and why each flag is needed: README.md, \"Run it in a container\"." >&2
	exit 1
fi
exec labd "$@"
