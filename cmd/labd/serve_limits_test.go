package main

import (
	"io"
	"strings"
	"testing"

	"github.com/labd/labd/sandbox/engine/api"
	"github.com/labd/labd/sandbox/enginebox"
)

// TestServeLimitFlags: the limits per sandbox come from flags, else the
// environment, else the defaults; "none" lifts one; a malformed value or
// a default above its maximum stops labd naming the flag.
func TestServeLimitFlags(t *testing.T) {
	defaults := serveLimits{
		sandbox: enginebox.Limits{Memory: 1 << 30, MaxMemory: 4 << 30, Pids: 512, MaxPids: 4096, CPUShares: 1024, Builds: 2, Execs: 16, Ports: 64,
			Disk: 2 << 30, MaxDisk: 16 << 30, Logs: 30 << 20},
		maxContext: 1 << 30, maxLoad: 1 << 30, maxCopy: 1 << 30, maxJSONBody: 1 << 20,
	}
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		want    func(*serveLimits)
		wantErr string
	}{
		{name: "defaults"},
		{name: "flags", args: []string{"--sandbox-memory", "2g", "--sandbox-pids", "1024", "--sandbox-cpu-shares", "512", "--max-builds", "1", "--max-execs", "4", "--max-ports", "8", "--max-context", "100m", "--max-load", "2g", "--max-copy", "10m", "--max-request-body", "256k"},
			want: func(l *serveLimits) {
				l.sandbox.Memory, l.sandbox.Pids, l.sandbox.CPUShares = 2<<30, 1024, 512
				l.sandbox.Builds, l.sandbox.Execs, l.sandbox.Ports = 1, 4, 8
				l.maxContext, l.maxLoad, l.maxCopy, l.maxJSONBody = 100<<20, 2<<30, 10<<20, 256<<10
			}},
		{name: "env", env: map[string]string{"LABD_SANDBOX_MEMORY": "512m", "LABD_SANDBOX_MAX_MEMORY": "8g", "LABD_MAX_PORTS": "none"},
			want: func(l *serveLimits) { l.sandbox.Memory, l.sandbox.MaxMemory, l.sandbox.Ports = 512<<20, 8<<30, -1 }},
		{name: "flag over env", env: map[string]string{"LABD_SANDBOX_PIDS": "100"}, args: []string{"--sandbox-pids", "200"},
			want: func(l *serveLimits) { l.sandbox.Pids = 200 }},
		{name: "none", args: []string{"--sandbox-memory", "none", "--sandbox-max-memory", "none", "--sandbox-pids", "none", "--sandbox-max-pids", "none", "--max-builds", "none", "--max-execs", "0"},
			want: func(l *serveLimits) {
				l.sandbox.Memory, l.sandbox.MaxMemory, l.sandbox.Pids, l.sandbox.MaxPids = -1, -1, -1, -1
				l.sandbox.Builds, l.sandbox.Execs = -1, -1
			}},
		{name: "bad size", args: []string{"--sandbox-memory", "lots"}, wantErr: `--sandbox-memory "lots": want a size such as 1g or 512m`},
		{name: "bad env size", env: map[string]string{"LABD_MAX_LOAD": "big"}, wantErr: `--max-load "big": want a size such as 1g or 512m`},
		{name: "too little memory", args: []string{"--sandbox-memory", "16m"}, wantErr: `--sandbox-memory 16m: below 64MiB`},
		{name: "too few pids", args: []string{"--sandbox-pids", "10"}, wantErr: `--sandbox-pids "10": want a whole number from 64 or "none"`},
		{name: "cpu shares range", args: []string{"--sandbox-cpu-shares", "300000"}, wantErr: `--sandbox-cpu-shares "300000": want a whole number from 2 to 262144`},
		{name: "no cpu none", args: []string{"--sandbox-cpu-shares", "none"}, wantErr: `--sandbox-cpu-shares "none": want a whole number from 2 to 262144`},
		{name: "ports range", args: []string{"--max-ports", "70000"}, wantErr: `--max-ports "70000": want a whole number from 1 to 65535 or "none"`},
		{name: "tiny request body", args: []string{"--max-request-body", "1k"}, wantErr: `--max-request-body 1k: below 64KiB`},
		{name: "memory above max", args: []string{"--sandbox-memory", "8g"}, wantErr: `--sandbox-memory 8g is above --sandbox-max-memory 4g`},
		{name: "no memory limit under a max", args: []string{"--sandbox-memory", "none"}, wantErr: `--sandbox-memory none is above --sandbox-max-memory 4g`},
		{name: "disk", env: map[string]string{"LABD_SANDBOX_DISK": "1g"}, args: []string{"--sandbox-max-disk", "none", "--max-container-log", "10m"},
			want: func(l *serveLimits) { l.sandbox.Disk, l.sandbox.MaxDisk, l.sandbox.Logs = 1<<30, -1, 10<<20 }},
		{name: "disk above max", args: []string{"--sandbox-disk", "20g"}, wantErr: `--sandbox-disk 20g is above --sandbox-max-disk 16g`},
		{name: "too little disk", args: []string{"--sandbox-disk", "1m"}, wantErr: `--sandbox-disk 1m: below 64MiB`},
		{name: "pids above max", args: []string{"--sandbox-pids", "5000"}, wantErr: `--sandbox-pids 5000 is above --sandbox-max-pids 4096`},
	}
	envs := []string{"LABD_SANDBOX_MEMORY", "LABD_SANDBOX_MAX_MEMORY", "LABD_SANDBOX_PIDS", "LABD_SANDBOX_MAX_PIDS", "LABD_SANDBOX_CPU_SHARES",
		"LABD_MAX_BUILDS", "LABD_MAX_EXECS", "LABD_MAX_PORTS", "LABD_MAX_CONTEXT", "LABD_MAX_LOAD", "LABD_MAX_COPY", "LABD_MAX_REQUEST_BODY",
		"LABD_SANDBOX_DISK", "LABD_SANDBOX_MAX_DISK", "LABD_MAX_CONTAINER_LOG"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range envs {
				t.Setenv(k, tt.env[k])
			}
			c, err := parseServeFlags(tt.args, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := defaults
			if tt.want != nil {
				tt.want(&want)
			}
			if c.limits != want {
				t.Errorf("limits\n%+v, want\n%+v", c.limits, want)
			}
			// What every sandbox's engine API gets.
			o := c.limits.apiOptions(api.Options{Version: "v"})
			if o.Version != "v" || o.MaxContextSize != want.maxContext || o.MaxLoadSize != want.maxLoad || o.MaxCopySize != want.maxCopy || o.MaxRequestBody != want.maxJSONBody {
				t.Errorf("API options %+v, want the limits %+v", o, want)
			}
		})
	}
}
