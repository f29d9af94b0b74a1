package distribution

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/docker/docker/api/types/registry"
)

type challenge struct {
	scheme string // lower case: basic, bearer
	params map[string]string
}

// parseChallenges reads WWW-Authenticate headers (RFC 7235, the subset
// registries send: scheme followed by key="value" pairs).
func parseChallenges(h http.Header) []challenge {
	var out []challenge
	for _, v := range h.Values("Www-Authenticate") {
		scheme, rest, _ := strings.Cut(strings.TrimSpace(v), " ")
		c := challenge{scheme: strings.ToLower(scheme), params: map[string]string{}}
		for rest = strings.TrimSpace(rest); rest != ""; {
			k, after, ok := strings.Cut(rest, "=")
			if !ok {
				break
			}
			k = strings.ToLower(strings.TrimSpace(k))
			after = strings.TrimSpace(after)
			var val string
			if strings.HasPrefix(after, `"`) {
				var b strings.Builder
				i := 1
				for ; i < len(after); i++ {
					if after[i] == '\\' && i+1 < len(after) {
						i++
						b.WriteByte(after[i])
						continue
					}
					if after[i] == '"' {
						break
					}
					b.WriteByte(after[i])
				}
				val = b.String()
				if i < len(after) {
					i++
				}
				after = after[i:]
			} else {
				val, after, _ = strings.Cut(after, ",")
				after = "," + after
			}
			c.params[k] = val
			after = strings.TrimSpace(after)
			rest = strings.TrimSpace(strings.TrimPrefix(after, ","))
		}
		out = append(out, c)
	}
	return out
}

// session talks to one registry with one set of credentials and scopes:
// dockerd's authorizer (Basic, or Bearer tokens from the challenge's realm).
type session struct {
	c       *Client
	host    string
	base    string // scheme://host
	auth    registry.AuthConfig
	scopes  []string
	offline bool // login: ask for a refresh token (offline_token, client_id)
	hc      *http.Client

	kind          string // "", "basic", "bearer"
	realm, svc    string
	token         string
	refreshToken  string
	credentialErr error // Basic without credentials
}

// newSession pings host (https first; http for loopback and insecure
// registries, as dockerd falls back) and prepares authorization.
func (c *Client) newSession(ctx context.Context, host string, auth registry.AuthConfig, scopes []string, offline bool) (*session, error) {
	s := &session{c: c, host: host, auth: auth, scopes: scopes, offline: offline, hc: c.httpClient(host)}
	resp, err := c.ping(ctx, s)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode == http.StatusUnauthorized {
		for _, ch := range parseChallenges(resp.Header) {
			switch ch.scheme {
			case "bearer":
				s.kind, s.realm, s.svc = "bearer", ch.params["realm"], ch.params["service"]
			case "basic":
				if s.kind == "" {
					s.kind = "basic"
				}
			}
		}
	}
	return s, nil
}

// ping answers GET /v2/ and fixes the session's scheme.
func (c *Client) ping(ctx context.Context, s *session) (*http.Response, error) {
	schemes := []string{"https"}
	if c.opts.insecure(s.host) {
		schemes = append(schemes, "http")
	}
	var lastErr error
	for _, scheme := range schemes {
		base := scheme + "://" + s.host
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v2/", nil)
		if err != nil {
			return nil, err
		}
		resp, err := s.hc.Do(req)
		if err != nil {
			lastErr = err
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			continue
		}
		s.base = base
		return resp, nil
	}
	return nil, lastErr
}

// httpClient is the client for host: TLS verification off for insecure
// registries (dockerd's InsecureSkipVerify for them); requests, redirects
// included, go only to allowed hosts.
func (c *Client) httpClient(host string) *http.Client {
	if c.opts.insecure(host) {
		return c.insecureHC
	}
	return c.secureHC
}

func newHTTPClients(allow *allowlist) (secure, insecure *http.Client) {
	mk := func(skip bool) *http.Client {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = &tls.Config{InsecureSkipVerify: skip} //nolint:gosec // insecure registries only, as dockerd
		t.TLSHandshakeTimeout = 10 * time.Second
		t.MaxIdleConnsPerHost = 16
		return &http.Client{Transport: guard{a: allow, next: t}, CheckRedirect: allow.checkRedirect}
	}
	return mk(false), mk(true)
}

// authorize sets the request's Authorization header.
func (s *session) authorize(ctx context.Context, req *http.Request) error {
	switch s.kind {
	case "basic":
		if s.auth.Username == "" || s.auth.Password == "" {
			return errNoBasicAuth
		}
		req.SetBasicAuth(s.auth.Username, s.auth.Password)
	case "bearer":
		if s.token == "" {
			if err := s.fetchToken(ctx); err != nil {
				return err
			}
		}
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	return nil
}

// do sends a request to the registry (path relative to the base, or an
// absolute Location) with authorization.
func (s *session) do(ctx context.Context, method, target string, body io.Reader, hdr http.Header) (*http.Response, error) {
	u := target
	if strings.HasPrefix(target, "/") {
		u = s.base + target
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("User-Agent", "docker/"+s.c.version+" go/labd")
	if err := s.authorize(ctx, req); err != nil {
		// As Go's client reports a failing RoundTrip (dockerd's
		// authorizer runs inside it): `Head "https://…": no basic auth credentials`.
		return nil, &url.Error{Op: method[:1] + strings.ToLower(method[1:]), URL: u, Err: err}
	}
	return s.hc.Do(req)
}

// location resolves an upload Location header against the base.
func (s *session) location(resp *http.Response) (string, error) {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return "", errors.New("registry answered an upload without Location")
	}
	u, err := url.Parse(loc)
	if err != nil {
		return "", fmt.Errorf("bad upload location %q: %w", loc, err)
	}
	b, _ := url.Parse(s.base + "/")
	return b.ResolveReference(u).String(), nil
}

type tokenResponse struct {
	Token        string `json:"token"`
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
}

// fetchToken gets a bearer token as dockerd does: the registry token given
// by the client, an OAuth refresh with the identity token, or a GET of the
// realm with Basic credentials and account.
func (s *session) fetchToken(ctx context.Context) error {
	if s.auth.RegistryToken != "" {
		s.token = s.auth.RegistryToken
		return nil
	}
	if s.realm == "" {
		return errors.New("bearer challenge without realm")
	}
	if err := s.c.allow.checkRealm(s.host, s.realm); err != nil {
		return err
	}
	var req *http.Request
	var err error
	if s.auth.IdentityToken != "" {
		form := url.Values{}
		form.Set("grant_type", "refresh_token")
		form.Set("refresh_token", s.auth.IdentityToken)
		form.Set("service", s.svc)
		form.Set("client_id", "docker")
		form.Set("scope", strings.Join(s.scopes, " "))
		if s.offline {
			form.Set("access_type", "offline")
		}
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, s.realm, strings.NewReader(form.Encode()))
		if err == nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
		}
	} else {
		u, perr := url.Parse(s.realm)
		if perr != nil {
			return fmt.Errorf("bad token realm %q: %w", s.realm, perr)
		}
		q := u.Query()
		if s.svc != "" {
			q.Set("service", s.svc)
		}
		for _, sc := range s.scopes {
			q.Add("scope", sc)
		}
		if s.offline {
			q.Set("offline_token", "true")
			q.Set("client_id", "docker")
		}
		if s.auth.Username != "" {
			q.Set("account", s.auth.Username)
		}
		u.RawQuery = q.Encode()
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err == nil && s.auth.Username != "" {
			req.SetBasicAuth(s.auth.Username, s.auth.Password)
		}
	}
	if err != nil {
		return err
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return responseError(resp)
	}
	var tr tokenResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&tr); err != nil {
		return fmt.Errorf("unable to decode token response: %w", err)
	}
	s.token = tr.Token
	if s.token == "" {
		s.token = tr.AccessToken
	}
	if s.token == "" {
		return errors.New("authorization server did not include a token in the response")
	}
	s.refreshToken = tr.RefreshToken
	return nil
}

// Login checks credentials against a registry as dockerd 20.10's loginV2:
// GET /v2/ with the credentials (a token fetched with offline_token when
// the registry wants Bearer). It returns the identity token (a refresh
// token) when the token server gives one.
func (c *Client) Login(ctx context.Context, auth registry.AuthConfig) (status, identityToken string, err error) {
	host, err := c.opts.LoginHost(auth.ServerAddress)
	if err != nil {
		return "", "", errInvalid(err)
	}
	if host, err = c.allow.registry(host); err != nil {
		return "", "", err
	}
	s, err := c.newSession(ctx, host, auth, nil, true)
	if err != nil {
		return "", "", err
	}
	endpoint := s.base + "/v2/"
	resp, err := s.do(ctx, http.MethodGet, "/v2/", nil, nil)
	if err != nil {
		if ctx.Err() != nil {
			return "", "", ctx.Err()
		}
		var ue *url.Error
		if !errors.As(err, &ue) {
			err = &url.Error{Op: "Get", URL: endpoint, Err: err}
		}
		if errorCode(err) == "UNAUTHORIZED" || errorCode(err) == "DENIED" || errors.Is(err, errNoBasicAuth) {
			return "", "", errUnauthorized(err)
		}
		return "", "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return "Login Succeeded", s.refreshToken, nil
	}
	return "", "", fmt.Errorf("login attempt to %s failed with status: %d %s", endpoint, resp.StatusCode, http.StatusText(resp.StatusCode))
}
