#!/usr/bin/env bash
# The builder stage tagged as the app: built from the Dockerfile, FROM
# busybox, but not the final stage.
# expect-fail: Build the app
docker build --target builder -t {{vars.app}} .
