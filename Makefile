# labd: `make run` serves the bundled labs, `make test` runs what CI runs.
GO       ?= go
ADDR     ?= 127.0.0.1:8080
DATA     ?= ./data
CONTENT  ?= ./content
# Base images for `labd test` (python stand-in, busybox): made once, kept.
TESTDATA ?= ./data-test
BIN      := bin/labd
export LABD_ARTIFACTS ?= $(CURDIR)/artifacts
# Docker's default seccomp profile for containers needs libseccomp (cgo).
export GOFLAGS := $(GOFLAGS) -tags=seccomp

.PHONY: all build image images run test test-unit test-e2e test-load test-labs lint-content vet bench test-fuzz deps-run deps-test assets check-assets clean

all: build

deps-run:
	@deploy/deps.sh run

deps-test:
	@deploy/deps.sh test

include web/assets.mk

assets: web/static/vendor/.stamp

build: deps-run assets
	$(GO) build -o $(BIN) ./cmd/labd

# The base images the bundled labs use (busybox, the python stand-in, the
# sandbox image), made from Debian packages the first time, then kept.
# `make run` needs no such step: labd serve makes missing ones in the
# background (--bootstrap) while it already serves.
images: build
	./$(BIN) images bootstrap all --data $(DATA)

# labd's container image, built with Debian's dockerd (one of its own
# unless DOCKER_HOST names one) and saved to bin/labd-image.tar, with the
# seccomp profile it runs with (deploy/image.sh; README, "Run it in a
# container"). A base image that cannot be pulled is made locally.
image: build
	deploy/image.sh

run: build
	./$(BIN) serve --addr $(ADDR) --content $(CONTENT) --data $(DATA)

vet: assets
	$(GO) vet ./...

lint-content: build
	./$(BIN) lint $(CONTENT)

# go test through internal/testreport: besides failures, a skip not listed
# in .ci/skips.txt and a package that ran no test fail the run.
GOTEST := $(GO) run ./internal/testreport -allow .ci/skips.txt

# Unit and integration tests with the race detector; the browser tests
# run in their own step so their output is easy to find.
test-unit: assets
	$(GOTEST) -- $(GO) test -json -race -count=1 $$($(GO) list ./... | grep -v /web/e2e)

# The Docker images lab's browser test keeps its base images (python
# stand-in, sandbox image) in TESTDATA beside test-labs' (made once, kept).
test-e2e: deps-test build
	mkdir -p $(LABD_ARTIFACTS)
	LABD_E2E_LABS_DATA=$(abspath $(TESTDATA)) $(GOTEST) -v -- $(GO) test -json -count=1 -timeout 30m ./web/e2e/

# A class at once (issue 13): N learners over HTTP and the terminal
# websocket (page, prompt, build, run, port preview, push), then the same
# class beside a hostile learner (fork bomb, memory and disk filled).
# Figures in $(LABD_ARTIFACTS)/load-N.json and load-N-hostile.json,
# docs/benchmarks.md. test-e2e runs it too, with N=10.
N ?= 10
test-load: deps-test build
	mkdir -p $(LABD_ARTIFACTS)
	LABD_LOAD_N=$(N) LABD_E2E_LABS_DATA=$(abspath $(TESTDATA)) $(GOTEST) -v -- $(GO) test -json -count=1 -run '^TestLoad$$' -timeout $$((15 + $(N)))m ./web/e2e/

# Every lab's solution.sh in a fresh sandbox, in the learner's own shell
# (the sandbox image, with its docker CLI): no check passes on the empty
# sandbox, each step's checks fail just before its section and pass after
# it, and each cheats/*.sh is caught (grader/labtest).
test-labs: build
	./$(BIN) images bootstrap busybox --data $(TESTDATA)
	./$(BIN) images bootstrap python --data $(TESTDATA)
	./$(BIN) images bootstrap sandbox --data $(TESTDATA)
	mkdir -p $(LABD_ARTIFACTS)
	./$(BIN) test --data $(TESTDATA) --junit $(LABD_ARTIFACTS)/labs-junit.xml $(CONTENT)

test: deps-test build check-assets vet lint-content test-unit test-labs test-e2e

# Each fuzz target for FUZZTIME (go test -fuzz takes one target per
# package at a time); `make test` runs their seeds and testdata/fuzz
# regressions as ordinary tests. docs/security.md, "Fuzzing".
FUZZTIME ?= 20s
FUZZ_TARGETS := \
	FuzzLoad:./labs \
	FuzzChecks:./labs \
	FuzzPlan:./sandbox/engine/build \
	FuzzApply:./sandbox/engine/layer \
	FuzzResolve:./sandbox/engine/image \
	FuzzDecodeFrame:./web/terminal

test-fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "== $${t%%:*} ($${t#*:}, $(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$${t%%:*}\$$" -fuzztime $(FUZZTIME) "$${t#*:}"; \
	done

bench: build
	$(GO) test -run '^$$' -bench . -benchtime 2s ./...

clean:
	rm -rf bin web/static/vendor/.stamp
