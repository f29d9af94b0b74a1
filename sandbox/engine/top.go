package engine

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/labd/labd/sandbox/engine/api"
	"github.com/labd/labd/sandbox/engine/ctr"
)

// ContainerTop implements api.ContainerBackend as dockerd does: the host's
// ps with psArgs (default -ef), keeping the rows of the container's pids.
func (e *Engine) ContainerTop(ctx context.Context, name, psArgs string) (*container.TopResponse, error) {
	if psArgs == "" {
		psArgs = "-ef"
	}
	c, err := e.ctrs.Get(name)
	if err != nil {
		return nil, err
	}
	c.Lock()
	rc := c.RuntimeLocked()
	id := c.Meta.ID
	c.Unlock()
	if rc == nil {
		return nil, ctr.NotRunningError(id)
	}
	pids, err := rc.Processes()
	if err != nil {
		return nil, err
	}
	out, err := exec.CommandContext(ctx, "ps", strings.Fields(psArgs)...).Output()
	if err != nil {
		return nil, api.InvalidParameterError(fmt.Errorf("Error running ps: %w", err))
	}
	return parsePS(out, pids)
}

func parsePS(out []byte, pids []int) (*container.TopResponse, error) {
	lines := strings.Split(string(bytes.TrimRight(out, "\n")), "\n")
	if len(lines) == 0 {
		return nil, fmt.Errorf("no output from ps")
	}
	titles := strings.Fields(lines[0])
	pidIndex := -1
	for i, t := range titles {
		if t == "PID" {
			pidIndex = i
			break
		}
	}
	if pidIndex == -1 {
		return nil, api.InvalidParameterError(fmt.Errorf("Couldn't find PID field in ps output"))
	}
	want := map[int]bool{}
	for _, p := range pids {
		want[p] = true
	}
	resp := &container.TopResponse{Titles: titles, Processes: [][]string{}}
	for _, line := range lines[1:] {
		if strings.TrimSpace(line) == "" {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) <= pidIndex {
			continue
		}
		p, err := strconv.Atoi(fields[pidIndex])
		if err != nil || !want[p] {
			continue
		}
		// The last column (the command) keeps its spaces.
		proc := fields[:len(titles)-1]
		proc = append(proc, strings.Join(fields[len(titles)-1:], " "))
		resp.Processes = append(resp.Processes, proc)
	}
	return resp, nil
}
