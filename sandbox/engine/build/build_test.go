package build

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

func TestNormalizeDest(t *testing.T) {
	for _, tc := range []struct{ wd, req, want string }{
		{"", "/app.py", "/app.py"},
		{"", ".", "/"},
		{"/app", ".", "/app"},
		{"/app", "sub/", "/app/sub/"},
		{"/app", "/abs/", "/abs/"},
	} {
		if got := normalizeDest(tc.wd, tc.req); got != tc.want {
			t.Errorf("normalizeDest(%q, %q) = %q, want %q", tc.wd, tc.req, got, tc.want)
		}
	}
}

func TestLegacyParseError(t *testing.T) {
	for _, tc := range []struct{ df, want string }{
		{"FROM busybox\nFOO bar\n", "dockerfile parse error line 2: unknown instruction: FOO"},
		{"RUN true\n", "no build stage in current context"},
	} {
		res, err := parser.Parse(strings.NewReader(tc.df))
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = instructions.Parse(res.AST, nil)
		if err == nil {
			t.Fatalf("%q parsed", tc.df)
		}
		if got := legacyParseError(err).Error(); !strings.Contains(got, tc.want) || strings.Contains(got, "did you mean") {
			t.Errorf("%q: %q, want %q", tc.df, got, tc.want)
		}
	}
}

func TestCompareConfig(t *testing.T) {
	base := &container.Config{Cmd: []string{"/bin/sh", "-c", "#(nop) ", "CMD"}, Env: []string{"A=1"}, Labels: map[string]string{"a": "b"}}
	same := copyRunConfig(base)
	same.Image = "sha256:other" // Image is not part of the key
	if !compareConfig(base, same) {
		t.Error("equal configs differ")
	}
	for name, mod := range map[string]func(c *container.Config){
		"env":     func(c *container.Config) { c.Env = []string{"A=2"} },
		"cmd":     func(c *container.Config) { c.Cmd = append(c.Cmd, "x") },
		"label":   func(c *container.Config) { c.Labels["a"] = "c" },
		"user":    func(c *container.Config) { c.User = "nobody" },
		"workdir": func(c *container.Config) { c.WorkingDir = "/x" },
		"health":  func(c *container.Config) { c.Healthcheck = &container.HealthConfig{Test: []string{"NONE"}} },
	} {
		c := copyRunConfig(base)
		mod(c)
		if compareConfig(base, c) {
			t.Errorf("%s change not detected", name)
		}
	}
}

func TestPrependEnvOnCmd(t *testing.T) {
	args := newBuildArgs(map[string]*string{"B": ptr("2")})
	args.addArg("B", nil)
	args.addArg("A", ptr("1"))
	got := prependEnvOnCmd(args, []string{"B=2", "A=1", "HTTP_PROXY=x"}, []string{"/bin/sh", "-c", "x"})
	want := "|2 A=1 B=2 /bin/sh -c x"
	if strings.Join(got, " ") != want {
		t.Errorf("got %q, want %q", strings.Join(got, " "), want)
	}
}

func ptr(s string) *string { return &s }

// TestExtractContextStaysInside feeds a hostile context: entries climbing
// out with "..", and a symlink to outside followed by a write through it.
func TestExtractContextStaysInside(t *testing.T) {
	outside := t.TempDir()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(h *tar.Header, body string) {
		h.Size = int64(len(body))
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	add(&tar.Header{Name: "../escape.txt", Mode: 0o644, Typeflag: tar.TypeReg}, "x")
	add(&tar.Header{Name: "link", Linkname: outside, Typeflag: tar.TypeSymlink}, "")
	add(&tar.Header{Name: "link/pwned", Mode: 0o644, Typeflag: tar.TypeReg}, "x")
	add(&tar.Header{Name: "ok.txt", Mode: 0o600, Typeflag: tar.TypeReg}, "ok")
	tw.Close()

	root := filepath.Join(t.TempDir(), "ctx")
	c, err := extractContext(&buf, root)
	if err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("wrote outside the context: %v", ents)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(root), "escape.txt")); err == nil {
		t.Error("../escape.txt escaped")
	}
	if fi, err := os.Lstat(filepath.Join(root, "link")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("symlink not kept as a link: %v", err)
	}
	if h := c.hash("ok.txt"); len(h) != 64 {
		t.Errorf("tarsum of ok.txt = %q", h)
	}
	if _, err := c.fullPath("../x"); err == nil || err.Error() != "forbidden path outside the build context: ../x ()" {
		t.Errorf("../x: %v", err)
	}
}
