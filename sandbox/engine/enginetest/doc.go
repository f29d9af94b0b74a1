// Package enginetest starts labd's engine and a reference dockerd side by
// side for tests: `labd engine` (built once per test binary) on a private
// socket and data directory, and Debian's dockerd 20.10 on its own socket,
// data root and exec root (no bridge, no iptables). Both get the same
// busybox base image (bootstrapped in labd, saved and loaded into
// dockerd), so image IDs of the base agree. Clients are the real docker
// CLIs with DOCKER_BUILDKIT=0.
//
// A missing dockerd fails the tests, unless LABD_NO_DOCKERD=1 (then the
// differential parts are skipped).
package enginetest
