#!/usr/bin/env bash
# image.sh builds labd's container image from the Dockerfile (make image).
#
# It needs bin/labd (make build) and root. By default it starts a dockerd
# of its own (Debian's docker.io: /usr/sbin/dockerd, with its state kept in
# the cache below, its sockets in a temporary directory, no bridge and no
# iptables rules), builds there, saves the image to $OUT/labd-image.tar
# and stops it again; with DOCKER_HOST set it builds in that engine instead
# and leaves the image there.
#
# The base, debian:bookworm-slim: used when the engine has it, pulled when
# it can be, and otherwise made here under that name: mmdebstrap (minbase,
# "slim" dpkg excludes) from the host's apt sources for bookworm, with the
# Dockerfile's RUNTIME_PACKAGES already installed, so the build needs no
# network. That stand-in is kept in the cache and labelled as one
# (labd.base, which the labd image inherits).
#
# Environment:
#   IMAGE             the image's name (default labd:latest)
#   LABD_BIN          the labd binary (default bin/labd; relative paths are
#                     relative to the repository)
#   LABD_IMAGE_OUT    where labd-image.tar and labd-seccomp.json go (default bin)
#   LABD_IMAGE_BASE   auto (default) | pull (never make the stand-in) |
#                     local (never pull: make or reuse the stand-in)
#   LABD_IMAGE_CACHE  kept between runs: the stand-in's tar and the private
#                     dockerd's state (default ~/.cache/labd-image)
#   DOCKER_HOST       build in this engine (no tar is written)
#   DOCKER, GO        the docker CLI and go commands (default docker, go)
set -euo pipefail

cd "$(dirname "$0")/.."
image=${IMAGE:-labd:latest}
bin=${LABD_BIN:-bin/labd}
out=${LABD_IMAGE_OUT:-bin}
basemode=${LABD_IMAGE_BASE:-auto}
cache=${LABD_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/labd-image}
docker=${DOCKER:-docker}
go=${GO:-go}
base=debian:bookworm-slim
suite=bookworm

say() { echo "image.sh: $*" >&2; }
die() {
	say "$*"
	exit 1
}

case $basemode in
auto | pull | local) ;;
*) die "LABD_IMAGE_BASE=$basemode: want auto, pull or local" ;;
esac
[ "$(id -u)" = 0 ] || die "needs root (dockerd, mmdebstrap)"
[ -x "$bin" ] || die "$bin: no labd binary; run make build first"
command -v "$docker" >/dev/null || die "no docker CLI ($docker): apt-get install docker.io"
# bin/labd is linked against the host's glibc: the image's bookworm must
# have the same or newer.
glibc=$(getconf GNU_LIBC_VERSION | awk '{print $2}')
if [ "$(printf '%s\n' "$glibc" 2.36 | sort -V | tail -1)" != 2.36 ]; then
	die "$bin needs glibc $glibc, newer than Debian $suite's 2.36: build it on Debian $suite"
fi
packages=$(sed -n 's/^ARG RUNTIME_PACKAGES="\(.*\)"$/\1/p' Dockerfile)
[ -n "$packages" ] || die "Dockerfile: no ARG RUNTIME_PACKAGES=\"...\" line"
mkdir -p "$out" "$cache"

tmp=$(mktemp -d /tmp/labd-image.XXXXXX)
dockerd_pid=""
cleanup() {
	if [ -n "$dockerd_pid" ]; then
		kill -TERM "$dockerd_pid" 2>/dev/null || true
		for _ in $(seq 300); do
			kill -0 "$dockerd_pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$dockerd_pid" 2>/dev/null || true
		# What a killed dockerd left mounted under its directories.
		for d in "$tmp/exec" "$cache/dockerd"; do
			findmnt -rn -o TARGET | grep -F "$d/" | sort -r | xargs -r -d '\n' umount -l 2>/dev/null || true
		done
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The profile the container runs with (deploy/seccompprofile).
"$go" run ./deploy/seccompprofile -o "$out/labd-seccomp.json"

# The build context: what the Dockerfile copies, nothing else.
ctx=$tmp/context
mkdir -p "$ctx/bin" "$ctx/deploy"
cp Dockerfile "$ctx/"
cp "$bin" "$ctx/bin/labd"
cp "$out/labd-seccomp.json" "$ctx/bin/labd-seccomp.json"
cp deploy/labd-entrypoint.sh "$ctx/deploy/"
cp -r content "$ctx/content"

private=""
if [ -z "${DOCKER_HOST:-}" ]; then
	private=1
	[ -x /usr/sbin/dockerd ] || die "no /usr/sbin/dockerd: apt-get install docker.io (or set DOCKER_HOST to an engine)"
	exec 9>"$cache/dockerd.lock"
	flock -n 9 || die "another make image uses $cache/dockerd; wait for it"
	mkdir -p "$tmp/exec"
	export DOCKER_HOST=unix://$tmp/docker.sock
	say "starting a dockerd of its own (state in $cache/dockerd)"
	/usr/sbin/dockerd --host "$DOCKER_HOST" --data-root "$cache/dockerd" --exec-root "$tmp/exec" \
		--pidfile "$tmp/dockerd.pid" --bridge none --iptables=false --ip-masq=false --ip6tables=false \
		>"$tmp/dockerd.log" 2>&1 &
	dockerd_pid=$!
	for _ in $(seq 600); do
		"$docker" version >/dev/null 2>&1 && break
		kill -0 "$dockerd_pid" 2>/dev/null || die "dockerd exited: $(tail -5 "$tmp/dockerd.log")"
		sleep 0.1
	done
	"$docker" version >/dev/null 2>&1 || die "dockerd did not answer within 60 s: $(tail -5 "$tmp/dockerd.log")"
fi

# standin makes $base with mmdebstrap (as `labd images bootstrap` makes its
# images) and loads it, reusing the tar an earlier run made from the same
# packages and sources.
standin() {
	command -v mmdebstrap >/dev/null || die "no mmdebstrap to make $base: apt-get install mmdebstrap"
	# The host's entries for bookworm and its -updates/-security suites,
	# one line each.
	apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' 'Identifier: Packages' |
		awk -v s="$suite" '$2 == s || index($2, s "-") == 1' | sort -u |
		awk '{ k = $1 " " $2; if (!(k in c)) order[n++] = k; c[k] = c[k] " " $3 } END { for (i = 0; i < n; i++) print "deb " order[i] c[order[i]] }' \
			>"$tmp/sources.list"
	[ -s "$tmp/sources.list" ] || die "no apt source for Debian $suite on this host (apt-get indextargets), so $base cannot be made; add one, or make the image where $base can be pulled"
	# The host's proxy and date checks, for reaching its mirror; not kept
	# in the image.
	apt-config dump | grep -i -E '^Acquire::(https?|ftp)::Proxy|^Acquire::Check-(Valid-Until|Date) ' >"$tmp/apt.conf" || true
	key=$( (echo "$packages"; cat "$tmp/sources.list" "$tmp/apt.conf"; mmdebstrap --version) | sha256sum | cut -c1-16)
	tar=$cache/$suite-slim-standin-$key.tar
	# One maker at a time; a second one waits and reuses the tar.
	exec 8>"$cache/standin.lock"
	flock 8
	if [ ! -s "$tar" ]; then
		say "making a stand-in for $base with mmdebstrap: minbase + $packages"
		start=$(date +%s)
		chmod 755 "$tmp" # apt downloads as _apt below it
		hooks=()
		[ -d /usr/share/mmdebstrap/hooks/merged-usr ] && hooks=(--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr)
		# In a mount namespace of its own: the chroot's mounts never stay.
		TMPDIR=$tmp unshare --mount --propagation private \
			mmdebstrap --variant=minbase --format=tar --skip=output/dev \
			--include="$(echo $packages | tr ' ' ,)" "${hooks[@]}" \
			--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
			--dpkgopt='path-exclude=/usr/share/groff/*' --dpkgopt='path-exclude=/usr/share/lintian/*' \
			--dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
			--dpkgopt='path-include=/usr/share/doc/*/copyright' \
			--aptopt="$tmp/apt.conf" \
			--customize-hook='rm -f "$1/etc/apt/apt.conf.d/99mmdebstrap" "$1/etc/resolv.conf" "$1/etc/hostname"' \
			"$suite" "$tar.partial" "$tmp/sources.list" >"$tmp/mmdebstrap.log" 2>&1 ||
			die "mmdebstrap failed (apt sources: $(tr '\n' ';' <"$tmp/sources.list")):
$(grep -E '^(E:|W:|Err:)' "$tmp/mmdebstrap.log" | tail -10)"
		mv "$tar.partial" "$tar"
		find "$cache" -maxdepth 1 -name "$suite-slim-standin-*.tar" ! -name "${tar##*/}" -delete
		say "stand-in made in $(($(date +%s) - start)) s: $tar"
	fi
	"$docker" import \
		--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		--change 'CMD ["bash"]' \
		--change "LABEL labd.base=\"$standin_label\"" \
		"$tar" "$base" >/dev/null
	say "$base: the local stand-in ($tar)"
}

standin_label="local stand-in for $base: mmdebstrap --variant=minbase $suite --include=$(echo $packages | tr ' ' ,); not the official image"
if label=$("$docker" image inspect -f '{{index .Config.Labels "labd.base"}}' "$base" 2>/dev/null); then
	if [ -n "$label" ] && [ "$label" != "$standin_label" ]; then
		say "$base: an earlier stand-in, with other packages: making it again"
		standin
	else
		say "$base: present in the engine"
	fi
elif [ "$basemode" = local ]; then
	standin
elif "$docker" pull "$base" >"$tmp/pull.log" 2>&1; then
	say "$base: pulled"
elif [ "$basemode" = pull ]; then
	die "pull $base failed: $(tail -1 "$tmp/pull.log")"
else
	say "pull $base failed ($(tail -1 "$tmp/pull.log")): making it here"
	standin
fi

# The private dockerd has no bridge: RUN steps share the host's network
# (the official base's apt-get needs it; the stand-in's does not).
network=()
[ -n "$private" ] && network=(--network host)
say "building $image"
start=$(date +%s)
DOCKER_BUILDKIT=0 "$docker" build "${network[@]}" -t "$image" "$ctx" >"$tmp/build.log" 2>&1 ||
	die "docker build failed:
$(tail -20 "$tmp/build.log")"
id=$("$docker" image inspect -f '{{.Id}}' "$image")
say "built $image ($id) in $(($(date +%s) - start)) s"

if [ -n "$private" ]; then
	# Earlier builds' images, now untagged, would pile up in the cache.
	"$docker" image prune -f >/dev/null
	tarfile=$out/labd-image.tar
	if [ -s "$tarfile" ] && [ "$(cat "$tarfile.id" 2>/dev/null)" = "$id" ]; then
		say "$tarfile: already holds $id"
	else
		rm -f "$tarfile.id"
		"$docker" save -o "$tarfile.partial" "$image"
		mv "$tarfile.partial" "$tarfile"
		echo "$id" >"$tarfile.id"
	fi
	echo "labd image $image ($id): $tarfile"
	echo "  load it: docker load -i $tarfile"
else
	echo "labd image $image ($id): in the engine at $DOCKER_HOST"
fi
echo "  seccomp profile to run it with: $out/labd-seccomp.json"
echo "  run it: see the Dockerfile's header or README.md, \"Run it in a container\""
