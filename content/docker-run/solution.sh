#!/usr/bin/env bash
# Solution for the docker-run lab, one section per step. labd test runs
# each section in the same sandbox, in order, and expects that step's checks
# to pass afterwards.
set -euo pipefail

# step: Run your first container
docker run busybox echo "hello from a container"
docker container ls -a
docker run busybox sh -c 'hostname; ps'

# step: Keep a container running
docker run -d --name ticker busybox sh -c 'while true; do date; sleep 2; done'
docker container ls

# step: Read the logs
# Wait (bounded) for the first line, so the log is not empty.
for _ in $(seq 20); do
	[[ -n $(docker container logs ticker 2>&1) ]] && break
	sleep 0.5
done
docker container logs ticker
docker container logs --tail 3 ticker

# step: Work inside a running container
docker container exec ticker ps
docker container top ticker
docker container exec ticker sh -c 'echo "left by exec" > /tmp/note.txt'
test "$(docker container exec ticker cat /tmp/note.txt)" = "left by exec"

# step: Stop and remove containers
docker container stop ticker
docker container rm ticker
docker container prune -f
