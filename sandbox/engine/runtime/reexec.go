package runtime

import (
	"os"
	goruntime "runtime"

	"github.com/opencontainers/runc/libcontainer"
	// The C constructor in nsenter runs before the Go runtime starts: in a
	// re-executed "init" it joins or creates the container's namespaces
	// (which a multi-threaded Go process cannot do); in any other process it
	// returns at once.
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
	// Without it the cgroup managers cannot apply device rules and refuse
	// configurations that have them (every container here has them).
	_ "github.com/opencontainers/cgroups/devices"
)

// initArg is the argument libcontainer re-executes the binary with.
const initArg = "init"

// The second stage of a container start runs in the freshly executed binary
// and must take over before anything else (runc does this from its main
// package's init). Checking the environment too keeps a command line that
// happens to start with "init" from being hijacked.
func init() {
	if isInit() {
		libcontainer.Init() // never returns
	}
	// libcontainer runs helper goroutines that lock their thread and setns
	// into the container's mount namespace, relying on the thread dying
	// when the goroutine ends. The main thread cannot die: Go parks it
	// instead, still in the container's namespace, which keeps that
	// namespace and its overlay mount alive (and makes /proc/self show it).
	// Binding the main goroutine to the main thread keeps every other
	// goroutine off it.
	goruntime.LockOSThread()
}

// isInit reports whether this process is libcontainer's container init (the
// re-executed "<argv0> init").
func isInit() bool {
	return len(os.Args) > 1 && os.Args[1] == initArg && os.Getenv("_LIBCONTAINER_INITPIPE") != ""
}
