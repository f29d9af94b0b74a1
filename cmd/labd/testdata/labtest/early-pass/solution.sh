#!/usr/bin/env bash
set -euo pipefail

# step: Make a folder
mkdir -p out && touch out/.keep

# step: Fill the folder
echo data > out/data.txt
