#!/usr/bin/env bash
set -euo pipefail

# step: One
echo one > {{vars.file}}

# step: Two
echo two >> {{vars.file}}

# step: Three
cat {{vars.file}}
