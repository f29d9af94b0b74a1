package runtime

import (
	"fmt"

	dockerseccomp "github.com/moby/profiles/seccomp"
	"github.com/opencontainers/runc/libcontainer/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// SeccompSupported reports whether this binary can apply seccomp profiles:
// it must be built with `-tags seccomp` (cgo, libseccomp).
func SeccompSupported() bool { return seccomp.Enabled }

// DefaultSeccompProfile returns Docker's default seccomp profile as dockerd
// computes it for a container with DefaultCapabilities, for
// Options.Seccomp.
func DefaultSeccompProfile() (*specs.LinuxSeccomp, error) {
	caps := append([]string(nil), DefaultCapabilities...)
	p, err := dockerseccomp.GetDefaultProfile(&specs.Spec{
		Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps}},
	})
	if err != nil {
		return nil, fmt.Errorf("docker's default seccomp profile: %w", err)
	}
	return p, nil
}
