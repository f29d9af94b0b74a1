package api_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labd/labd/sandbox/engine"
	"github.com/labd/labd/sandbox/engine/api"
)

func newServer(t *testing.T) *httptest.Server {
	t.Helper()
	eng, err := engine.Open(t.TempDir(), engine.SharedOptions{NoRuntime: true})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.New(eng, api.Options{Version: "28.5.2", TempDir: t.TempDir()}))
	t.Cleanup(srv.Close)
	return srv
}

func TestRoutes(t *testing.T) {
	srv := newServer(t)
	tests := []struct {
		method, path string
		status       int
		ctype        string
		body         string // substring
	}{
		{"GET", "/_ping", 200, "text/plain; charset=utf-8", "OK"},
		{"HEAD", "/_ping", 200, "text/plain; charset=utf-8", ""},
		{"GET", "/v1.41/_ping", 200, "text/plain; charset=utf-8", "OK"},
		{"GET", "/version", 200, "application/json", `"ApiVersion":"1.51"`},
		{"GET", "/v1.24/version", 200, "application/json", `"MinAPIVersion":"1.24"`},
		{"GET", "/v1.99/version", 200, "application/json", `"ApiVersion":"1.51"`}, // never too new
		{"GET", "/v1.12/version", 400, "application/json", `{"message":"client version 1.12 is too old. Minimum supported API version is 1.24, please upgrade your client to a newer version"}`},
		{"GET", "/v1.41/images/json", 200, "application/json", "[]"},
		{"GET", "/images/no/such:tag/json", 404, "application/json", `{"message":"no such image: no/such:tag: No such image: no/such:tag"}`},
		{"GET", "/v1.51/images/user/app/history", 404, "application/json", `No such image: user/app`},
		{"DELETE", "/images/nosuch", 404, "application/json", `No such image: nosuch`},
		{"POST", "/images/nosuch/tag?repo=x", 404, "application/json", `No such image: nosuch`},
		{"GET", "/containers/abc/json", 404, "application/json", `{"message":"No such container: abc"}`},
		{"GET", "/nope", 404, "application/json", `{"message":"page not found"}`},
		{"PUT", "/version", 404, "application/json", `{"message":"page not found"}`},
		{"POST", "/build/prune", 200, "application/json", `"SpaceReclaimed":0`},
		{"POST", "/images/prune?filters=%7B%22dangling%22%3A%7B%22true%22%3Atrue%7D%7D", 200, "application/json", `"ImagesDeleted":`},
		{"GET", "/info", 200, "application/json", `"OSType":"linux"`},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d (%s)", resp.StatusCode, tc.status, body)
			}
			if got := resp.Header.Get("Content-Type"); got != tc.ctype {
				t.Errorf("Content-Type %q, want %q", got, tc.ctype)
			}
			if !strings.Contains(string(body), tc.body) {
				t.Errorf("body %q lacks %q", body, tc.body)
			}
			for _, h := range []string{"Api-Version", "Ostype", "Server"} {
				if resp.Header.Get(h) == "" {
					t.Errorf("missing header %s", h)
				}
			}
		})
	}
}

func TestPingHeaders(t *testing.T) {
	srv := newServer(t)
	resp, err := http.Head(srv.URL + "/_ping")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	want := map[string]string{
		"Api-Version":         "1.51",
		"Ostype":              "linux",
		"Docker-Experimental": "false",
		"Builder-Version":     "1",
		"Cache-Control":       "no-cache, no-store, must-revalidate",
		"Pragma":              "no-cache",
		"Content-Length":      "0",
		"Server":              "Docker/28.5.2 (linux)",
	}
	for k, v := range want {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
}

// TestBuildErrors covers errors answered before any output (HTTP errors)
// and the JSON stream framing of a build that fails later.
func TestBuildErrors(t *testing.T) {
	srv := newServer(t)
	resp, err := http.Post(srv.URL+"/build?version=2", "application/x-tar", strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(body), "BuildKit is not supported") {
		t.Errorf("buildkit request: %d %s", resp.StatusCode, body)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Errorf("error body is not JSON: %v", err)
	}
}
