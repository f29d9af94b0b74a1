// Package enginetest starts labd's engine and a reference dockerd side by
// side for tests: `labd engine` (built once per test binary) on a private
// socket and data directory, and Debian's dockerd 20.10 on its own socket,
// data root and exec root (no bridge, no iptables). Both get the same
// busybox base image (bootstrapped in labd, saved and loaded into
// dockerd), so image IDs of the base agree. Clients are the real docker
// CLIs with DOCKER_BUILDKIT=0.
//
// A missing dockerd fails the tests. With LABD_NO_DOCKERD=1 every test that
// compares with dockerd is skipped (on a laptop) or fails (under CI=true):
// a comparison with one engine compares nothing and never passes. Each
// labd engine puts its containers under a cgroup parent of its own
// (NewCgroupParent), so its leak counts see only its own work while other
// test binaries run at the same time.
package enginetest
