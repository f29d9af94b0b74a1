#!/usr/bin/env bash
set -euo pipefail

# step: One
echo one > one.txt

# step: Two
echo two > two.txt

# step: Three
true

# step: Four
true
