#!/usr/bin/env bash
# Solution for the docker-images lab, one section per step. labd test runs
# each section in the same sandbox, in order, and expects that step's checks
# to pass afterwards. The push steps need the learner's registry account in
# LABD_USER and LABD_PASSWORD.
set -euo pipefail

# wait_http PORT TEXT: poll the app until its page contains TEXT (bounded:
# Flask needs a moment to start, a broken app must not hang the test).
wait_http() {
	local i body
	for i in $(seq 60); do
		body=$(curl -fs "http://localhost:$1/" 2>/dev/null) || body=
		if [[ $body == *"$2"* ]]; then
			echo "$body"
			return 0
		fi
		sleep 0.5
	done
	echo "port $1 did not answer with \"$2\" within 30 s" >&2
	return 1
}

# step: Write a small web app
cat > app.py <<'PY'
from flask import Flask

app = Flask(__name__)


@app.route("/")
def hello():
    return "hello world!"


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
PY
# Trying the app outside a container is optional in the lab; do it where
# the shell's Python has Flask (the learner's sandbox image has it).
if python3 -c 'import flask' 2>/dev/null; then
	python3 app.py >/dev/null 2>&1 &
	app=$!
	wait_http 5000 "hello world!"
	kill "$app"
	wait "$app" || true
fi

# step: Describe the image in a Dockerfile
cat > Dockerfile <<'DF'
FROM python:3.11-slim
RUN pip install flask
CMD ["python", "app.py"]
COPY app.py /app.py
DF

# step: Build the image
docker image build -t python-hello-world .
docker image ls

# step: Run the image as a container
docker run -p 5001:5000 -d python-hello-world
docker container ls
wait_http 5001 "hello world!"
docker container logs "$(docker container ls -lq)"

# step: Ship the image to a registry
: "${LABD_USER:?set LABD_USER to the registry user}"
docker login -u "$LABD_USER" --password-stdin <<<"${LABD_PASSWORD:?set LABD_PASSWORD}"
docker tag python-hello-world "$LABD_USER/python-hello-world"
docker push "$LABD_USER/python-hello-world"

# step: Deploy a change
: "${LABD_USER:?set LABD_USER to the registry user}"
sed -i 's/hello world!/Hello Beautiful World!/' app.py
docker image build -t python-hello-world . | tee /tmp/rebuild.log
grep -q "Using cache" /tmp/rebuild.log
docker container stop $(docker container ls -q)
docker run -p 5001:5000 -d --name web python-hello-world
wait_http 5001 "Hello Beautiful World!"
docker tag python-hello-world "$LABD_USER/python-hello-world"
docker push "$LABD_USER/python-hello-world" | tee /tmp/push.log
grep -q "Layer already exists" /tmp/push.log

# step: Look inside the layers
docker image history python-hello-world
docker container exec web sh -c 'echo "written in the container" > /notes.txt; rm /etc/motd; echo "changed" >> /etc/issue'
docker container diff web | tee /tmp/diff.log
grep -q "^A /notes.txt" /tmp/diff.log
mkdir -p goodbye
sed 's/Hello Beautiful World!/goodbye world!/' app.py > goodbye/app.py
cp Dockerfile goodbye/Dockerfile
docker image build -t python-goodbye-world goodbye
docker image history python-goodbye-world

# step: Clean up
docker container stop $(docker container ls -q)
docker system prune -f
