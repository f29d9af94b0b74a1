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
)

var validVolumeName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

// volumeDir is where a volume's data lives: <data>/engine/volumes/<view>/<name>/_data.
func (e *Engine) volumeDir(name string) string {
	return filepath.Join(e.shared.dir, "volumes", e.name, name, "_data")
}

func mountTypeAPI(t string) mount.Type { return mount.Type(t) }

func mountPropagation(p string) mount.Propagation { return mount.Propagation(p) }

// setupMounts turns Binds, Mounts, Tmpfs and the image's VOLUMEs into the
// container's mount points, creating volumes on demand.
func (e *Engine) setupMounts(cfg *container.Config, hc *container.HostConfig) ([]mountPoint, error) {
	var out []mountPoint
	seen := map[string]bool{}
	add := func(m mountPoint) error {
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
		m := mountPoint{Destination: mm.Target, RW: !mm.ReadOnly, Type: string(mm.Type)}
		switch mm.Type {
		case mount.TypeVolume:
			name := mm.Source
			if name == "" {
				name, m.Anonymous = newID(), true
			}
			if err := e.ensureVolume(name); err != nil {
				return nil, err
			}
			m.Name, m.Source = name, e.volumeDir(name)
		case mount.TypeBind:
			src, err := e.checkBind(mm.Source)
			if err != nil {
				return nil, err
			}
			m.Source, m.Propagation = src, "rprivate"
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
		if err := add(mountPoint{Type: "tmpfs", Source: "tmpfs", Destination: dst, RW: true}); err != nil {
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
		name := newID()
		if err := e.ensureVolume(name); err != nil {
			return nil, err
		}
		if err := add(mountPoint{Type: "volume", Name: name, Source: e.volumeDir(name), Destination: v, RW: true, Anonymous: true}); err != nil {
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

func (e *Engine) checkBind(src string) (string, error) {
	if !filepath.IsAbs(src) {
		return "", api.InvalidParameterError(fmt.Errorf("invalid mount config for type \"bind\": invalid mount path: '%s' mount path must be absolute", src))
	}
	if e.allowBind == nil {
		return "", api.ForbiddenError(fmt.Errorf("bind mounts are not allowed: %s", src))
	}
	real, err := e.allowBind(src)
	if err != nil {
		return "", api.ForbiddenError(fmt.Errorf("bind mount of %s is not allowed: %w", src, err))
	}
	if _, err := os.Stat(real); errors.Is(err, os.ErrNotExist) {
		// dockerd creates a missing bind source for -v.
		if err := os.MkdirAll(real, 0o755); err != nil {
			return "", fmt.Errorf("create bind source %s: %w", src, err)
		}
	}
	return real, nil
}

// parseBind parses one -v value: "name:/dst[:mode]", "/src:/dst[:mode]" or "/dst".
func (e *Engine) parseBind(spec string) (mountPoint, error) {
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
		return mountPoint{}, api.InvalidParameterError(fmt.Errorf("invalid volume specification: '%s'", spec))
	}
	rw := true
	for _, o := range strings.Split(mode, ",") {
		switch o {
		case "ro":
			rw = false
		case "", "rw", "z", "Z", "private", "rprivate", "shared", "rshared", "slave", "rslave", "nocopy":
		default:
			return mountPoint{}, api.InvalidParameterError(fmt.Errorf("invalid mode: %s", mode))
		}
	}
	m := mountPoint{Destination: dst, RW: rw, Mode: mode}
	switch {
	case src == "":
		name := newID()
		if err := e.ensureVolume(name); err != nil {
			return mountPoint{}, err
		}
		m.Type, m.Name, m.Source, m.Anonymous = "volume", name, e.volumeDir(name), true
	case filepath.IsAbs(src):
		real, err := e.checkBind(src)
		if err != nil {
			return mountPoint{}, err
		}
		m.Type, m.Source, m.Propagation = "bind", real, "rprivate"
	default:
		if err := e.ensureVolume(src); err != nil {
			return mountPoint{}, err
		}
		m.Type, m.Name, m.Source = "volume", src, e.volumeDir(src)
		if m.Mode == "" {
			m.Mode = "z"
		}
	}
	return m, nil
}
