# Container image of the labd server. labd makes namespaces (and, with the
# engine, containers) for every learner, so the container must run privileged:
#   docker build -t labd . && docker run --privileged -p 8080:8080 labd
FROM golang:1.26-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends nodejs npm libseccomp-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum package.json package-lock.json ./
RUN go mod download && npm ci --ignore-scripts
COPY . .
# Docker's seccomp profile is not optional: labd's engine refuses to start
# without it.
RUN make assets && CGO_ENABLED=1 go build -tags seccomp -o /out/labd ./cmd/labd

FROM debian:bookworm-slim
# libseccomp2: the profile; mmdebstrap and busybox-static: the base images
# labd makes on first start (the sandbox image among them).
RUN apt-get update && apt-get install -y --no-install-recommends bash util-linux iproute2 ca-certificates \
    libseccomp2 mmdebstrap busybox-static \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/labd /usr/local/bin/labd
COPY content /srv/labd/content
EXPOSE 8080
VOLUME /var/lib/labd
ENTRYPOINT ["labd", "serve", "--addr", "0.0.0.0:8080", "--content", "/srv/labd/content", "--data", "/var/lib/labd"]
