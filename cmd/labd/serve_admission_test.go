package main

import (
	"io"
	"strings"
	"testing"

	"github.com/labd/labd/web"
)

// TestServeAdmissionFlags: the maximum and the per-client limit come from
// flags, else the environment, else the defaults; a maximum larger than
// the pools every sandbox takes from stops labd before it starts, naming
// the pool and what it holds.
func TestServeAdmissionFlags(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		want    admission
		wantErr string
	}{
		{name: "defaults", want: admission{200, web.AdmissionLimit{PerMinute: 50, Burst: 100}, 8}},
		{name: "flags", args: []string{"--max-sandboxes", "100", "--admission-rate", "0.5", "--admission-burst", "120"},
			want: admission{100, web.AdmissionLimit{PerMinute: 0.5, Burst: 120}, 8}},
		{name: "env", env: map[string]string{"LABD_MAX_SANDBOXES": "30", "LABD_ADMISSION_RATE": "none", "LABD_ADMISSION_BURST": "5"},
			want: admission{30, web.AdmissionLimit{PerMinute: -1, Burst: 5}, 8}},
		{name: "flag over env", env: map[string]string{"LABD_MAX_SANDBOXES": "30"}, args: []string{"--max-sandboxes=40"},
			want: admission{40, web.AdmissionLimit{PerMinute: 50, Burst: 100}, 8}},
		{name: "the whole network pool", args: []string{"--max-sandboxes", "255"},
			want: admission{255, web.AdmissionLimit{PerMinute: 50, Burst: 100}, 8}},
		{name: "above the network pool", args: []string{"--max-sandboxes", "256"},
			wantErr: "--max-sandboxes 256: the network pool 172.30.0.0/16 holds 255 sandboxes (a /24 subnet each, one kept for `labd engine`); lower it to fit"},
		{name: "above the network pool without userns", env: map[string]string{"LABD_USERNS": "0"}, args: []string{"--max-sandboxes", "1000"},
			wantErr: "--max-sandboxes 1000: the network pool 172.30.0.0/16 holds 255 sandboxes"},
		{name: "env above the pool", env: map[string]string{"LABD_MAX_SANDBOXES": "300"},
			wantErr: "--max-sandboxes 300: the network pool 172.30.0.0/16 holds 255 sandboxes"},
		{name: "no maximum", args: []string{"--max-sandboxes", "none"}, wantErr: `--max-sandboxes "none": want a whole number from 1`},
		{name: "zero maximum", args: []string{"--max-sandboxes", "0"}, wantErr: `--max-sandboxes "0": want a whole number from 1`},
		{name: "bad rate", args: []string{"--admission-rate", "fast"}, wantErr: `--admission-rate "fast": want a number of new sandboxes per minute above 0 (e.g. 20 or 0.5) or "none"`},
		{name: "zero rate is none, as for the limits", args: []string{"--admission-rate", "0"},
			want: admission{200, web.AdmissionLimit{PerMinute: -1, Burst: 100}, 8}},
		{name: "negative rate", env: map[string]string{"LABD_ADMISSION_RATE": "-3"}, wantErr: `--admission-rate "-3": want a number`},
		{name: "NaN rate", args: []string{"--admission-rate", "NaN"}, wantErr: `--admission-rate "NaN": want a number`},
		{name: "a class's warm sandboxes", args: []string{"--warm-sandboxes", "50"},
			want: admission{200, web.AdmissionLimit{PerMinute: 50, Burst: 100}, 50}},
		{name: "warm from env", env: map[string]string{"LABD_WARM_SANDBOXES": "none"},
			want: admission{200, web.AdmissionLimit{PerMinute: 50, Burst: 100}, -1}},
		{name: "warm at most half the maximum", args: []string{"--max-sandboxes", "10", "--warm-sandboxes", "50"},
			want: admission{10, web.AdmissionLimit{PerMinute: 50, Burst: 100}, 5}},
		{name: "negative warm", args: []string{"--warm-sandboxes", "-2"}, wantErr: `--warm-sandboxes "-2": want a whole number from 0 or "none"`},
		{name: "zero burst", args: []string{"--admission-burst", "0"}, wantErr: `--admission-burst "0": want a whole number from 1 to 1000000`},
	}
	envs := []string{"LABD_MAX_SANDBOXES", "LABD_ADMISSION_RATE", "LABD_ADMISSION_BURST", "LABD_USERNS", "LABD_WARM_SANDBOXES"}
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
			if c.admission != tt.want {
				t.Errorf("admission %+v, want %+v", c.admission, tt.want)
			}
		})
	}
}
