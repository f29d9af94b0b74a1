#!/usr/bin/env bash
# Solution for the hello-shell lab, one section per step. The grader tests
# (issue 6) run each section in a fresh workspace and expect that step's
# checks to pass afterwards.
set -euo pipefail

# step: Look around
hostname > whereami.txt

# step: Write a file
echo "Hello, shell" > hello.txt
echo "This line comes second." >> hello.txt

# step: Connect commands with a pipe
ls /usr/bin | wc -l > count.txt

# step: Pass settings with environment variables
export GREETING="Hello from the environment"
bash -c 'echo "child sees: $GREETING"' > greeting.txt
