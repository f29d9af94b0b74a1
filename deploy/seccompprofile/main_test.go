package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/labd/labd/sandbox/engine/runtime"
	dockerseccomp "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// labdContainerCaps is the capability set the README's docker run line
// gives labd's container: Docker's default without NET_RAW,
// NET_BIND_SERVICE and AUDIT_WRITE, plus SYS_ADMIN and SYS_PTRACE.
func labdContainerCaps() []string {
	var caps []string
	for _, c := range runtime.DefaultCapabilities {
		switch c {
		case "CAP_NET_RAW", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE":
		default:
			caps = append(caps, c)
		}
	}
	return append(caps, "CAP_SYS_ADMIN", "CAP_SYS_PTRACE")
}

// allowed reports whether the resolved profile lets name through without
// conditions on its arguments.
func allowed(p *specs.LinuxSeccomp, name string) bool {
	for _, s := range p.Syscalls {
		if s.Action == specs.ActAllow && len(s.Args) == 0 && slices.Contains(s.Names, name) {
			return true
		}
	}
	return false
}

func TestProfile(t *testing.T) {
	var b bytes.Buffer
	if err := write(&b); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		caps   []string
		allow  []string
		refuse []string
	}{
		{
			name: "labd's container",
			caps: labdContainerCaps(),
			// What runc needs (the additions), what labd's mounts need
			// (Docker's profile gives them to CAP_SYS_ADMIN), and the
			// everyday calls.
			allow:  []string{"keyctl", "pivot_root", "mount", "umount2", "mount_setattr", "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "unshare", "setns", "clone3", "ptrace", "openat2", "read"},
			refuse: []string{"kexec_load", "init_module", "finit_module", "delete_module", "add_key", "request_key", "reboot", "swapon", "acct", "userfaultfd", "io_uring_setup"},
		},
		{
			// Without CAP_SYS_ADMIN the additions are not there: they are
			// for labd's runtime only, not for any container the profile
			// is given to by mistake.
			name:   "Docker's default capabilities",
			caps:   runtime.DefaultCapabilities,
			allow:  []string{"read", "openat2"},
			refuse: []string{"keyctl", "pivot_root", "mount", "unshare", "setns", "userfaultfd"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: tc.caps, Effective: tc.caps, Permitted: tc.caps}}}
			p, err := dockerseccomp.LoadProfile(b.String(), spec)
			if err != nil {
				t.Fatalf("docker cannot load the profile: %v", err)
			}
			if p.DefaultAction != specs.ActErrno {
				t.Errorf("default action %s, want %s", p.DefaultAction, specs.ActErrno)
			}
			for _, s := range tc.allow {
				if !allowed(p, s) {
					t.Errorf("%s refused, want allowed", s)
				}
			}
			for _, s := range tc.refuse {
				if allowed(p, s) {
					t.Errorf("%s allowed, want refused", s)
				}
			}
		})
	}
}

// TestRunWritesFile: -o writes the same profile as stdout gets, and a
// file that cannot be made is an error naming it.
func TestRunWritesFile(t *testing.T) {
	var want bytes.Buffer
	if err := write(&want); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "labd-seccomp.json")
	if err := run(out); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Error("-o wrote a different profile than stdout gets")
	}
	bad := filepath.Join(t.TempDir(), "missing", "labd-seccomp.json")
	if err := run(bad); err == nil || !bytes.Contains([]byte(err.Error()), []byte(bad)) {
		t.Errorf("run(%s) = %v, want an error naming the file", bad, err)
	}
}
