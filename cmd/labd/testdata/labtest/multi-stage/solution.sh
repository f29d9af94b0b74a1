#!/usr/bin/env bash
set -euo pipefail

# step: Write a two-stage Dockerfile
cat > Dockerfile <<'END'
FROM busybox:latest AS builder
COPY greeting.txt /greeting
FROM busybox
LABEL stage=final
COPY --from=builder /greeting /greeting
CMD ["cat", "/greeting"]
END

# step: Build the builder stage alone
docker build --target builder -t {{vars.app}}-build .

# step: Build the app
docker build -t {{vars.app}} .

# step: Run it and clean up
docker run --name greet {{vars.app}}
docker rm greet
