#!/usr/bin/env bash
# A Dockerfile that never copies the message.
# expect-fail: Write the Dockerfile
printf 'FROM busybox\nCMD ["echo", "hello"]\n' > Dockerfile
