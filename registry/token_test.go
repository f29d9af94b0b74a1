package registry

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
)

// grants flattens a token's access claim to "type:name:a,b" strings.
func grants(claims map[string]any) []string {
	var out []string
	acc, _ := claims["access"].([]any)
	for _, a := range acc {
		m := a.(map[string]any)
		var acts []string
		for _, x := range m["actions"].([]any) {
			acts = append(acts, x.(string))
		}
		sort.Strings(acts)
		out = append(out, fmt.Sprintf("%s:%s:%s", m["type"], m["name"], strings.Join(acts, ",")))
	}
	sort.Strings(out)
	return out
}

func TestTokenPolicy(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		name     string
		user, pw string
		scopes   []string
		status   int
		want     []string
	}{
		{"learner pushes own namespace", "alice", alicePW, []string{"repository:alice/app:pull,push"}, 200,
			[]string{"repository:alice/app:pull,push"}},
		{"learner deletes own", "alice", alicePW, []string{"repository:alice/a/b:delete"}, 200,
			[]string{"repository:alice/a/b:delete"}},
		{"learner cannot push other learner", "alice", alicePW, []string{"repository:bob/app:pull,push"}, 200, nil},
		{"learner cannot push single name", "alice", alicePW, []string{"repository:alice:pull,push"}, 200,
			[]string{"repository:alice:pull"}},
		{"learner pulls library, no push", "alice", alicePW, []string{"repository:library/python:pull,push"}, 200,
			[]string{"repository:library/python:pull"}},
		{"learner pulls instructor namespace", "alice", alicePW, []string{"repository:teacher/demo:pull,push"}, 200,
			[]string{"repository:teacher/demo:pull"}},
		{"learner no catalog", "alice", alicePW, []string{"registry:catalog:*"}, 200, nil},
		{"several scopes", "alice", alicePW, []string{"repository:alice/app:pull,push", "repository:library/python:pull"}, 200,
			[]string{"repository:alice/app:pull,push", "repository:library/python:pull"}},
		{"space separated scopes", "alice", alicePW, []string{"repository:alice/app:push repository:bob/x:pull"}, 200,
			[]string{"repository:alice/app:push"}},
		{"instructor reads learners", "teacher", teacherPW, []string{"repository:alice/app:pull,push"}, 200,
			[]string{"repository:alice/app:pull"}},
		{"instructor publishes library", "teacher", teacherPW, []string{"repository:library/python:pull,push"}, 200,
			[]string{"repository:library/python:pull,push"}},
		{"instructor publishes own", "teacher", teacherPW, []string{"repository:teacher/demo:*"}, 200,
			[]string{"repository:teacher/demo:*,delete,pull,push"}},
		{"instructor catalog", "teacher", teacherPW, []string{"registry:catalog:*"}, 200,
			[]string{"registry:catalog:*"}},
		{"anonymous library pull", "", "", []string{"repository:library/python:pull,push"}, 200,
			[]string{"repository:library/python:pull"}},
		{"anonymous learner repo", "", "", []string{"repository:alice/app:pull"}, 200, nil},
		{"anonymous instructor repo", "", "", []string{"repository:teacher/demo:pull"}, 200,
			[]string{"repository:teacher/demo:pull"}},
		{"no scope login", "alice", alicePW, nil, 200, nil},
		{"wrong password", "alice", "wrong-password", []string{"repository:alice/app:pull"}, 401, nil},
		{"unknown user", "mallory", alicePW, []string{"repository:alice/app:pull"}, 401, nil},
		{"other learner's password", "alice", bobPW, nil, 401, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, claims := e.token(tc.user, tc.pw, tc.scopes...)
			if status != tc.status {
				t.Fatalf("status = %d, want %d", status, tc.status)
			}
			if status != 200 {
				return
			}
			if got := grants(claims); !slices.Equal(got, tc.want) {
				t.Errorf("access = %q, want %q", got, tc.want)
			}
			if claims["sub"] != tc.user || claims["iss"] != Issuer || fmt.Sprint(claims["aud"]) != "["+DefaultService+"]" {
				t.Errorf("claims sub/iss/aud = %v/%v/%v", claims["sub"], claims["iss"], claims["aud"])
			}
		})
	}
}

func TestTokenErrors(t *testing.T) {
	e := newEnv(t, nil)
	// Docker's client turns {"details": ...} on 401 into
	// "unauthorized: <details>".
	req, _ := http.NewRequest(http.MethodGet, e.url(TokenPath+"?service=labd-registry"), nil)
	req.SetBasicAuth("alice", "nope-nope-nope")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body struct{ Details string }
	json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != 401 || body.Details != "incorrect username or password" {
		t.Errorf("wrong password: %d %q", resp.StatusCode, body.Details)
	}

	resp, err = http.Get(e.url(TokenPath + "?service=other"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("foreign service: status %d, want 400", resp.StatusCode)
	}

	// OAuth2 password grant.
	resp, err = http.PostForm(e.url(TokenPath), map[string][]string{
		"grant_type": {"password"}, "username": {"alice"}, "password": {alicePW},
		"service": {DefaultService}, "scope": {"repository:alice/x:push"}, "client_id": {"test"},
	})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"access_token"`) {
		t.Errorf("password grant: %d %s", resp.StatusCode, b)
	}
}

func TestChallengeAndBearer(t *testing.T) {
	e := newEnv(t, nil)
	resp, err := http.Get(e.url("/v2/"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	want := fmt.Sprintf(`Bearer realm="http://%s/auth/token",service="labd-registry"`, e.opts.Addr)
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != want {
		t.Fatalf("GET /v2/ = %d %q, want 401 %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), want)
	}

	// With a token, /v2/ answers 200; a token without push is refused on
	// a push route with insufficient_scope.
	_, claims := e.token("alice", alicePW)
	req, _ := http.NewRequest(http.MethodGet, e.url("/v2/"), nil)
	req.Header.Set("Authorization", "Bearer "+claims["_raw"].(string))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET /v2/ with token = %d", resp.StatusCode)
	}

	_, claims = e.token("alice", alicePW, "repository:bob/app:pull,push")
	req, _ = http.NewRequest(http.MethodPost, e.url("/v2/bob/app/blobs/uploads/"), nil)
	req.Header.Set("Authorization", "Bearer "+claims["_raw"].(string))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="insufficient_scope"`) {
		t.Errorf("push to bob/app with alice's token = %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
}
