package web

import (
	"context"
	"fmt"
	"time"

	"github.com/labd/labd/labs"
	"github.com/labd/labd/sandbox"
)

// seedTimeout bounds copying a lab's starter files into a new workspace.
const seedTimeout = time.Minute

// seedWorkspace copies lab's starter files (labs.StarterDir) into sb's new
// workspace.
func seedWorkspace(ctx context.Context, sb sandbox.Sandbox, lab *labs.Lab) error {
	ctx, cancel := context.WithTimeout(ctx, seedTimeout)
	defer cancel()
	if err := sandbox.Unpack(ctx, sb, lab.WriteStarter); err != nil {
		return fmt.Errorf("starter files of %s: %w", lab.ID, err)
	}
	return nil
}
