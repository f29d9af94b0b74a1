#!/usr/bin/env bash
# Writes a greeting without reading name.txt.
# expect-fail: Greet the name
echo "hello, world" > greeting.txt
