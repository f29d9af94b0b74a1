package registry

import (
	"net/http"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestCrossNamespaceMount: a learner cannot mount a blob from another
// learner's repository, and the refusal is the same whether that
// repository holds the blob or not, so it tells nothing about another
// learner's content; nothing is linked into the learner's repository. A
// mount between the learner's own repositories works.
func TestCrossNamespaceMount(t *testing.T) {
	e := newEnv(t, nil)
	img := randomImage(t, 2048, 1)
	if err := e.push("alice/five:latest", "alice", alicePW, img); err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	h, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	held := digest.Digest(h.String())
	absent := digest.FromString("a blob nobody pushed")
	bobTok := e.bearer("bob", bobPW, "repository:bob/x:pull,push", "repository:alice/five:pull")
	aliceTok := e.bearer("alice", alicePW, "repository:alice/copy:pull,push", "repository:alice/five:pull")

	type answer struct {
		status int
		body   string
	}
	mount := func(tok, into string, d digest.Digest, from string) answer {
		resp, body := e.do(tok, http.MethodPost, "/v2/"+into+"/blobs/uploads/?mount="+d.String()+"&from="+from, nil)
		// The request's own words are masked: the answer must not depend
		// on anything else.
		b := strings.ReplaceAll(string(body), d.String(), "DIGEST")
		return answer{resp.StatusCode, strings.ReplaceAll(b, `"`+from+`"`, `"FROM"`)}
	}
	tests := []struct {
		name string
		tok  string
		into string
		d    digest.Digest
		from string
	}{
		{"a blob alice holds", bobTok, "bob/x", held, "alice/five"},
		{"a blob nobody holds", bobTok, "bob/x", absent, "alice/five"},
		{"from a repository that does not exist", bobTok, "bob/x", held, "alice/nothing"},
	}
	var answers []answer
	for _, tc := range tests {
		a := mount(tc.tok, tc.into, tc.d, tc.from)
		if a.status == http.StatusCreated {
			t.Errorf("%s: bob mounted from %s (%d)", tc.name, tc.from, a.status)
		}
		if a.status != http.StatusUnauthorized && a.status != http.StatusForbidden {
			t.Errorf("%s: mount answered %d %s; want a refusal", tc.name, a.status, a.body)
		}
		answers = append(answers, a)
		if resp, _ := e.do(bobTok, http.MethodHead, "/v2/bob/x/blobs/"+tc.d.String(), nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: bob/x has the blob after the refused mount (HEAD %d)", tc.name, resp.StatusCode)
		}
	}
	for i := 1; i < len(answers); i++ {
		if answers[i] != answers[0] {
			t.Errorf("the refusal differs: %q answered %+v, %q answered %+v", tests[0].name, answers[0], tests[i].name, answers[i])
		}
	}
	if a := mount(aliceTok, "alice/copy", held, "alice/five"); a.status != http.StatusCreated {
		t.Errorf("alice mounting her own blob into alice/copy = %d %s, want 201", a.status, a.body)
	}
}
