package sandbox

import (
	"context"
	"io"
)

// PTY is a terminal's master side. It has the same method set as
// web/terminal.PTY so a Sandbox's terminal can be handed to a terminal.Hub
// without an adapter.
type PTY interface {
	io.ReadWriter
	Resize(cols, rows uint16) error
}

// Sandbox is one learner's isolated shell environment.
type Sandbox interface {
	ID() string
	Hostname() string
	// Workspace is the host path of the learner's workspace, which is the
	// shell's working directory and HOME.
	Workspace() string
	// Terminal is the login shell's pty. It stays readable after the shell
	// exits until the remaining output is drained, and is closed by Destroy.
	Terminal() PTY
	// Exec runs a command beside the shell (same namespaces, cwd = the
	// workspace unless e.Dir says otherwise) and waits for it. A non-zero
	// exit status is reported in exitCode with a nil error; err is for
	// failures to run at all and for ctx ending (the command is killed).
	Exec(ctx context.Context, e ExecSpec) (exitCode int, err error)
	// Done is closed when the shell has ended, whether it exited or the
	// sandbox was destroyed.
	Done() <-chan struct{}
	// Destroy kills everything running in the sandbox and releases its
	// resources (namespaces, pty). The workspace on disk is kept. Destroy
	// is idempotent and safe to call concurrently; Done is closed once it
	// returns.
	Destroy(ctx context.Context) error
}

// ExecSpec describes a command for Sandbox.Exec.
type ExecSpec struct {
	Cmd []string // argv; Cmd[0] is looked up in the sandbox's PATH
	Env []string // added to the sandbox's environment ("KEY=value")
	// Dir is the working directory; relative paths are taken from the
	// workspace, empty means the workspace.
	Dir    string
	Stdin  io.Reader // nil means empty input
	Stdout io.Writer // nil discards
	Stderr io.Writer // nil discards
}

// Spec is what a Provider needs to create a sandbox.
type Spec struct {
	ID        string
	Hostname  string
	Workspace string   // existing host directory, absolute
	Env       []string // extra environment for the shell and Exec ("KEY=value")
	// Resources is what the lab asks its sandbox to get instead of the
	// provider's defaults (zero fields: the defaults), up to the
	// provider's maximum.
	Resources Resources
	// Keep lists further host paths (files or directories, e.g. the
	// engine's socket) the sandbox must see at the same path, even where
	// the provider hides their surroundings (nsbox's private /tmp).
	Keep []string
}

// Resources are limits of a sandbox as a whole (its shell, containers and
// build steps together). Zero means the provider's default.
type Resources struct {
	Memory int64 // bytes
	Pids   int64 // processes and threads
	Disk   int64 // bytes: the sandbox's disk quota
}

// Provider creates sandboxes. Implementations must make Done close once
// Destroy has been called, since the Manager relies on it to notice ends.
type Provider interface {
	Create(ctx context.Context, s Spec) (Sandbox, error)
}
