package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/api/types/versions"
)

const (
	// APIVersion is the highest API version served; clients negotiate down.
	APIVersion = "1.51"
	// MinAPIVersion is the oldest version accepted in a /v prefix.
	MinAPIVersion = "1.24"
	// DefaultMaxContextSize bounds a build context read into the engine.
	DefaultMaxContextSize int64 = 1 << 30
)

// Backend is the engine behind the API: one view of the image store, the
// builder and the event bus.
type Backend interface {
	Info(ctx context.Context) (*system.Info, error)
	Images(ctx context.Context, opts image.ListOptions) ([]image.Summary, error)
	ImageInspect(ctx context.Context, name string) (*ImageInspect, error)
	ImageHistory(ctx context.Context, name string) ([]image.HistoryResponseItem, error)
	// ImageTag gives the image named source the reference ref (already
	// normalised, e.g. "docker.io/library/app:latest").
	ImageTag(ctx context.Context, source, ref string) error
	ImageDelete(ctx context.Context, name string, force, prune bool) ([]image.DeleteResponse, error)
	ImagesPrune(ctx context.Context, f filters.Args) (*image.PruneReport, error)
	BuildCachePrune(ctx context.Context, opts build.CachePruneOptions) (*build.CachePruneReport, error)
	// ImageSave writes a docker-save tar of the named images.
	ImageSave(ctx context.Context, names []string, w io.Writer) error
	// ImageLoad imports a docker-save (or OCI layout) tar and reports each
	// loaded image through out as a stream line ("Loaded image: busybox:latest\n").
	ImageLoad(ctx context.Context, r io.Reader, out io.Writer) error
	// Build runs a classic build; it returns the final image ID.
	Build(ctx context.Context, cfg BuildConfig) (string, error)
	// SubscribeEvents returns past events in [since, until] matching f and,
	// unless the window is closed, a channel of new ones; cancel releases it.
	SubscribeEvents(since, until time.Time, f filters.Args) (past []events.Message, live <-chan events.Message, cancel func())

	ContainerBackend
	RegistryBackend
	ArchiveBackend
	VolumeBackend
	NetworkBackend
	DiskUsageBackend
}

// ImageInspect is one image for GET /images/{name}/json.
type ImageInspect struct {
	Response *image.InspectResponse
	// StoredConfig is the run config in the image's config, which
	// clients before API 1.50 get whole as Config.
	StoredConfig *container.Config
}

// BuildConfig is one /build request after the context has been read whole.
type BuildConfig struct {
	Options *build.ImageBuildOptions // Context holds the whole tar, seekable
	// Stdout and Stderr format each Write as one "stream" message (stderr
	// in red, as dockerd does for RUN output).
	Stdout, Stderr io.Writer
	// Aux sends an {"aux": v} message; nil when the client is older than 1.30.
	Aux func(v any) error
}

// Options configure the server.
type Options struct {
	Version        string // engine version reported by /version and Server
	MaxContextSize int64  // build context limit in bytes; 0 means DefaultMaxContextSize
	TempDir        string // where build contexts are spooled; "" means os.TempDir
	Logger         *slog.Logger
	// Unrecorded: no call to this server is recorded as the learner's
	// (RecordsBackend). labd's grader has a socket of its own served so;
	// nothing a request carries can make the learner's socket skip one.
	Unrecorded bool

	// MaxRequestBody bounds every other request body (JSON); 0 means
	// DefaultMaxRequestBody. MaxLoadSize bounds a `docker load` archive,
	// MaxCopySize a `docker cp` into a container; 0 means their defaults.
	// A body past its limit is a 413 naming the limit (limits.go).
	MaxRequestBody, MaxLoadSize, MaxCopySize int64
}

type handlerFunc func(ctx context.Context, w http.ResponseWriter, r *http.Request, vars map[string]string) error

type route struct {
	method  string
	pattern string
	re      *regexp.Regexp
	names   []string
	h       handlerFunc
	body    bodyKind // the limit on its request body
}

type server struct {
	b      Backend
	opts   Options
	routes []*route
	log    *slog.Logger
}

var versionPrefix = regexp.MustCompile(`^/v([0-9.]+)(/.*)$`)
var paramRE = regexp.MustCompile(`\{([a-z]+)\}`)

// New returns the Docker Engine API handler for b.
func New(b Backend, opts Options) http.Handler {
	if opts.Version == "" {
		opts.Version = "28.5.2"
	}
	if opts.MaxContextSize <= 0 {
		opts.MaxContextSize = DefaultMaxContextSize
	}
	if opts.MaxRequestBody <= 0 {
		opts.MaxRequestBody = DefaultMaxRequestBody
	}
	if opts.MaxLoadSize <= 0 {
		opts.MaxLoadSize = DefaultMaxLoadSize
	}
	if opts.MaxCopySize <= 0 {
		opts.MaxCopySize = DefaultMaxCopySize
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &server{b: b, opts: opts, log: opts.Logger}
	s.routes = s.table()
	for _, rt := range s.routes {
		var names []string
		// QuoteMeta escapes the braces; undo that before substituting.
		quoted := strings.NewReplacer(`\{`, "{", `\}`, "}").Replace(regexp.QuoteMeta(rt.pattern))
		expr := "^" + paramRE.ReplaceAllStringFunc(quoted, func(m string) string {
			names = append(names, m[1:len(m)-1])
			// Image names may contain "/" (user/app:tag), so a parameter
			// spans segments; the fixed suffix anchors it.
			return "(.+)"
		}) + "$"
		rt.re = regexp.MustCompile(expr)
		rt.names = names
	}
	return s
}

// table is every route the engine serves, in match order.
func (s *server) table() []*route {
	return []*route{
		{method: "GET", pattern: "/_ping", h: s.ping},
		{method: "HEAD", pattern: "/_ping", h: s.ping},
		{method: "GET", pattern: "/version", h: s.version},
		{method: "GET", pattern: "/info", h: s.info},
		{method: "GET", pattern: "/events", h: s.events},

		{method: "POST", pattern: "/build", h: s.build, body: bodyContext},
		{method: "POST", pattern: "/build/prune", h: s.buildPrune},

		{method: "GET", pattern: "/images/json", h: s.imagesList},
		{method: "GET", pattern: "/images/get", h: s.imagesGet},
		{method: "POST", pattern: "/images/load", h: s.imagesLoad, body: bodyLoad},
		{method: "POST", pattern: "/images/create", h: s.imagePull},
		{method: "POST", pattern: "/images/prune", h: s.imagesPrune},
		{method: "GET", pattern: "/images/{name}/json", h: s.imageInspect},
		{method: "GET", pattern: "/images/{name}/history", h: s.imageHistory},
		{method: "GET", pattern: "/images/{name}/get", h: s.imageGet},
		{method: "POST", pattern: "/images/{name}/tag", h: s.imageTag},
		{method: "POST", pattern: "/images/{name}/push", h: s.imagePush},
		{method: "POST", pattern: "/auth", h: s.auth},
		{method: "DELETE", pattern: "/images/{name}", h: s.imageDelete},

		{method: "POST", pattern: "/containers/create", h: s.containerCreate},
		{method: "GET", pattern: "/containers/json", h: s.containersList},
		{method: "POST", pattern: "/containers/prune", h: s.containersPrune},
		{method: "GET", pattern: "/containers/{name}/json", h: s.containerInspect},
		{method: "GET", pattern: "/containers/{name}/logs", h: s.containerLogs},
		{method: "GET", pattern: "/containers/{name}/changes", h: s.containerChanges},
		{method: "GET", pattern: "/containers/{name}/top", h: s.containerTop},
		{method: "POST", pattern: "/containers/{name}/start", h: s.containerStart},
		{method: "POST", pattern: "/containers/{name}/wait", h: s.containerWait},
		{method: "POST", pattern: "/containers/{name}/attach", h: s.containerAttach},
		{method: "POST", pattern: "/containers/{name}/resize", h: s.containerResize},
		{method: "POST", pattern: "/containers/{name}/stop", h: s.containerStop},
		{method: "POST", pattern: "/containers/{name}/restart", h: s.containerRestart},
		{method: "POST", pattern: "/containers/{name}/kill", h: s.containerKill},
		{method: "POST", pattern: "/containers/{name}/rename", h: s.containerRename},
		{method: "POST", pattern: "/containers/{name}/exec", h: s.execCreate},
		{method: "DELETE", pattern: "/containers/{name}", h: s.containerDelete},
		{method: "HEAD", pattern: "/containers/{name}/archive", h: s.containerArchiveHead},
		{method: "GET", pattern: "/containers/{name}/archive", h: s.containerArchiveGet},
		{method: "PUT", pattern: "/containers/{name}/archive", h: s.containerArchivePut, body: bodyCopy},
		{method: "GET", pattern: "/containers/{name}/export", h: s.containerExport},

		{method: "GET", pattern: "/volumes", h: s.volumesList},
		{method: "POST", pattern: "/volumes/create", h: s.volumeCreate},
		{method: "POST", pattern: "/volumes/prune", h: s.volumesPrune},
		{method: "GET", pattern: "/volumes/{name}", h: s.volumeInspect},
		{method: "DELETE", pattern: "/volumes/{name}", h: s.volumeDelete},

		{method: "GET", pattern: "/networks", h: s.networksList},
		{method: "POST", pattern: "/networks/create", h: s.networkCreate},
		{method: "POST", pattern: "/networks/prune", h: s.networksPrune},
		{method: "GET", pattern: "/networks/{name}", h: s.networkInspect},
		{method: "DELETE", pattern: "/networks/{name}", h: s.networkDelete},
		{method: "POST", pattern: "/networks/{name}/connect", h: s.networkConnect},
		{method: "POST", pattern: "/networks/{name}/disconnect", h: s.networkDisconnect},

		{method: "GET", pattern: "/system/df", h: s.systemDF},

		{method: "POST", pattern: "/exec/{id}/start", h: s.execStart},
		{method: "POST", pattern: "/exec/{id}/resize", h: s.execResize},
		{method: "GET", pattern: "/exec/{id}/json", h: s.execInspect},

		// labd's extension for graders (routes_labd.go, docs/engine.md).
		{method: "GET", pattern: RecordsPath, h: s.labdRecords},
	}
}

type pageNotFound struct{}

func (pageNotFound) Error() string { return "page not found" }
func (pageNotFound) NotFound()     {}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Api-Version", APIVersion)
	h.Set("Ostype", "linux")
	h.Set("Server", "Docker/"+s.opts.Version+" (linux)")
	h.Set("Docker-Experimental", "false")

	path := r.URL.Path
	version := APIVersion
	if m := versionPrefix.FindStringSubmatch(path); m != nil {
		version, path = m[1], m[2]
		if versions.LessThan(version, MinAPIVersion) {
			writeError(w, InvalidParameterError(fmt.Errorf("client version %s is too old. Minimum supported API version is %s, please upgrade your client to a newer version", version, MinAPIVersion)))
			return
		}
	}
	ctx := context.WithValue(r.Context(), versionKey{}, version)
	for _, rt := range s.routes {
		if rt.method != r.Method {
			continue
		}
		m := rt.re.FindStringSubmatch(path)
		if m == nil {
			continue
		}
		vars := map[string]string{}
		for i, n := range rt.names {
			vars[n] = m[i+1]
		}
		// Before ParseForm, which reads a form-encoded body.
		lim := s.bodyLimit(rt.body)
		r.Body = &limitedBody{rc: r.Body, left: lim.limit, err: lim}
		if err := r.ParseForm(); err != nil {
			writeError(w, InvalidParameterError(err))
			return
		}
		w, recorded := s.recordCall(w, r, path)
		defer recorded()
		if err := rt.h(ctx, w, r.WithContext(ctx), vars); err != nil {
			if !errors.Is(err, context.Canceled) {
				s.log.Debug("engine api", "method", r.Method, "path", r.URL.Path, "err", err)
			}
			writeError(w, err)
		}
		return
	}
	// dockerd answers unknown paths and wrong methods alike.
	writeError(w, pageNotFound{})
}

type versionKey struct{}

// apiVersion is the version the client asked for (the prefix), or the
// newest when it sent none.
func apiVersion(ctx context.Context) string {
	if v, ok := ctx.Value(versionKey{}).(string); ok {
		return v
	}
	return APIVersion
}

// boolValue reads a query boolean the way dockerd does.
// filtersParam parses the request's "filters" query value (JSON, both
// {"k":{"v":true}} and the legacy {"k":["v"]} forms); malformed filters are
// a 400, as from dockerd.
func filtersParam(r *http.Request) (filters.Args, error) {
	f, err := filters.FromJSON(r.Form.Get("filters"))
	if err != nil {
		return filters.Args{}, InvalidParameterError(err)
	}
	return f, nil
}

func boolValue(r *http.Request, k string) bool {
	switch strings.ToLower(strings.TrimSpace(r.FormValue(k))) {
	case "", "0", "no", "false", "none":
		return false
	}
	return true
}
