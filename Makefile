# labd: `make run` serves the bundled labs, `make test` runs what CI runs.
GO       ?= go
ADDR     ?= 127.0.0.1:8080
DATA     ?= ./data
CONTENT  ?= ./content
BIN      := bin/labd
export LABD_ARTIFACTS ?= $(CURDIR)/artifacts

.PHONY: all build run test test-unit test-e2e lint-content vet bench deps-run deps-test assets clean

all: build

deps-run:
	@deploy/deps.sh run

deps-test:
	@deploy/deps.sh test

include web/assets.mk

assets: web/static/vendor/.stamp

build: deps-run assets
	$(GO) build -o $(BIN) ./cmd/labd

run: build
	./$(BIN) serve --addr $(ADDR) --content $(CONTENT) --data $(DATA)

vet: assets
	$(GO) vet ./...

lint-content: build
	./$(BIN) lint $(CONTENT)

# Unit and integration tests with the race detector; the browser tests
# run in their own step so their output is easy to find.
test-unit: assets
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /web/e2e)

test-e2e: deps-test build
	mkdir -p $(LABD_ARTIFACTS)
	$(GO) test -count=1 -v ./web/e2e/

test: deps-test build vet lint-content test-unit test-e2e

bench: build
	$(GO) test -run '^$$' -bench . -benchtime 2s ./...

clean:
	rm -rf bin web/static/vendor/.stamp
