#!/usr/bin/env bash
set -euo pipefail

# step: Write a name
echo ada > name.txt

# step: Greet the name
echo "hello, $(cat name.txt)" > greeting.txt
