#!/usr/bin/env bash
# One stage: the final image would carry the build's tools.
# expect-fail: Write a two-stage Dockerfile
printf 'FROM busybox\nRUN echo hi > /greeting\nCMD ["cat", "/greeting"]\n' > Dockerfile
