package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/pkg/jsonmessage"
)

// RegistryBackend is what docker login, push and pull need from the engine.
type RegistryBackend interface {
	// Login checks credentials against the registry (POST /auth).
	Login(ctx context.Context, auth registry.AuthConfig) (*registry.AuthenticateOKBody, error)
	// ImagePush pushes name (as given in the path) with tag ("" = every
	// tag of the repository), writing dockerd's messages to out.
	ImagePush(ctx context.Context, name, tag string, auth registry.AuthConfig, out func(*jsonmessage.JSONMessage) error) error
	// ImagePull pulls fromImage with tag (a tag or a digest; "" = latest).
	ImagePull(ctx context.Context, name, tag string, auth registry.AuthConfig, out func(*jsonmessage.JSONMessage) error) error
}

// decodeAuth reads X-Registry-Auth: base64url JSON (dockerd), standard
// base64 accepted too; empty, "{}" or undecodable means anonymous, as
// dockerd treats it for pulls.
func decodeAuth(h string) registry.AuthConfig {
	var a registry.AuthConfig
	h = strings.TrimSpace(h)
	if h == "" {
		return a
	}
	for _, enc := range []*base64.Encoding{base64.URLEncoding, base64.StdEncoding, base64.RawURLEncoding, base64.RawStdEncoding} {
		b, err := enc.DecodeString(h)
		if err != nil {
			continue
		}
		if json.Unmarshal(b, &a) == nil {
			return a
		}
		return registry.AuthConfig{}
	}
	return a
}

func (s *server) auth(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	var cfg registry.AuthConfig
	if err := json.NewDecoder(r.Body).Decode(&cfg); err != nil {
		return InvalidParameterError(errors.New("Bad parameters: " + err.Error())) //nolint:staticcheck // dockerd's text
	}
	resp, err := s.b.Login(ctx, cfg)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, resp)
}

// streamed runs f with a JSON message stream: an error before the first
// message is an HTTP error, after it a stream error (dockerd's
// WriteFlusher.Flushed rule).
func streamed(w http.ResponseWriter, f func(out func(*jsonmessage.JSONMessage) error) error) error {
	js := newJSONStream(w)
	started := false
	err := f(func(m *jsonmessage.JSONMessage) error {
		if !started {
			started = true
			w.Header().Set("Content-Type", "application/json")
		}
		return js.send(m)
	})
	if err == nil {
		return nil
	}
	if !js.started() {
		return err
	}
	_ = js.sendError(err)
	return nil
}

func (s *server) imagePush(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	auth := decodeAuth(r.Header.Get("X-Registry-Auth"))
	return streamed(w, func(out func(*jsonmessage.JSONMessage) error) error {
		return s.b.ImagePush(ctx, vars["name"], r.Form.Get("tag"), auth, out)
	})
}

func (s *server) imagePull(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	if r.Form.Get("fromImage") == "" {
		if r.Form.Get("fromSrc") != "" {
			return notImplementedErr{errors.New("docker import is not supported by this engine")}
		}
		return InvalidParameterError(errors.New("fromImage or fromSrc is required"))
	}
	auth := decodeAuth(r.Header.Get("X-Registry-Auth"))
	return streamed(w, func(out func(*jsonmessage.JSONMessage) error) error {
		return s.b.ImagePull(ctx, r.Form.Get("fromImage"), r.Form.Get("tag"), auth, out)
	})
}

type notImplementedErr struct{ error }

func (notImplementedErr) NotImplemented() {}
func (e notImplementedErr) Unwrap() error { return e.error }
