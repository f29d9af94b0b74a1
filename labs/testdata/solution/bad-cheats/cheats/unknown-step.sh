#!/usr/bin/env bash
# expect-fail: Write the file
echo a > a.txt
