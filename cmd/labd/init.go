package main

// libcontainer starts a container by re-executing this binary as
// "labd init": the C constructor of libcontainer/nsenter sets up the
// namespaces before the Go runtime starts, then package runtime's init
// function calls libcontainer.Init, before main dispatches any command
// (runc's own main package does the same from its init). A registered
// "init" command would come too late: other packages' init functions would
// already have run in the container's init process. Importing the package
// here keeps the hook in the binary even before the engine is wired in.
import _ "github.com/labd/labd/sandbox/engine/runtime"
