# Container image of the labd server. labd makes namespaces (and, with the
# engine, containers) for every learner, so the container must run privileged:
#   docker build -t labd . && docker run --privileged -p 8080:8080 labd
FROM golang:1.26-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends nodejs npm && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum package.json package-lock.json ./
RUN go mod download && npm ci --ignore-scripts
COPY . .
RUN make assets && CGO_ENABLED=1 go build -o /out/labd ./cmd/labd

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends bash util-linux iproute2 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/labd /usr/local/bin/labd
COPY content /srv/labd/content
EXPOSE 8080
VOLUME /var/lib/labd
ENTRYPOINT ["labd", "serve", "--addr", "0.0.0.0:8080", "--content", "/srv/labd/content", "--data", "/var/lib/labd"]
