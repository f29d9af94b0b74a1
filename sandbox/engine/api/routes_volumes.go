package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/versions"
	"github.com/docker/docker/api/types/volume"
)

// VolumeBackend is `docker volume`.
type VolumeBackend interface {
	VolumeCreate(ctx context.Context, opts volume.CreateOptions) (*volume.Volume, error)
	VolumeList(ctx context.Context, f filters.Args) ([]*volume.Volume, error)
	VolumeInspect(ctx context.Context, name string) (*volume.Volume, error)
	VolumeRemove(ctx context.Context, name string, force bool) error
	// VolumesPrune removes unused volumes; anonymousOnly is API ≥ 1.42's
	// default (all=true in the filters turns it off).
	VolumesPrune(ctx context.Context, f filters.Args, anonymousOnly bool) (*volume.PruneReport, error)
}

// NetworkBackend is `docker network`: the engine's fixed networks.
type NetworkBackend interface {
	NetworkList(ctx context.Context, f filters.Args) ([]network.Summary, error)
	NetworkInspect(ctx context.Context, name string) (*network.Inspect, error)
	NetworksPrune(ctx context.Context, f filters.Args) (*network.PruneReport, error)
	// NetworkRefuse answers what the engine does not do (create, remove of
	// a predefined network, connect, disconnect).
	NetworkRefuse(ctx context.Context, op, name string) error
}

func (s *server) volumesList(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	f, err := filtersParam(r)
	if err != nil {
		return err
	}
	list, err := s.b.VolumeList(ctx, f)
	if err != nil {
		return err
	}
	if list == nil {
		list = []*volume.Volume{}
	}
	return writeJSON(w, http.StatusOK, volume.ListResponse{Volumes: list})
}

func (s *server) volumeInspect(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	v, err := s.b.VolumeInspect(ctx, vars["name"])
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, v)
}

func (s *server) volumeCreate(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	var req volume.CreateOptions
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		return InvalidParameterError(fmt.Errorf("invalid JSON: %w", err))
	}
	v, err := s.b.VolumeCreate(ctx, req)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, v)
}

func (s *server) volumeDelete(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	if err := s.b.VolumeRemove(ctx, vars["name"], boolValue(r, "force")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *server) volumesPrune(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	f, err := filtersParam(r)
	if err != nil {
		return err
	}
	anonOnly := false
	if versions.GreaterThanOrEqualTo(apiVersion(ctx), "1.42") {
		all, err := f.GetBoolOrDefault("all", false)
		if err != nil {
			return InvalidParameterError(err)
		}
		anonOnly = !all
	}
	f.Del("all", "true")
	f.Del("all", "1")
	f.Del("all", "false")
	f.Del("all", "0")
	rep, err := s.b.VolumesPrune(ctx, f, anonOnly)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, rep)
}

func (s *server) networksList(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	f, err := filtersParam(r)
	if err != nil {
		return err
	}
	list, err := s.b.NetworkList(ctx, f)
	if err != nil {
		return err
	}
	if list == nil {
		list = []network.Summary{}
	}
	return writeJSON(w, http.StatusOK, list)
}

func (s *server) networkInspect(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	n, err := s.b.NetworkInspect(ctx, vars["name"])
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, n)
}

func (s *server) networksPrune(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	f, err := filtersParam(r)
	if err != nil {
		return err
	}
	rep, err := s.b.NetworksPrune(ctx, f)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, rep)
}

func (s *server) networkCreate(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	var req network.CreateRequest
	_ = json.NewDecoder(r.Body).Decode(&req)
	return s.b.NetworkRefuse(ctx, "create", req.Name)
}

func (s *server) networkDelete(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	return s.b.NetworkRefuse(ctx, "remove", vars["name"])
}

func (s *server) networkConnect(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	return s.b.NetworkRefuse(ctx, "connect", vars["name"])
}

func (s *server) networkDisconnect(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	return s.b.NetworkRefuse(ctx, "disconnect", vars["name"])
}
