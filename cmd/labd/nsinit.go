package main

import (
	"context"
	"io"

	"github.com/labd/labd/sandbox/nsbox"
)

// The sandbox provider re-executes labd under this hidden name to become a
// sandbox's namespace init (pid 1); see package nsbox.
func init() {
	register(nsbox.InitCommand, command{
		summary: "namespace init of a sandbox (internal)",
		hidden:  true,
		run: func(_ context.Context, args []string, _, _ io.Writer) error {
			if code := nsbox.Init(args); code != 0 {
				return exitError{code}
			}
			return nil
		},
	})
}
