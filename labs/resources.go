package labs

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/docker/go-units"
	"go.yaml.in/yaml/v3"
)

// Resources are what a lab asks its sandboxes to get instead of the
// server's defaults ("resources:" in the front matter); zero fields keep
// the defaults. The server caps them at its maximum (labd serve
// --sandbox-max-memory, --sandbox-max-pids).
type Resources struct {
	Memory int64 // bytes: the sandbox's shell, containers and builds together
	Pids   int64 // processes and threads
	Disk   int64 // bytes: the sandbox's disk quota (workspace, containers, volumes, images it built)
}

// Smallest values a lab may ask for: below them the shell, the docker CLI
// and one container do not fit.
const (
	MinMemory int64 = 64 << 20
	MinPids   int64 = 64
	MinDisk   int64 = 64 << 20
)

const resourcesForm = `front matter field "resources" must be a mapping such as {memory: 2g, pids: 2048}`

// resources reads the "resources" mapping. off turns a YAML line into a
// line of lab.md.
func (p *parser) resources(v *yaml.Node, line, off int) Resources {
	var r Resources
	if v.Kind != yaml.MappingNode {
		p.problem(line, resourcesForm)
		return r
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, val := v.Content[i], v.Content[i+1]
		l := off + k.Line
		if seen[k.Value] {
			p.problem(l, fmt.Sprintf("front matter field \"resources\" has %q twice", k.Value))
			continue
		}
		seen[k.Value] = true
		if val.Kind != yaml.ScalarNode || val.Tag == "!!null" || strings.TrimSpace(val.Value) == "" {
			p.problem(l, fmt.Sprintf("front matter field \"resources\": %s needs a value, like %s", k.Value, example(k.Value)))
			continue
		}
		s := strings.TrimSpace(val.Value)
		switch k.Value {
		case "memory":
			n, err := units.RAMInBytes(s)
			switch {
			case err != nil || n <= 0:
				p.problem(l, fmt.Sprintf("front matter field \"resources\": memory %q is not a size such as 2g or 512m", s))
			case n < MinMemory:
				p.problem(l, fmt.Sprintf("front matter field \"resources\": memory %s is below %s, too little for a sandbox's shell and containers", s, units.BytesSize(float64(MinMemory))))
			default:
				r.Memory = n
			}
		case "pids":
			n, err := strconv.ParseInt(s, 10, 64)
			switch {
			case err != nil || n <= 0:
				p.problem(l, fmt.Sprintf("front matter field \"resources\": pids %q is not a whole number of processes", s))
			case n < MinPids:
				p.problem(l, fmt.Sprintf("front matter field \"resources\": pids %d is below %d, too few for a shell, docker and a container", n, MinPids))
			default:
				r.Pids = n
			}
		case "disk":
			n, err := units.RAMInBytes(s)
			switch {
			case err != nil || n <= 0:
				p.problem(l, fmt.Sprintf("front matter field \"resources\": disk %q is not a size such as 4g or 512m", s))
			case n < MinDisk:
				p.problem(l, fmt.Sprintf("front matter field \"resources\": disk %s is below %s, too little for a workspace and one image", s, units.BytesSize(float64(MinDisk))))
			default:
				r.Disk = n
			}
		default:
			p.problem(l, fmt.Sprintf("front matter field \"resources\": unknown key %q (known: memory, pids, disk)", k.Value))
		}
	}
	return r
}

func example(key string) string {
	switch key {
	case "pids":
		return "pids: 2048"
	case "disk":
		return "disk: 4g"
	}
	return "memory: 2g"
}
