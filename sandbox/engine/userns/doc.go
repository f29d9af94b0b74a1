// Package userns makes the user namespace of a sandbox, and network
// namespaces owned by it, and pins them as files.
//
// A sandbox's shell, containers and build steps run with container root
// mapped to an unprivileged host id range (Range). They join one user
// namespace per sandbox (Create pins it, for example at RunDir/userns);
// runtime.Spec.UserNS names it. Every network namespace their processes
// use must be owned by that user namespace: in a network namespace owned
// by the host's, container root has no CAP_NET_ADMIN or CAP_NET_RAW, so
// runc cannot mount sysfs and ping cannot open its socket. Create makes
// the sandbox's bridge namespace together with the user namespace;
// NewNetNS makes one more (a container's) in an existing user namespace.
// labd, as host root, configures links, addresses and routes in them
// through netlink as in any other network namespace.
//
// How: Go programs are multithreaded and setns(2) into a user namespace
// refuses multithreaded callers, so both work through a short-lived
// helper, this binary re-executed as "labd-userns-helper". Create clones
// it straight into the new namespaces (SysProcAttr, which also writes the
// id maps); for NewNetNS a C constructor (helper.c) joins the user
// namespace and unshares a network namespace before the Go runtime
// starts. labd bind-mounts the helper's namespace files onto the pins,
// then the helper exits. Any binary that links this package (labd, test
// binaries) can do this; nothing is left running, and the helper is killed
// if labd dies meanwhile.
//
// Pins are bind mounts in labd's mount namespace. Put them in a directory
// that is a shared mount point (as package network does for its netns
// files), so that mount namespaces cloned later do not keep copies.
package userns
