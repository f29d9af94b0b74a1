#!/usr/bin/env bash
set -euo pipefail

# step: Run commands
true

# step: Tables and lists
true
