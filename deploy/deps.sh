#!/usr/bin/env bash
# deps.sh installs the Debian packages labd needs, and only those missing.
#   deploy/deps.sh run   what `make run` needs (build + serve)
#   deploy/deps.sh test  what `make test` needs on top (browser, ...)
# It is idempotent and quiet when everything is present, so the Makefile
# calls it on every run; a fresh machine gets everything from it.
set -euo pipefail

want=()
need() { # need <command> <package>
	command -v "$1" >/dev/null 2>&1 || want+=("$2")
}
need_pkg() { # need_pkg <package>: for packages whose files, not commands, matter
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed" || want+=("$1")
}

need git git
need gcc gcc
need node nodejs
need npm npm
need nsenter util-linux
need bash bash
need ip iproute2

# libseccomp-dev: containers get Docker's default seccomp profile (cgo).
need_pkg libseccomp-dev
# busybox-static and mmdebstrap: the offline base images
# (labd images bootstrap busybox|python|sandbox).
need_pkg busybox-static
need mmdebstrap mmdebstrap

if [ "${1:-run}" = test ]; then
	need chromium chromium
	# dockerd is the reference engine of the differential tests; docker.io
	# also brings the 20.10 docker CLI they drive both engines with.
	need dockerd docker.io
	# Debian's docker-registry (CNCF Distribution 2.8): the reference
	# registry of the push/pull differential tests.
	need docker-registry docker-registry
fi

if [ "${1:-run}" = test ]; then
	# The differential tests also drive docker CLI 28 (what learners
	# meet in current tutorials). Debian has only 20.10 and no package
	# repository here offers 28; this machine kind carries it at
	# /usr/local/bin/docker. Without it the tests cannot run: say so.
	cli28=/usr/local/bin/docker
	v=$("$cli28" --version 2>/dev/null | sed -n 's/^Docker version \([0-9][0-9.]*\).*/\1/p' || true)
	case "$v" in
	28.*) ;;
	*)
		echo "deps.sh: the tests need docker CLI 28 at $cli28 (found: ${v:-nothing})." >&2
		echo "  Debian ships only 20.10 (docker.io). Put a docker 28.x client binary at $cli28" >&2
		echo "  (the static build from download.docker.com, or the one this machine kind carries)." >&2
		cli28_missing=1
		;;
	esac
fi

if [ ${#want[@]} -eq 0 ]; then
	exit "${cli28_missing:-0}"
fi
if [ "$(id -u)" != 0 ]; then
	echo "labd needs these Debian packages: ${want[*]}" >&2
	echo "install them as root: apt-get install -y ${want[*]}" >&2
	exit 1
fi
echo "installing: ${want[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
exit "${cli28_missing:-0}"
