package main

import (
	"fmt"
	"io"
	"strings"
	"testing"
)

// TestServeTrustedProxyFlags: --trusted-proxy and LABD_TRUSTED_PROXIES add
// up; a bad value is refused naming where it came from and what is
// expected; none is the default.
func TestServeTrustedProxyFlags(t *testing.T) {
	tests := []struct {
		name    string
		env     string
		hsts    string
		args    []string
		want    string // fmt of the prefixes
		subs    bool
		wantErr string
	}{
		{name: "default", want: "[]"},
		{name: "flags", args: []string{"--trusted-proxy", "127.0.0.1", "--trusted-proxy", "10.0.0.0/8"}, want: "[127.0.0.1/32 10.0.0.0/8]"},
		{name: "env", env: "::1, 192.168.1.0/24", want: "[::1/128 192.168.1.0/24]"},
		{name: "env and flag", env: "::1", args: []string{"--trusted-proxy=172.16.0.1"}, want: "[::1/128 172.16.0.1/32]"},
		{name: "hsts subdomains", args: []string{"--hsts-include-subdomains"}, want: "[]", subs: true},
		{name: "hsts subdomains env", hsts: "true", want: "[]", subs: true},
		{name: "bad flag", args: []string{"--trusted-proxy", "proxy.example.com"}, wantErr: `invalid value "proxy.example.com" for flag -trusted-proxy: trusted proxy "proxy.example.com": not an IP address or CIDR prefix`},
		{name: "bad env", env: "10.0.0.0/8,10.0.0.0/40", wantErr: `LABD_TRUSTED_PROXIES: trusted proxy "10.0.0.0/40": not an IP address or CIDR prefix`},
		{name: "bad hsts env", hsts: "maybe", wantErr: `LABD_HSTS_INCLUDE_SUBDOMAINS="maybe": want true or false`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("LABD_TRUSTED_PROXIES", tt.env)
			t.Setenv("LABD_HSTS_INCLUDE_SUBDOMAINS", tt.hsts)
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
			if got := fmt.Sprint(c.trustedProxies); got != tt.want || c.hstsSubdomains != tt.subs {
				t.Errorf("trusted proxies %s, HSTS subdomains %v; want %s, %v", got, c.hstsSubdomains, tt.want, tt.subs)
			}
		})
	}
}

func TestServeLogFormatFlag(t *testing.T) {
	for _, tc := range []struct {
		env  string
		args []string
		want string
		err  string
	}{
		{want: "text"},
		{args: []string{"--log-format", "json"}, want: "json"},
		{env: "json", want: "json"},
		{env: "json", args: []string{"--log-format=text"}, want: "text"},
		{args: []string{"--log-format", "xml"}, err: `--log-format "xml": want text or json`},
	} {
		t.Setenv("LABD_LOG_FORMAT", tc.env)
		c, err := parseServeFlags(tc.args, io.Discard)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v (env %q): err %v, want %q", tc.args, tc.env, err, tc.err)
			}
			continue
		}
		if err != nil || c.logFormat != tc.want {
			t.Errorf("%v (env %q) = %q, %v; want %q", tc.args, tc.env, c.logFormat, err, tc.want)
		}
	}
}
