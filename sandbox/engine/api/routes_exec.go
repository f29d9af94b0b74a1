package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/docker/docker/api/types/container"
)

func (s *server) execCreate(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	var opts container.ExecOptions
	if err := json.NewDecoder(r.Body).Decode(&opts); err != nil {
		if errors.Is(err, io.EOF) {
			return InvalidParameterError(errors.New("invalid JSON: got EOF while reading request body"))
		}
		return InvalidParameterError(fmt.Errorf("invalid JSON: %w", err))
	}
	if len(opts.Cmd) == 0 {
		return InvalidParameterError(errors.New("No exec command specified"))
	}
	id, err := s.b.ExecCreate(ctx, vars["name"], &opts)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, container.ExecCreateResponse{ID: id})
}

func (s *server) execStart(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	var opts container.ExecStartOptions
	if r.ContentLength != 0 {
		if err := json.NewDecoder(r.Body).Decode(&opts); err != nil && !errors.Is(err, io.EOF) {
			return InvalidParameterError(fmt.Errorf("invalid JSON: %w", err))
		}
	}
	cfg := ExecStartConfig{Detach: opts.Detach, ConsoleSize: opts.ConsoleSize}
	if !opts.Detach {
		cfg.Hijack = func(tty bool) (*Streams, error) {
			return hijack(ctx, w, r, tty, true, true, true)
		}
	}
	if err := s.b.ExecStart(ctx, vars["id"], cfg); err != nil {
		return err
	}
	if opts.Detach {
		w.WriteHeader(http.StatusOK)
	}
	return nil
}

func (s *server) execResize(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	h, wd, err := sizeParams(r)
	if err != nil {
		return err
	}
	if err := s.b.ExecResize(ctx, vars["id"], h, wd); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

func (s *server) execInspect(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	resp, err := s.b.ExecInspect(ctx, vars["id"])
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, resp)
}
