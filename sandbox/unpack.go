package sandbox

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
)

// Unpack extracts the tar stream that write writes (a lab's starter
// files, labs.Lab.WriteStarter) into sb's workspace, keeping whatever is
// already there. tar runs inside the sandbox as its root, so the files
// belong to the learner and the stream's paths cannot reach past the
// sandbox's own view.
func Unpack(ctx context.Context, sb Sandbox, write func(io.Writer) error) error {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(write(pw)) }()
	defer pr.Close()
	var out bytes.Buffer
	code, err := sb.Exec(ctx, ExecSpec{
		Cmd:    []string{"tar", "-x", "--skip-old-files", "-f", "-"},
		Stdin:  pr,
		Stdout: &out, Stderr: &out,
	})
	if err == nil && code != 0 {
		err = fmt.Errorf("tar exited %d: %s", code, strings.TrimSpace(out.String()))
	}
	if err != nil {
		return fmt.Errorf("unpack into the workspace: %w", err)
	}
	return nil
}
