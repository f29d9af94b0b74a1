# labd's container image. Build it with `make image` (deploy/image.sh), not
# with a bare `docker build`: make builds bin/labd on the host first (Go,
# Docker's seccomp profile through cgo and libseccomp, the web assets
# embedded) and writes bin/labd-seccomp.json; this file only puts them on a
# Debian bookworm base (bin/labd needs bookworm's glibc or newer, and labd
# makes its base images from bookworm packages). Where debian:bookworm-slim
# cannot be pulled, make image makes a stand-in of that name with mmdebstrap
# from the host's apt sources, with the packages below already in it, so
# the RUN step below needs no network there.
#
# Run it (README, "Run it in a container", says why each flag is needed):
#
#   docker run -d --name labd -p 8080:8080 -v labd-data:/var/lib/labd \
#     --cap-add SYS_ADMIN --cap-add SYS_PTRACE \
#     --cap-drop NET_RAW --cap-drop NET_BIND_SERVICE --cap-drop AUDIT_WRITE \
#     --security-opt seccomp=bin/labd-seccomp.json \
#     --security-opt systempaths=unconfined --security-opt apparmor=unconfined \
#     --cgroupns private --tmpfs /run labd:latest
#
# Not --privileged: labd needs to make namespaces and mounts
# (CAP_SYS_ADMIN) and to enter its containers' mount namespaces
# (CAP_SYS_PTRACE), not the host's devices or every capability; the
# profile is Docker's default plus keyctl and pivot_root for runc;
# systempaths=unconfined lets learners' containers mount their own /proc;
# /run must be a tmpfs (idmapped mounts); the entrypoint remounts the
# container's own cgroup read-write. Every sandbox runs in a user namespace
# of its own inside, with Docker's default seccomp profile. Without
# SYS_ADMIN, SYS_PTRACE, the tmpfs or systempaths=unconfined the
# entrypoint refuses to serve and names what is missing. State is in the
# one volume, /var/lib/labd; `docker stop` gives labd 10 s to end every
# sandbox cleanly (`docker stop -t 60` gives it longer).
# At the first start labd makes its base images with mmdebstrap; without a
# Debian mirror reachable from the container, import them before, from a
# data dir that has them (README shows how to save them from there):
#   docker save busybox python:3.11-slim labd/sandbox:latest |
#     docker run --rm -i -v labd-data:/var/lib/labd labd:latest images import -
FROM debian:bookworm-slim

# What labd runs besides itself: bash and util-linux (nsenter) for the
# shells, procps (ps) for `docker top`, tini as the containers' docker-init
# (and PID 1 here), libseccomp2 for the seccomp profiles, mmdebstrap and
# busybox-static to make the base images (busybox, the python stand-in and
# the learner's sandbox image) at the first start, ca-certificates for an
# upstream registry, iproute2 to look at the sandboxes' networks.
ARG RUNTIME_PACKAGES="bash util-linux procps tini libseccomp2 mmdebstrap busybox-static ca-certificates iproute2"
RUN set -eu; missing=""; \
    for p in $RUNTIME_PACKAGES; do \
        dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed || missing="$missing $p"; \
    done; \
    if [ -n "$missing" ]; then \
        apt-get update; \
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing; \
        rm -rf /var/lib/apt/lists/*; \
    fi; \
    ln -sf tini-static /usr/bin/docker-init

COPY deploy/labd-entrypoint.sh /usr/local/bin/labd-entrypoint
COPY bin/labd-seccomp.json /usr/share/labd/seccomp.json
COPY content /srv/labd/content
COPY bin/labd /usr/local/bin/labd

ENV LABD_ADDR=0.0.0.0:8080 LABD_DATA=/var/lib/labd LABD_CONTENT=/srv/labd/content
VOLUME /var/lib/labd
EXPOSE 8080
LABEL org.opencontainers.image.title=labd \
      org.opencontainers.image.description="labd, a self-hosted interactive lab server: run it with the flags in the Dockerfile's header"
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/labd-entrypoint"]
CMD ["serve"]
