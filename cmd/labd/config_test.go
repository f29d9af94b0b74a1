package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "labd.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestServeConfigFile(t *testing.T) {
	t.Setenv("LABD_ADDR", "127.0.0.1:1111")
	t.Setenv("LABD_CONFIG", "")
	p := writeConfig(t, "addr: 127.0.0.1:2222\ndata: /srv/labd\ntrusted-proxy: [10.0.0.2, 10.0.0.3]\nlog-format: json\nidle-timeout: 20m\n")
	c, err := parseServeFlags([]string{"--config", p}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.addr != "127.0.0.1:2222" || c.data != "/srv/labd" || len(c.trustedProxies) != 2 || c.logFormat != "json" || c.idleTimeout.Minutes() != 20 {
		t.Errorf("from the file: %+v", c)
	}
	// The command line wins over the file; LABD_CONFIG names it too.
	t.Setenv("LABD_CONFIG", p)
	c, err = parseServeFlags([]string{"--addr", "127.0.0.1:3333"}, io.Discard)
	if err != nil || c.addr != "127.0.0.1:3333" || c.data != "/srv/labd" {
		t.Errorf("command line over file: %q %q %v", c.addr, c.data, err)
	}
	t.Setenv("LABD_CONFIG", "")
	for _, tc := range []struct{ body, want string }{
		{"adress: x\n", `labd.yaml:1: unknown setting "adress"`},
		{"addr: x\ntrusted-proxy: [proxy.example.com]\n", `labd.yaml:2: trusted-proxy: trusted proxy "proxy.example.com": not an IP address or CIDR prefix`},
		{"idle-timeout: soon\n", "labd.yaml:1: idle-timeout: "},
		{"log-format: xml\n", `--log-format "xml": want text or json`},
		{"- addr\n", "a config is a mapping"},
		{"addr: {a: b}\n", "addr: want a value or a list of values"},
		{"config: other.yaml\n", `unknown setting "config"`},
	} {
		_, err := parseServeFlags([]string{"--config", writeConfig(t, tc.body)}, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err %v, want %q", tc.body, err, tc.want)
		}
	}
	if _, err := parseServeFlags([]string{"--config=" + filepath.Join(t.TempDir(), "none.yaml")}, io.Discard); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing file: %v", err)
	}
}

func TestConfigCheck(t *testing.T) {
	t.Setenv("LABD_CONFIG", "")
	content := t.TempDir()
	var out, errOut bytes.Buffer
	good := writeConfig(t, "addr: 127.0.0.1:8080\ncontent: "+content+"\n")
	if err := runConfig(context.Background(), []string{"check", good}, &out, &errOut); err != nil || !strings.Contains(out.String(), good+": ok") {
		t.Errorf("check of a good file: %v %q %q", err, out.String(), errOut.String())
	}
	for _, body := range []string{"content: /nonexistent/labs\n", "addr: [a, b]\nmax-upload-mib: lots\n"} {
		errOut.Reset()
		err := runConfig(context.Background(), []string{"check", writeConfig(t, body)}, &out, &errOut)
		var ee exitError
		if !errors.As(err, &ee) || ee.code != 1 || errOut.Len() == 0 {
			t.Errorf("check of %q: %v, %q", body, err, errOut.String())
		}
	}
}
