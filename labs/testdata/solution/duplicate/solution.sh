#!/usr/bin/env bash
set -euo pipefail

# step: Write a file
echo a > a.txt

# step: Write another file
echo b > b.txt

# step: Write a file
echo again > a.txt
