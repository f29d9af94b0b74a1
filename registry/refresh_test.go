package registry

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// loginToken asks the token endpoint as dockerd's login does (GET with
// Basic credentials, offline_token=true, client_id=docker) and returns
// the refresh token ("" if none).
func (e *testEnv) loginToken(user, pw string, offline bool) (int, string) {
	e.t.Helper()
	q := url.Values{"service": {DefaultService}, "client_id": {"docker"}, "account": {user}}
	if offline {
		q.Set("offline_token", "true")
	}
	resp := e.getToken(q, user, pw)
	defer resp.Body.Close()
	var body struct {
		Token        string `json:"token"`
		RefreshToken string `json:"refresh_token"`
	}
	json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body.RefreshToken
}

// TestRefreshToken: `docker login` asks for an offline token; dockerd
// then keeps the refresh token as the identity token and gets access
// tokens with grant_type=refresh_token. go-containerregistry does the
// same with an IdentityToken. A new password revokes the token.
func TestRefreshToken(t *testing.T) {
	e := newEnv(t, nil)
	if status, rt := e.loginToken("alice", alicePW, false); status != http.StatusOK || rt != "" {
		t.Errorf("token without offline_token = %d, refresh token %q; want 200 and none", status, rt)
	}
	if status, rt := e.loginToken("", "", true); status != http.StatusOK || rt != "" {
		t.Errorf("anonymous token with offline_token = %d, refresh token %q; want 200 and none", status, rt)
	}
	if status, rt := e.loginToken("alice", "wrong-password", true); status != http.StatusUnauthorized || rt != "" {
		t.Errorf("offline token with a wrong password = %d, %q; want 401", status, rt)
	}
	status, rt := e.loginToken("alice", alicePW, true)
	if status != http.StatusOK || rt == "" {
		t.Fatalf("offline token = %d, refresh token %q; want one", status, rt)
	}

	// The identity token alone pushes and pulls alice's repositories.
	idt := remote.WithAuth(authn.FromConfig(authn.AuthConfig{IdentityToken: rt}))
	img := randomImage(t, 2048, 2)
	if err := remote.Write(e.ref("alice/rt:1"), img, idt, remote.WithContext(context.Background())); err != nil {
		t.Fatalf("push with the identity token: %v", err)
	}
	got, err := remote.Image(e.ref("alice/rt:1"), idt)
	if err != nil || validate.Image(got) != nil || digestOf(t, got) != digestOf(t, img) {
		t.Fatalf("pull with the identity token: %v", err)
	}
	// ... under alice's policy only.
	if err := remote.Write(e.ref("bob/rt:1"), img, idt); err == nil {
		t.Error("push into bob/rt with alice's identity token: no error")
	}
	// It is no access token: the registry refuses it as a bearer.
	resp, _ := e.do(rt, http.MethodGet, "/v2/", nil)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /v2/ with the refresh token as bearer = %d, want 401", resp.StatusCode)
	}
	// A tampered token is refused.
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt[:len(rt)-4] + "AAAA"}, "service": {DefaultService}}
	resp, err = http.PostForm(e.url(TokenPath), form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("tampered refresh token = %d, want 401", resp.StatusCode)
	}

	// A new password revokes it.
	if err := e.store.SetPassword(context.Background(), "alice", "alice-new-password"); err != nil {
		t.Fatal(err)
	}
	_, err = remote.Image(e.ref("alice/rt:1"), idt)
	if err == nil || !strings.Contains(err.Error(), "identity token expired or revoked") {
		t.Errorf("pull with a revoked identity token: err = %v, want unauthorized", err)
	}
	if _, err := remote.Image(e.ref("alice/rt:1"), creds("alice", "alice-new-password")); err != nil {
		t.Errorf("pull with the new password: %v", err)
	}
}
