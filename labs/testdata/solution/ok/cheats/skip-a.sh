#!/usr/bin/env bash
# Writes b.txt without a.txt.
# expect-fail: Write a file
echo b > b.txt
