package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"path/filepath"

	"github.com/docker/docker/api/types/container"
)

// ArchiveBackend is `docker cp` and `docker export`.
type ArchiveBackend interface {
	// ContainerStatPath stats path in the container's filesystem (the last
	// element not followed).
	ContainerStatPath(ctx context.Context, name, path string) (*container.PathStat, error)
	// ContainerArchivePath returns a tar of path; closing it releases what
	// the read holds (a stopped container's temporary mount).
	ContainerArchivePath(ctx context.Context, name, path string) (io.ReadCloser, *container.PathStat, error)
	// ContainerExtractToDir extracts the tar r into the directory path.
	ContainerExtractToDir(ctx context.Context, name, path string, copyUIDGID, noOverwriteDirNonDir bool, r io.Reader) error
	// ContainerExport returns a tar of the container's root filesystem.
	ContainerExport(ctx context.Context, name string) (io.ReadCloser, error)
}

// archiveParams are dockerd's httputils.ArchiveFormValues.
func archiveParams(r *http.Request, vars map[string]string) (string, string, error) {
	name := vars["name"]
	if name == "" {
		return "", "", InvalidParameterError(errors.New("bad parameter: 'name' cannot be empty"))
	}
	p := filepath.FromSlash(r.Form.Get("path"))
	if p == "" {
		return "", "", InvalidParameterError(errors.New("bad parameter: 'path' cannot be empty"))
	}
	return name, p, nil
}

func setPathStatHeader(w http.ResponseWriter, st *container.PathStat) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	w.Header().Set("X-Docker-Container-Path-Stat", base64.StdEncoding.EncodeToString(b))
	return nil
}

func (s *server) containerArchiveHead(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	name, p, err := archiveParams(r, vars)
	if err != nil {
		return err
	}
	st, err := s.b.ContainerStatPath(ctx, name, p)
	if err != nil {
		return err
	}
	return setPathStatHeader(w, st)
}

func (s *server) containerArchiveGet(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	name, p, err := archiveParams(r, vars)
	if err != nil {
		return err
	}
	rc, st, err := s.b.ContainerArchivePath(ctx, name, p)
	if err != nil {
		return err
	}
	defer rc.Close()
	if err := setPathStatHeader(w, st); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/x-tar")
	// Once the body started, an error can only cut the stream short.
	_, _ = io.Copy(w, rc)
	return nil
}

func (s *server) containerArchivePut(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	name, p, err := archiveParams(r, vars)
	if err != nil {
		return err
	}
	err = s.b.ContainerExtractToDir(ctx, name, p, boolValue(r, "copyUIDGID"), boolValue(r, "noOverwriteDirNonDir"), r.Body)
	return overLimit(r.Body, err)
}

func (s *server) containerExport(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	rc, err := s.b.ContainerExport(ctx, vars["name"])
	if err != nil {
		return err
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/x-tar")
	_, _ = io.Copy(w, rc)
	return nil
}
