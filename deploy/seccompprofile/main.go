// Command seccompprofile prints the seccomp profile labd's container runs
// with (`docker run --security-opt seccomp=FILE`; `make image` writes it to
// bin/labd-seccomp.json and into the image as /usr/share/labd/seccomp.json).
//
// It is Docker's default profile, taken from the
// github.com/moby/profiles/seccomp version in go.mod (the one labd applies
// to learners' containers), plus the system calls labd's own container
// runtime makes when it starts a learner's container, which Docker's
// profile refuses. Those are allowed only to a container holding
// CAP_SYS_ADMIN, as the profile already does for mount, unshare and setns.
// Everything else Docker refuses (userfaultfd, kexec_load, add_key, ...)
// stays refused to labd too; learners' containers get Docker's default
// profile from labd on top of this one.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"

	dockerseccomp "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// runtimeSyscalls are what runc's libcontainer, inside labd, needs beyond
// Docker's default profile to start a container:
var runtimeSyscalls = []string{
	// every container gets a session keyring of its own
	// (KEYCTL_JOIN_SESSION_KEYRING); refused, runc fails with "unable to
	// join session keyring: unable to create session key: operation not
	// permitted"
	"keyctl",
	// the container is jailed in its root file system with pivot_root;
	// refused, runc fails with "error jailing process inside rootfs:
	// pivot_root .: operation not permitted"
	"pivot_root",
}

// profile returns the profile, for docker's --security-opt seccomp=FILE.
func profile() *dockerseccomp.Seccomp {
	p := dockerseccomp.DefaultProfile()
	p.Syscalls = append(p.Syscalls, &dockerseccomp.Syscall{
		LinuxSyscall: specs.LinuxSyscall{Names: runtimeSyscalls, Action: specs.ActAllow},
		Comment:      "labd: runc's libcontainer starting learners' containers",
		Includes:     &dockerseccomp.Filter{Caps: []string{"CAP_SYS_ADMIN"}},
	})
	return p
}

func write(w io.Writer) error {
	b, err := json.MarshalIndent(profile(), "", "\t")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

func main() {
	out := flag.String("o", "", "write the profile to this file instead of stdout")
	flag.Parse()
	if flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: seccompprofile [-o FILE]")
		os.Exit(2)
	}
	if err := run(*out); err != nil {
		fmt.Fprintln(os.Stderr, "seccompprofile:", err)
		os.Exit(1)
	}
}

func run(out string) error {
	if out == "" {
		return write(os.Stdout)
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
