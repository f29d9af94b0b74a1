#!/usr/bin/env bash
set -euo pipefail

# step: Write a report
uname -a > report.txt
