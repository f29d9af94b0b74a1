#!/usr/bin/env bash
# No header.
echo b > b.txt
