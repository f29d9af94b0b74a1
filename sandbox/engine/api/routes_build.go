package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/api/types/versions"
)

// buildOptions reads the query like dockerd's newImageBuildOptions; the
// CLI 20.10 sends every field, zero or not.
func buildOptions(ctx context.Context, r *http.Request) (*build.ImageBuildOptions, error) {
	o := &build.ImageBuildOptions{
		Version:        build.BuilderV1,
		Dockerfile:     r.FormValue("dockerfile"),
		SuppressOutput: boolValue(r, "q"),
		NoCache:        boolValue(r, "nocache"),
		ForceRemove:    boolValue(r, "forcerm"),
		PullParent:     boolValue(r, "pull"),
		CPUSetCPUs:     r.FormValue("cpusetcpus"),
		CPUSetMems:     r.FormValue("cpusetmems"),
		CgroupParent:   r.FormValue("cgroupparent"),
		NetworkMode:    r.FormValue("networkmode"),
		Tags:           r.Form["t"],
		ExtraHosts:     r.Form["extrahosts"],
		Squash:         boolValue(r, "squash"),
		Target:         r.FormValue("target"),
		RemoteContext:  r.FormValue("remote"),
		SessionID:      r.FormValue("session"),
		BuildID:        r.FormValue("buildid"),
		Platform:       r.FormValue("platform"),
		Isolation:      container.Isolation(r.FormValue("isolation")),
		SecurityOpt:    r.Form["securityopt"],
	}
	for k, dst := range map[string]*int64{"memory": &o.Memory, "memswap": &o.MemorySwap, "cpushares": &o.CPUShares, "cpuperiod": &o.CPUPeriod, "cpuquota": &o.CPUQuota, "shmsize": &o.ShmSize} {
		if v := r.FormValue(k); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, InvalidParameterError(fmt.Errorf("invalid %s value %q: %w", k, v, err))
			}
			*dst = n
		}
	}
	switch {
	case o.ForceRemove:
		o.Remove = true
	case r.FormValue("rm") == "":
		o.Remove = true
	default:
		o.Remove = boolValue(r, "rm")
	}
	if v := r.FormValue("ulimits"); v != "" {
		var u []*container.Ulimit
		if err := json.Unmarshal([]byte(v), &u); err != nil {
			return nil, InvalidParameterError(fmt.Errorf("error reading ulimit settings: %w", err))
		}
		o.Ulimits = u
	}
	if v := r.FormValue("buildargs"); v != "" {
		args := map[string]*string{}
		if err := json.Unmarshal([]byte(v), &args); err != nil {
			return nil, InvalidParameterError(fmt.Errorf("error reading build args: %w", err))
		}
		o.BuildArgs = args
	}
	if v := r.FormValue("labels"); v != "" {
		labels := map[string]string{}
		if err := json.Unmarshal([]byte(v), &labels); err != nil {
			return nil, InvalidParameterError(fmt.Errorf("error reading labels: %w", err))
		}
		o.Labels = labels
	}
	if v := r.FormValue("cachefrom"); v != "" {
		var cf []string
		if err := json.Unmarshal([]byte(v), &cf); err != nil {
			return nil, InvalidParameterError(fmt.Errorf("error reading cache-from: %w", err))
		}
		o.CacheFrom = cf
	}
	if v := r.FormValue("version"); v != "" {
		switch build.BuilderVersion(v) {
		case build.BuilderV1:
		case build.BuilderBuildKit:
			return nil, InvalidParameterError(errors.New("BuildKit is not supported by this engine: set DOCKER_BUILDKIT=0"))
		default:
			return nil, InvalidParameterError(fmt.Errorf("invalid version %q", v))
		}
	}
	o.AuthConfigs = authConfigs(r.Header.Get("X-Registry-Config"))
	return o, nil
}

func authConfigs(enc string) map[string]registry.AuthConfig {
	out := map[string]registry.AuthConfig{}
	if enc == "" {
		return out
	}
	// Like dockerd, a bad header means anonymous, not an error.
	dec := base64.NewDecoder(base64.URLEncoding, strings.NewReader(enc))
	_ = json.NewDecoder(dec).Decode(&out)
	return out
}

// spool reads the whole build context before any output is written, as
// dockerd does, into a temporary file that is removed once the build ends.
// body is limited to MaxContextSize (ServeHTTP): past it, the answer is
// a 413 naming the limit.
func (s *server) spool(body io.Reader) (*os.File, error) {
	f, err := os.CreateTemp(s.opts.TempDir, "build-context-*.tar")
	if err != nil {
		return nil, fmt.Errorf("spool build context: %w", err)
	}
	_ = os.Remove(f.Name()) // gone from the tree at once: nothing leaks on a crash
	if _, err := io.Copy(f, body); err != nil {
		f.Close()
		// Drain nothing more: closing the request is enough.
		return nil, overLimit(body, fmt.Errorf("read build context: %w", err))
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// BuildAdmitter is a Backend that can tell before the build context is
// read that Build would refuse the build (too many running): the client
// then gets the refusal without sending its context first.
type BuildAdmitter interface {
	AdmitBuild() error
}

func (s *server) build(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	opts, err := buildOptions(ctx, r)
	if err != nil {
		return err
	}
	if a, ok := s.b.(BuildAdmitter); ok {
		if err := a.AdmitBuild(); err != nil {
			return err
		}
	}
	f, err := s.spool(r.Body)
	if err != nil {
		return err
	}
	defer f.Close()
	opts.Context = f

	w.Header().Set("Content-Type", "application/json")
	st := newJSONStream(w)
	var quietBuf strings.Builder
	var out io.Writer = streamWriter{s: st}
	var errOut io.Writer = streamWriter{s: st, stderr: true}
	if opts.SuppressOutput {
		qs := &jsonStream{w: &quietBuf}
		out, errOut = streamWriter{s: qs}, streamWriter{s: qs, stderr: true}
	}
	cfg := BuildConfig{Options: opts, Stdout: out, Stderr: errOut}
	if versions.GreaterThanOrEqualTo(apiVersion(ctx), "1.30") {
		cfg.Aux = st.aux
	}
	id, err := s.b.Build(ctx, cfg)
	if err != nil {
		if opts.SuppressOutput && quietBuf.Len() > 0 {
			_ = st.raw([]byte(quietBuf.String()))
		}
		if !st.started() {
			return err
		}
		_ = st.sendError(err)
		return nil
	}
	if opts.SuppressOutput {
		_, _ = fmt.Fprintln(streamWriter{s: st}, id)
	}
	if !st.started() {
		w.WriteHeader(http.StatusOK)
	}
	return nil
}

func (s *server) buildPrune(ctx context.Context, w http.ResponseWriter, r *http.Request, _ map[string]string) error {
	f, err := filtersParam(r)
	if err != nil {
		return err
	}
	rep, err := s.b.BuildCachePrune(ctx, build.CachePruneOptions{All: boolValue(r, "all"), Filters: f})
	if err != nil {
		return err
	}
	if rep == nil {
		rep = &build.CachePruneReport{}
	}
	return writeJSON(w, http.StatusOK, rep)
}
