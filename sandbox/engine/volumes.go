package engine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/labd/labd/sandbox/engine/api"
	"github.com/labd/labd/sandbox/engine/beneath"
	"github.com/labd/labd/sandbox/engine/ctr"
	"github.com/labd/labd/sandbox/engine/runtime"
)

var validVolumeName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

// volumeDir is where a volume's data lives: <data>/engine/volumes/<view>/<name>/_data.
func (e *Engine) volumeDir(name string) string {
	return filepath.Join(e.volumesDir(), name, "_data")
}

func mountTypeAPI(t string) mount.Type { return mount.Type(t) }

func mountPropagation(p string) mount.Propagation { return mount.Propagation(p) }

// setupMounts turns Binds, Mounts, Tmpfs and the image's VOLUMEs into the
// container's mount points, creating volumes on demand.
func (e *Engine) setupMounts(cfg *container.Config, hc *container.HostConfig) ([]ctr.MountPoint, error) {
	var out []ctr.MountPoint
	seen := map[string]bool{}
	add := func(m ctr.MountPoint) error {
		m.Destination = filepath.Clean(m.Destination)
		if !filepath.IsAbs(m.Destination) {
			return api.InvalidParameterError(fmt.Errorf("invalid mount config for type %q: invalid mount path: '%s' mount path must be absolute", m.Type, m.Destination))
		}
		if seen[m.Destination] {
			return api.InvalidParameterError(fmt.Errorf("Duplicate mount point: %s", m.Destination))
		}
		seen[m.Destination] = true
		out = append(out, m)
		return nil
	}
	for _, b := range hc.Binds {
		m, err := e.parseBind(b)
		if err != nil {
			return nil, err
		}
		if err := add(m); err != nil {
			return nil, err
		}
	}
	for _, mm := range hc.Mounts {
		m := ctr.MountPoint{Destination: mm.Target, RW: !mm.ReadOnly, Type: string(mm.Type)}
		switch mm.Type {
		case mount.TypeVolume:
			name := mm.Source
			if name == "" {
				name, m.Anonymous = ctr.NewID(), true
			}
			if err := e.ensureVolume(name); err != nil {
				return nil, err
			}
			m.Name, m.Source = name, e.volumeDir(name)
		case mount.TypeBind:
			bm, err := e.bindMount(mm.Source, false)
			if err != nil {
				return nil, err
			}
			bm.Destination, bm.RW = m.Destination, m.RW
			m = bm
		case mount.TypeTmpfs:
			m.Source = "tmpfs"
		default:
			return nil, api.InvalidParameterError(fmt.Errorf("mount type %q is not supported", mm.Type))
		}
		if err := add(m); err != nil {
			return nil, err
		}
	}
	for dst := range hc.Tmpfs {
		if err := add(ctr.MountPoint{Type: "tmpfs", Source: "tmpfs", Destination: dst, RW: true}); err != nil {
			return nil, err
		}
	}
	// Anonymous volumes for the image's VOLUMEs nothing else covers.
	var vols []string
	for v := range cfg.Volumes {
		vols = append(vols, v)
	}
	sort.Strings(vols)
	for _, v := range vols {
		if seen[filepath.Clean(v)] {
			continue
		}
		name := ctr.NewID()
		if err := e.ensureVolume(name); err != nil {
			return nil, err
		}
		if err := add(ctr.MountPoint{Type: "volume", Name: name, Source: e.volumeDir(name), Destination: v, RW: true, Anonymous: true}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (e *Engine) ensureVolume(name string) error {
	if !validVolumeName.MatchString(name) {
		return api.InvalidParameterError(fmt.Errorf("%q includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path", name))
	}
	if err := os.MkdirAll(e.volumeDir(name), 0o755); err != nil {
		return fmt.Errorf("create volume %s: %w", name, err)
	}
	return nil
}

// bindMount checks a bind source against the policy and makes the mount
// point: the source stays a path inside the policy's root, resolved
// beneath it at every use. create is `-v`'s rule (a missing source is made
// as a directory, now and at each start); `--mount` wants it to exist.
func (e *Engine) bindMount(src string, create bool) (ctr.MountPoint, error) {
	if !filepath.IsAbs(src) {
		return ctr.MountPoint{}, api.InvalidParameterError(fmt.Errorf("invalid mount config for type \"bind\": invalid mount path: '%s' mount path must be absolute", src))
	}
	if e.allowBind == nil {
		return ctr.MountPoint{}, api.ForbiddenError(fmt.Errorf("bind mounts are not allowed: %s", src))
	}
	root, rel, err := e.allowBind(src)
	if err != nil {
		return ctr.MountPoint{}, api.ForbiddenError(fmt.Errorf("bind mount of %s is not allowed: %w", src, err))
	}
	f, err := beneath.Open(root, rel)
	if err != nil && create && errors.Is(err, os.ErrNotExist) {
		if err := beneath.MkdirAll(root, rel); err != nil {
			return ctr.MountPoint{}, fmt.Errorf("create bind source %s: %w", src, err)
		}
		f, err = beneath.Open(root, rel)
	}
	if err != nil {
		return ctr.MountPoint{}, api.InvalidParameterError(fmt.Errorf("invalid mount config for type \"bind\": bind source path does not exist: %s", src))
	}
	f.Close()
	return ctr.MountPoint{
		Type: "bind", Source: filepath.Join(root, rel), Root: root, Rel: rel,
		Requested: src, Create: create, Propagation: "rprivate",
	}, nil
}

// runtimeMount is how the runtime gets a mount point: bind sources as a
// root and a path beneath it. A bind recorded before sources were kept
// that way is checked against the policy again.
func (e *Engine) runtimeMount(m ctr.MountPoint) (runtime.Mount, error) {
	rm := runtime.Mount{Source: m.Source, Destination: m.Destination, Type: mountType(m.Type), ReadOnly: !m.RW, Options: mountOptions(m)}
	// Under a user namespace, binds and volumes are idmapped: on disk they
	// keep container ids, so root in the container owns what host root
	// owns there (the workspace, a volume labd made).
	rm.IDMap = e.userns != nil && (m.Type == "bind" || m.Type == "volume")
	if m.Type != "bind" {
		return rm, nil
	}
	root, rel, shown := m.Root, m.Rel, m.Requested
	if root == "" {
		if e.allowBind == nil {
			return rm, api.ForbiddenError(fmt.Errorf("bind mounts are not allowed: %s", m.Source))
		}
		var err error
		if root, rel, err = e.allowBind(m.Source); err != nil {
			return rm, api.ForbiddenError(fmt.Errorf("bind mount of %s is not allowed (recreate the container): %w", m.Source, err))
		}
		shown = m.Source
	}
	rm.Source, rm.Beneath, rm.Create, rm.Shown = rel, root, m.Create, shown
	return rm, nil
}

// parseBind parses one -v value: "name:/dst[:mode]", "/src:/dst[:mode]" or "/dst".
func (e *Engine) parseBind(spec string) (ctr.MountPoint, error) {
	parts := strings.Split(spec, ":")
	var src, dst, mode string
	switch len(parts) {
	case 1:
		dst = parts[0]
	case 2:
		src, dst = parts[0], parts[1]
	case 3:
		src, dst, mode = parts[0], parts[1], parts[2]
	default:
		return ctr.MountPoint{}, api.InvalidParameterError(fmt.Errorf("invalid volume specification: '%s'", spec))
	}
	rw := true
	for _, o := range strings.Split(mode, ",") {
		switch o {
		case "ro":
			rw = false
		case "", "rw", "z", "Z", "private", "rprivate", "shared", "rshared", "slave", "rslave", "nocopy":
		default:
			return ctr.MountPoint{}, api.InvalidParameterError(fmt.Errorf("invalid mode: %s", mode))
		}
	}
	m := ctr.MountPoint{Destination: dst, RW: rw, Mode: mode}
	switch {
	case src == "":
		name := ctr.NewID()
		if err := e.ensureVolume(name); err != nil {
			return ctr.MountPoint{}, err
		}
		m.Type, m.Name, m.Source, m.Anonymous = "volume", name, e.volumeDir(name), true
	case filepath.IsAbs(src):
		bm, err := e.bindMount(src, true)
		if err != nil {
			return ctr.MountPoint{}, err
		}
		bm.Destination, bm.RW, bm.Mode = m.Destination, m.RW, m.Mode
		m = bm
	default:
		if err := e.ensureVolume(src); err != nil {
			return ctr.MountPoint{}, err
		}
		m.Type, m.Name, m.Source = "volume", src, e.volumeDir(src)
		if m.Mode == "" {
			m.Mode = "z"
		}
	}
	return m, nil
}
