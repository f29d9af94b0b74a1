// Package nsbox is the first-stage sandbox provider: each sandbox is a
// login shell on a pty, running in its own mount, pid, uts, ipc and network
// namespaces.
//
// The namespaces are created by re-executing the current binary (by
// default /proc/self/exe) with the hidden subcommand "__nsinit" and clone
// flags for the new namespaces. That process becomes PID 1 of the sandbox
// (see Init): it makes mounts private, mounts a fresh /proc, /sys and a
// private tmpfs on /tmp, sets the hostname, brings up lo, then runs the
// shell as its child and reaps orphans until the shell exits.
//
//	labd ──clone(NEWNS|NEWPID|NEWUTS|NEWIPC|NEWNET)──▶ labd __nsinit (pid 1)
//	  │ pty master                                         └─▶ bash --login (session leader, pty slave)
//	  └─ Exec: nsenter --target <init> ... ───────────────────▶ grader commands (same namespaces)
//
// The network namespace has only lo: nothing inside reaches the host's
// network. The filesystem is otherwise the host's, so this stage trusts its
// single user. Creating sandboxes needs root (CAP_SYS_ADMIN).
//
// A binary using this package must call Reexec (or Init for "__nsinit")
// before anything else; test binaries do so in TestMain.
package nsbox
