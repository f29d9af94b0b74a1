package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	timetypes "github.com/docker/docker/api/types/time"
	"github.com/docker/docker/api/types/versions"
)

func (s *server) ping(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	h := w.Header()
	h.Add("Cache-Control", "no-cache, no-store, must-revalidate")
	h.Add("Pragma", "no-cache")
	// "1": the classic builder; the CLI then builds without BuildKit
	// unless told otherwise.
	h.Set("Builder-Version", "1")
	h.Set("Swarm", "inactive")
	if r.Method == http.MethodHead {
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("Content-Length", "0")
		return nil
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	_, err := w.Write([]byte("OK"))
	return err
}

// kernelVersion is read once; uname does not change while we run.
var kernelVersion = unameRelease()

func (s *server) version(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	v := types.Version{
		Components: []types.ComponentVersion{{
			Name:    "Engine",
			Version: s.opts.Version,
			Details: map[string]string{
				"ApiVersion":    APIVersion,
				"MinAPIVersion": MinAPIVersion,
				"GitCommit":     "labd",
				"GoVersion":     runtime.Version(),
				"Os":            runtime.GOOS,
				"Arch":          runtime.GOARCH,
				"KernelVersion": kernelVersion,
				"Experimental":  "false",
				"BuildTime":     "",
			},
		}},
		Version:       s.opts.Version,
		APIVersion:    APIVersion,
		MinAPIVersion: MinAPIVersion,
		GitCommit:     "labd",
		GoVersion:     runtime.Version(),
		Os:            runtime.GOOS,
		Arch:          runtime.GOARCH,
		KernelVersion: kernelVersion,
	}
	v.Platform.Name = "labd engine"
	return writeJSON(w, http.StatusOK, v)
}

func (s *server) info(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	info, err := s.b.Info(ctx)
	if err != nil {
		return err
	}
	if info.ServerVersion == "" {
		info.ServerVersion = s.opts.Version
	}
	if info.KernelVersion == "" {
		info.KernelVersion = kernelVersion
	}
	return writeJSON(w, http.StatusOK, info)
}

type invalidRequest struct{ error }

func (invalidRequest) InvalidParameter() {}

func eventTime(formTime string) (time.Time, error) {
	t, tNano, err := timetypes.ParseTimestamps(formTime, -1)
	if err != nil {
		return time.Time{}, invalidRequest{err}
	}
	if t == -1 {
		return time.Time{}, nil
	}
	return time.Unix(t, tNano), nil
}

func (s *server) events(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	since, err := eventTime(r.Form.Get("since"))
	if err != nil {
		return err
	}
	until, err := eventTime(r.Form.Get("until"))
	if err != nil {
		return err
	}
	var timeout <-chan time.Time
	onlyPast := false
	if !until.IsZero() {
		if until.Before(since) {
			return invalidRequest{fmt.Errorf("`since` time (%s) cannot be after `until` time (%s)", r.Form.Get("since"), r.Form.Get("until"))}
		}
		now := time.Now()
		onlyPast = until.Before(now)
		if !onlyPast {
			t := time.NewTimer(until.Sub(now))
			defer t.Stop()
			timeout = t.C
		}
	}
	ef, err := filters.FromJSON(r.Form.Get("filters"))
	if err != nil {
		return invalidRequest{err}
	}

	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	flush := func() {
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
	flush()

	past, live, cancel := s.b.SubscribeEvents(since, until, ef)
	defer cancel()
	// Image create events exist from API 1.46 on.
	skip := func(ev events.Message) bool {
		return versions.LessThan(apiVersion(ctx), "1.46") && ev.Type == events.ImageEventType && ev.Action == events.ActionCreate
	}
	enc := json.NewEncoder(w)
	for _, ev := range past {
		if skip(ev) {
			continue
		}
		if err := enc.Encode(ev); err != nil {
			return nil
		}
	}
	flush()
	if onlyPast || live == nil {
		return nil
	}
	for {
		select {
		case ev, ok := <-live:
			if !ok {
				return nil
			}
			if skip(ev) {
				continue
			}
			if err := enc.Encode(ev); err != nil {
				return nil
			}
			flush()
		case <-timeout:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}
