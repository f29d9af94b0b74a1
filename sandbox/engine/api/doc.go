// Package api serves the Docker Engine API over HTTP so that the real docker
// CLI (with DOCKER_BUILDKIT=0) and github.com/docker/docker/client work
// against labd's engine as they do against dockerd.
//
// New returns an http.Handler; every route is reachable bare and under a
// /v{version} prefix (1.24 and up, never rejected as too new). Responses use
// the types from github.com/docker/docker/api/types so that the SDK decodes
// them, errors are {"message": ...} with Docker's status codes, and build
// and load output is a JSON stream (one object per line, "\r\n", flushed).
//
// The engine behind the API is the Backend interface, defined here where it
// is consumed.
package api
