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

need git git
need gcc gcc
need node nodejs
need npm npm
need nsenter util-linux
need bash bash
need ip iproute2

if [ "${1:-run}" = test ]; then
	need chromium chromium
fi

if [ ${#want[@]} -eq 0 ]; then
	exit 0
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
