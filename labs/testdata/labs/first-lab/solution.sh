#!/usr/bin/env bash
set -euo pipefail

# step: Write the Dockerfile
cat > Dockerfile <<'END'
FROM busybox
COPY message.txt /message.txt
CMD ["cat", "/message.txt"]
END

# step: Build and run it
docker build -t {{vars.image}} .
docker run --rm {{vars.image}}
