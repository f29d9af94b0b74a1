#!/usr/bin/env bash
set -euo pipefail
echo a > a.txt
echo b > b.txt
