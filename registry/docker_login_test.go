package registry

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/labd/labd/registry/accounts"
	"github.com/labd/labd/sandbox/engine/enginetest"
)

// TestDockerLoginIdentityToken: the real docker CLI logs in through
// labd's engine, which asks the token server for an offline token as
// dockerd does; the CLI keeps the identity token, not the password, and
// pushes with it (grant_type=refresh_token) until the password changes.
func TestDockerLoginIdentityToken(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root: labd engine mounts overlays (CI runs as root)")
	}
	if _, err := os.Stat(enginetest.DockerCLI20); err != nil {
		t.Fatalf("the docker CLI is missing (deploy/deps.sh test): %v", err)
	}
	t.Cleanup(enginetest.RemoveBinary)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	data := t.TempDir()
	store, err := accounts.Open(ctx, filepath.Join(data, "labd.db"), accounts.Options{BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if err := store.Add(ctx, "alice", alicePW, accounts.Learner); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	eng, err := enginetest.StartLabd(data, filepath.Join(t.TempDir(), "labd.sock"), "--registry-addr", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Stop()

	home := t.TempDir()
	docker := func(stdin string, args ...string) (string, bool) {
		cmd := exec.CommandContext(ctx, enginetest.DockerCLI20, args...)
		cmd.Env = []string{"DOCKER_HOST=" + eng.Host(), "HOME=" + home, "DOCKER_CONFIG=" + filepath.Join(home, ".docker"),
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
		cmd.Stdin = strings.NewReader(stdin)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err == nil
	}

	if out, ok := docker(alicePW+"\n", "login", "-u", "alice", "--password-stdin"); !ok || !strings.Contains(out, "Login Succeeded") {
		t.Fatalf("docker login: %s", out)
	}
	raw, err := os.ReadFile(filepath.Join(home, ".docker", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Auths map[string]struct {
			Auth          string `json:"auth"`
			IdentityToken string `json:"identitytoken"`
		} `json:"auths"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	found := false
	for host, a := range cfg.Auths {
		plain, _ := base64.StdEncoding.DecodeString(a.Auth)
		if strings.Contains(string(plain), alicePW) {
			t.Errorf("config.json keeps alice's password for %s", host)
		}
		found = found || a.IdentityToken != ""
	}
	if !found {
		t.Fatalf("config.json has no identity token:\n%s", raw)
	}

	if out, ok := docker("", "tag", "busybox:latest", "alice/bb:1"); !ok {
		t.Fatal(out)
	}
	if out, ok := docker("", "push", "alice/bb:1"); !ok || !strings.Contains(out, "1: digest: sha256:") {
		t.Fatalf("push with the identity token: %s", out)
	}

	// A new password revokes the identity token; logging in again works.
	if err := store.SetPassword(ctx, "alice", "alice-second-password"); err != nil {
		t.Fatal(err)
	}
	if out, ok := docker("", "tag", "busybox:latest", "alice/bb:2"); !ok {
		t.Fatal(out)
	}
	if out, ok := docker("", "push", "alice/bb:2"); ok || !strings.Contains(out, "unauthorized") {
		t.Errorf("push after the password changed: ok=%v, want unauthorized:\n%s", ok, out)
	}
	if out, ok := docker("alice-second-password\n", "login", "-u", "alice", "--password-stdin"); !ok {
		t.Fatalf("docker login with the new password: %s", out)
	}
	if out, ok := docker("", "push", "alice/bb:2"); !ok || !strings.Contains(out, "2: digest: sha256:") {
		t.Errorf("push after logging in again: %s", out)
	}
}
