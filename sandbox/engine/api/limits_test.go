package api_test

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labd/labd/sandbox/engine"
	"github.com/labd/labd/sandbox/engine/api"
)

// tarOf is a tar with one file of n bytes.
func tarOf(t *testing.T, n int) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	if err := tw.WriteHeader(&tar.Header{Name: "big", Mode: 0o644, Size: int64(n)}); err != nil {
		t.Fatal(err)
	}
	tw.Write(bytes.Repeat([]byte("x"), n))
	tw.Close()
	return b.Bytes()
}

// TestBodyLimits: each request body limit, hit once, is a 413 in
// Docker's error form naming the limit, its value and its option; a body
// at the limit is not refused for its size.
func TestBodyLimits(t *testing.T) {
	eng, err := engine.Open(t.TempDir(), engine.SharedOptions{NoRuntime: true})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.New(eng, api.Options{MaxContextSize: 1024, MaxLoadSize: 2048, MaxRequestBody: 1024, TempDir: t.TempDir()}))
	defer srv.Close()
	bigJSON := `{"Image":"busybox","Cmd":["true"],"Env":["X=` + strings.Repeat("x", 2048) + `"]}`
	tests := []struct {
		name, method, path, ctype string
		body                      []byte
		status                    int
		msg                       string // the whole message for 413s, else a substring
	}{
		{"create JSON", "POST", "/v1.51/containers/create", "application/json", []byte(bigJSON), 413,
			"request body is too large: this engine accepts at most 1KiB (--max-request-body)"},
		{"exec JSON", "POST", "/v1.51/containers/x/exec", "application/json", []byte(`{"Cmd":["` + strings.Repeat("y", 2048) + `"]}`), 413,
			"request body is too large: this engine accepts at most 1KiB (--max-request-body)"},
		{"form body", "POST", "/v1.51/auth", "application/x-www-form-urlencoded", []byte("a=" + strings.Repeat("z", 2048)), 413,
			"request body is too large: this engine accepts at most 1KiB (--max-request-body)"},
		{"small JSON", "POST", "/v1.51/containers/create", "application/json", []byte(`{"Image":"busybox","Cmd":["true"]}`), 500,
			"without a container runtime"},
		{"build context", "POST", "/v1.41/build", "application/x-tar", bytes.Repeat([]byte("x"), 4096), 413,
			"build context is too large: this engine accepts at most 1KiB (--max-context); leave large files out of it with a .dockerignore"},
		{"build context at the limit", "POST", "/v1.41/build", "application/x-tar", bytes.Repeat([]byte("x"), 1024), 500,
			""},
		{"load", "POST", "/v1.51/images/load?quiet=1", "application/x-tar", tarOf(t, 4096), 413,
			"image archive is too large: this engine accepts at most 2KiB (--max-load)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, srv.URL+tt.path, bytes.NewReader(tt.body))
			req.Header.Set("Content-Type", tt.ctype)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var m struct{ Message string }
			if err := json.Unmarshal(body, &m); err != nil {
				t.Fatalf("status %d, body %q is not Docker's JSON error: %v", resp.StatusCode, body, err)
			}
			switch {
			case tt.status == 413 && (resp.StatusCode != 413 || m.Message != tt.msg):
				t.Errorf("%d %q, want 413 %q", resp.StatusCode, m.Message, tt.msg)
			case tt.status != 413 && (resp.StatusCode == 413 || !strings.Contains(m.Message, tt.msg)):
				t.Errorf("%d %q, want no size refusal (%q)", resp.StatusCode, m.Message, tt.msg)
			}
		})
	}
}
