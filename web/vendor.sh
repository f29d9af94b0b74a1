#!/bin/sh
# Installs the pinned browser dependencies (package-lock.json) and copies
# the files the web UI loads into web/static/vendor/, which go:embed then
# bakes into the labd binary. Run from anywhere; needs npm and the registry.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
npm ci --no-audit --no-fund --loglevel=error
dst=web/static/vendor
mkdir -p "$dst"
cp node_modules/@xterm/xterm/lib/xterm.js "$dst/xterm.js"
cp node_modules/@xterm/xterm/css/xterm.css "$dst/xterm.css"
cp node_modules/@xterm/addon-fit/lib/addon-fit.js "$dst/addon-fit.js"
cp node_modules/@xterm/addon-web-links/lib/addon-web-links.js "$dst/addon-web-links.js"
touch "$dst/.stamp"
