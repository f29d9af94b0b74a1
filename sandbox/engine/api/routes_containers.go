package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/versions"
	"github.com/docker/docker/pkg/stdcopy"
)

// ContainerBackend is the container half of the engine.
type ContainerBackend interface {
	ContainerCreate(ctx context.Context, name string, cfg *container.Config, hc *container.HostConfig, nc *network.NetworkingConfig) (container.CreateResponse, error)
	// ContainerStart answers NotModified when the container runs already.
	ContainerStart(ctx context.Context, name string) error
	// ContainerWait resolves the container and returns a channel that gets
	// the result once condition holds.
	ContainerWait(ctx context.Context, name string, condition container.WaitCondition) (<-chan container.WaitResponse, error)
	ContainerList(ctx context.Context, opts container.ListOptions) ([]container.Summary, error)
	ContainerInspect(ctx context.Context, name string, size bool) (*container.InspectResponse, error)
	ContainerLogs(ctx context.Context, name string, cfg LogsConfig) error
	ContainerAttach(ctx context.Context, name string, cfg AttachConfig) error
	ContainerResize(ctx context.Context, name string, height, width uint16) error
	// ContainerStop sends signal ("" = the container's StopSignal) and
	// kills after timeout seconds (nil = the container's StopTimeout, else
	// 10; negative = wait forever). NotModified when not running.
	ContainerStop(ctx context.Context, name, signal string, timeout *int) error
	ContainerKill(ctx context.Context, name, signal string) error
	ContainerRestart(ctx context.Context, name, signal string, timeout *int) error
	ContainerRemove(ctx context.Context, name string, force, volumes bool) error
	ContainerChanges(ctx context.Context, name string) ([]container.FilesystemChange, error)
	ContainersPrune(ctx context.Context, f filters.Args) (*container.PruneReport, error)
	ContainerTop(ctx context.Context, name, psArgs string) (*container.TopResponse, error)
	ContainerRename(ctx context.Context, name, newName string) error

	ExecCreate(ctx context.Context, name string, opts *container.ExecOptions) (string, error)
	ExecStart(ctx context.Context, id string, cfg ExecStartConfig) error
	ExecResize(ctx context.Context, id string, height, width uint16) error
	ExecInspect(ctx context.Context, id string) (*container.ExecInspect, error)
}

// LogsConfig is one /containers/{id}/logs request.
type LogsConfig struct {
	container.LogsOptions
	// Start is called once the container is known, before any output; it
	// returns where each stream goes (framed without a TTY).
	Start func(tty bool) (stdout, stderr io.Writer)
}

// Streams is a hijacked connection split into the container's streams.
type Streams struct {
	Stdin          io.ReadCloser // nil unless asked for
	Stdout, Stderr io.Writer     // nil unless asked for
	// Close ends the connection (after the output has been written).
	Close func() error
}

// AttachConfig is one /containers/{id}/attach request.
type AttachConfig struct {
	Stdin, Stdout, Stderr bool
	Stream, Logs          bool
	DetachKeys            string
	// Hijack takes over the connection once the request is known to be
	// valid; tty selects raw or multiplexed output.
	Hijack func(tty bool) (*Streams, error)
}

// ExecStartConfig is one /exec/{id}/start request.
type ExecStartConfig struct {
	Detach      bool
	ConsoleSize *[2]uint
	// Hijack is as AttachConfig's; nil with Detach.
	Hijack func(tty bool) (*Streams, error)
}

func (s *server) containerCreate(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return InvalidParameterError(fmt.Errorf("unsupported Content-Type header (%s): must be 'application/json'", ct))
	}
	var req container.CreateRequest
	dec := json.NewDecoder(r.Body)
	if err := dec.Decode(&req); err != nil {
		if errors.Is(err, io.EOF) {
			return InvalidParameterError(errors.New("invalid JSON: got EOF while reading request body"))
		}
		return InvalidParameterError(fmt.Errorf("invalid JSON: %w", err))
	}
	if req.Config == nil {
		return InvalidParameterError(errors.New("config cannot be empty in order to create a container"))
	}
	if req.HostConfig == nil {
		req.HostConfig = &container.HostConfig{}
	}
	resp, err := s.b.ContainerCreate(ctx, r.Form.Get("name"), req.Config, req.HostConfig, req.NetworkingConfig)
	if err != nil {
		return err
	}
	if resp.Warnings == nil {
		resp.Warnings = []string{}
	}
	return writeJSON(w, http.StatusCreated, resp)
}

func (s *server) containerStart(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	// dockerd refuses a HostConfig at start (API ≥ 1.24): a body longer
	// than "null" or "{}" means one.
	if r.ContentLength > 7 {
		return InvalidParameterError(errors.New("starting container with non-empty request body was deprecated since API v1.22 and removed in v1.24"))
	}
	if err := s.b.ContainerStart(ctx, vars["name"]); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *server) containerWait(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	cond := container.WaitConditionNotRunning
	if c := r.Form.Get("condition"); c != "" {
		switch container.WaitCondition(c) {
		case container.WaitConditionNotRunning, container.WaitConditionNextExit, container.WaitConditionRemoved:
			cond = container.WaitCondition(c)
		default:
			return InvalidParameterError(fmt.Errorf("invalid condition: %q", c))
		}
	}
	ch, err := s.b.ContainerWait(ctx, vars["name"], cond)
	if err != nil {
		return err
	}
	// The client starts the container only after the headers arrived.
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	select {
	case res, ok := <-ch:
		if !ok {
			return nil
		}
		body := struct {
			StatusCode int64
			Error      *container.WaitExitError `json:"Error"`
		}{StatusCode: res.StatusCode, Error: res.Error}
		if versions.LessThan(apiVersion(ctx), "1.30") {
			return json.NewEncoder(w).Encode(struct{ StatusCode int64 }{res.StatusCode})
		}
		return json.NewEncoder(w).Encode(body)
	case <-ctx.Done():
		return nil
	}
}

func (s *server) containersList(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	f, err := filtersParam(r)
	if err != nil {
		return err
	}
	opts := container.ListOptions{All: boolValue(r, "all"), Size: boolValue(r, "size"), Filters: f}
	if v := r.Form.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return InvalidParameterError(err)
		}
		opts.Limit = n
	}
	list, err := s.b.ContainerList(ctx, opts)
	if err != nil {
		return err
	}
	if list == nil {
		list = []container.Summary{}
	}
	return writeJSON(w, http.StatusOK, list)
}

func (s *server) containerInspect(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	resp, err := s.b.ContainerInspect(ctx, vars["name"], boolValue(r, "size"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, resp)
}

func (s *server) containerLogs(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	opts := container.LogsOptions{
		ShowStdout: boolValue(r, "stdout"),
		ShowStderr: boolValue(r, "stderr"),
		Timestamps: boolValue(r, "timestamps"),
		Follow:     boolValue(r, "follow"),
		Details:    boolValue(r, "details"),
		Since:      r.Form.Get("since"),
		Until:      r.Form.Get("until"),
		Tail:       r.Form.Get("tail"),
	}
	if !opts.ShowStdout && !opts.ShowStderr {
		return InvalidParameterError(errors.New("Bad parameters: you must choose at least one stream"))
	}
	version := apiVersion(ctx)
	started := false
	err := s.b.ContainerLogs(ctx, vars["name"], LogsConfig{LogsOptions: opts, Start: func(tty bool) (io.Writer, io.Writer) {
		started = true
		ct := "application/vnd.docker.raw-stream"
		if !tty && versions.GreaterThanOrEqualTo(version, "1.42") {
			ct = "application/vnd.docker.multiplexed-stream"
		}
		w.Header().Set("Content-Type", ct)
		w.WriteHeader(http.StatusOK)
		fw := &flushWriter{w: w}
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		if tty {
			return fw, fw
		}
		return stdcopy.NewStdWriter(fw, stdcopy.Stdout), stdcopy.NewStdWriter(fw, stdcopy.Stderr)
	}})
	if err != nil && started {
		// Headers are gone: the stream just ends.
		return nil
	}
	return err
}

func (s *server) containerAttach(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	cfg := AttachConfig{
		Stdin:      boolValue(r, "stdin"),
		Stdout:     boolValue(r, "stdout"),
		Stderr:     boolValue(r, "stderr"),
		Stream:     boolValue(r, "stream"),
		Logs:       boolValue(r, "logs"),
		DetachKeys: r.Form.Get("detachKeys"),
	}
	cfg.Hijack = func(tty bool) (*Streams, error) {
		return hijack(ctx, w, r, tty, cfg.Stdin, cfg.Stdout, cfg.Stderr)
	}
	return s.b.ContainerAttach(ctx, vars["name"], cfg)
}

func sizeParams(r *http.Request) (uint16, uint16, error) {
	h, err := strconv.ParseUint(r.Form.Get("h"), 10, 16)
	if err != nil {
		return 0, 0, InvalidParameterError(fmt.Errorf("invalid resize height %q: %w", r.Form.Get("h"), err))
	}
	wd, err := strconv.ParseUint(r.Form.Get("w"), 10, 16)
	if err != nil {
		return 0, 0, InvalidParameterError(fmt.Errorf("invalid resize width %q: %w", r.Form.Get("w"), err))
	}
	return uint16(h), uint16(wd), nil
}

func (s *server) containerResize(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	h, wd, err := sizeParams(r)
	if err != nil {
		return err
	}
	if err := s.b.ContainerResize(ctx, vars["name"], h, wd); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// stopParams reads stop's and restart's signal (only from API 1.42, as
// dockerd) and grace period t.
func stopParams(ctx context.Context, r *http.Request) (signal string, timeout *int, err error) {
	if timeout, err = timeoutParam(r); err != nil {
		return "", nil, err
	}
	if versions.GreaterThanOrEqualTo(apiVersion(ctx), "1.42") {
		signal = r.Form.Get("signal")
	}
	return signal, timeout, nil
}

func timeoutParam(r *http.Request) (*int, error) {
	v := r.Form.Get("t")
	if v == "" {
		return nil, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return nil, InvalidParameterError(err)
	}
	return &n, nil
}

func (s *server) containerStop(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	sig, t, err := stopParams(ctx, r)
	if err != nil {
		return err
	}
	if err := s.b.ContainerStop(ctx, vars["name"], sig, t); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *server) containerRestart(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	sig, t, err := stopParams(ctx, r)
	if err != nil {
		return err
	}
	if err := s.b.ContainerRestart(ctx, vars["name"], sig, t); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *server) containerKill(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	if err := s.b.ContainerKill(ctx, vars["name"], r.Form.Get("signal")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *server) containerDelete(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	if boolValue(r, "link") {
		return InvalidParameterError(errors.New("links are not supported"))
	}
	if err := s.b.ContainerRemove(ctx, vars["name"], boolValue(r, "force"), boolValue(r, "v")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *server) containerChanges(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	ch, err := s.b.ContainerChanges(ctx, vars["name"])
	if err != nil {
		return err
	}
	if ch == nil {
		ch = []container.FilesystemChange{}
	}
	return writeJSON(w, http.StatusOK, ch)
}

func (s *server) containersPrune(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	f, err := filtersParam(r)
	if err != nil {
		return err
	}
	rep, err := s.b.ContainersPrune(ctx, f)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, rep)
}

func (s *server) containerTop(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	top, err := s.b.ContainerTop(ctx, vars["name"], r.Form.Get("ps_args"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, top)
}

func (s *server) containerRename(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error {
	if err := s.b.ContainerRename(ctx, vars["name"], r.Form.Get("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// ForbiddenError marks err as a 403.
func ForbiddenError(err error) error { return forbiddenErr{err} }

type forbiddenErr struct{ error }

func (forbiddenErr) Forbidden()      {}
func (e forbiddenErr) Unwrap() error { return e.error }

// imagesCreate answers pulls until the engine has a registry client: the
// CLI's implicit pull on a missing image then fails with a clear message.
func (s *server) imagesCreate(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	ref := r.Form.Get("fromImage")
	if tag := r.Form.Get("tag"); tag != "" {
		ref += ":" + tag
	}
	return NotFoundError(fmt.Errorf("pull access denied for %s: this engine has no registry to pull from", ref))
}

// networksPruneNone answers POST /networks/prune with nothing deleted: the
// engine's one bridge network is never pruned, as dockerd's predefined
// networks are not.
func (s *server) networksPruneNone(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	return writeJSON(w, http.StatusOK, struct {
		NetworksDeleted []string
	}{})
}
