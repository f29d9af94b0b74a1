package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/labd/labd/labs"
	"github.com/labd/labd/metrics"
	"github.com/labd/labd/sandbox"
	"github.com/labd/labd/sandbox/engine"
	"github.com/labd/labd/sandbox/engine/api"
	"github.com/labd/labd/sandbox/enginebox"
	"github.com/labd/labd/sandbox/nsbox"
	"github.com/labd/labd/web"
)

func init() {
	register("serve", command{
		summary: "serve the labs in a content directory over HTTP",
		run:     runServe,
	})
}

// shutdownTimeout bounds each shutdown phase (sandboxes, then HTTP).
const shutdownTimeout = 10 * time.Second

// secretSize is the length of DATA/secret, the key behind learner cookies
// and sandbox IDs.
const secretSize = 32

type serveConfig struct {
	addr           string
	content        string
	data           string
	idleTimeout    time.Duration
	maxLifetime    time.Duration
	allowedOrigins []string
	trustedProxies []netip.Prefix
	hstsSubdomains bool
	previewDomain  string
	maxUploadMiB   int64 // web.Options.MaxUpload in MiB; 0: its default
	cgroupParent   string
	logFormat      string // --log-format: text or json
	trusted        bool   // --trusted-learners: the nsbox shell may stand in for the sandbox image
	userns         bool   // --userns: containers' root is an unprivileged host uid range per sandbox
	registry       *registryFlags
	grading        gradingFlags
	engineRegistry *engineRegistryFlags
	bootstrap      []string     // base images to make in the background (bootstrap.go)
	bootstrapFrom  *imageSource // --bootstrap-source (bootstrap_source.go)
	limits         serveLimits  // per sandbox (serve_limits.go)
	admission      admission    // the most sandboxes, new ones per client (serve_admission.go)
}

func parseServeFlags(args []string, stderr io.Writer) (serveConfig, error) {
	c := serveConfig{}
	fs := flag.NewFlagSet("labd serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.addr, "addr", envDefault("LABD_ADDR", "127.0.0.1:8080"), "listen address (env LABD_ADDR)")
	fs.StringVar(&c.content, "content", envDefault("LABD_CONTENT", "./content"), "directory of labs, one folder with a lab.md each (env LABD_CONTENT)")
	fs.StringVar(&c.data, "data", envDefault("LABD_DATA", defaultDataDir), "state directory: secret and learners' workspaces (env LABD_DATA)")
	idle, err := time.ParseDuration(envDefault("LABD_IDLE_TIMEOUT", "1h"))
	if err != nil {
		return c, fmt.Errorf("LABD_IDLE_TIMEOUT: %w", err)
	}
	fs.DurationVar(&c.idleTimeout, "idle-timeout", idle, "destroy a sandbox after this long without terminal input (its learner is warned 5 minutes before, with an \"I'm still here\" button); 0 never (env LABD_IDLE_TIMEOUT)")
	life, err := time.ParseDuration(envDefault("LABD_MAX_LIFETIME", "8h"))
	if err != nil {
		return c, fmt.Errorf("LABD_MAX_LIFETIME: %w", err)
	}
	fs.DurationVar(&c.maxLifetime, "max-lifetime", life, "destroy a sandbox this long after it started, busy or not (its learner is warned before; a reload starts a new one over the same files); 0 never (env LABD_MAX_LIFETIME)")
	if v := envDefault("LABD_ALLOWED_ORIGINS", ""); v != "" {
		c.allowedOrigins = strings.Split(v, ",")
	}
	fs.Func("allowed-origin", "extra Origin allowed to open terminals, e.g. https://labs.example.com; repeatable (env LABD_ALLOWED_ORIGINS, comma-separated)", func(s string) error {
		c.allowedOrigins = append(c.allowedOrigins, s)
		return nil
	})
	if v := envDefault("LABD_TRUSTED_PROXIES", ""); v != "" {
		for _, p := range strings.Split(v, ",") {
			tp, err := web.ParseTrustedProxy(p)
			if err != nil {
				return c, fmt.Errorf("LABD_TRUSTED_PROXIES: %w", err)
			}
			c.trustedProxies = append(c.trustedProxies, tp)
		}
	}
	fs.Func("trusted-proxy", "address or CIDR of a reverse proxy whose X-Forwarded-Proto and X-Forwarded-For labd believes (TLS behind a proxy: Secure cookies, HSTS); repeatable; default none (env LABD_TRUSTED_PROXIES, comma-separated)", func(s string) error {
		tp, err := web.ParseTrustedProxy(s)
		c.trustedProxies = append(c.trustedProxies, tp)
		return err
	})
	hsts, err := envBool("LABD_HSTS_INCLUDE_SUBDOMAINS")
	if err != nil {
		return c, err
	}
	fs.BoolVar(&c.hstsSubdomains, "hsts-include-subdomains", hsts, "over TLS, extend HSTS to every subdomain of labd's host (only when all of them, preview hosts included, serve HTTPS) (env LABD_HSTS_INCLUDE_SUBDOMAINS)")
	fs.Func("preview-domain", "serve port previews also at {port}-{sandbox}.DOMAIN (wildcard DNS and certificate for *.DOMAIN; add :PORT when not 80/443), see docs/preview.md (env LABD_PREVIEW_DOMAIN)", func(s string) error {
		d, err := web.NormalizePreviewDomain(s)
		c.previewDomain = d
		return err
	})
	if v := envDefault("LABD_PREVIEW_DOMAIN", ""); v != "" {
		d, err := web.NormalizePreviewDomain(v)
		if err != nil {
			return c, fmt.Errorf("LABD_PREVIEW_DOMAIN: %w", err)
		}
		c.previewDomain = d
	}
	fs.Int64Var(&c.maxUploadMiB, "max-upload-mib", 100, "largest upload into a learner's workspace from the lab page's Files panel, in MiB (all files of one upload together)")
	fs.BoolVar(&c.trusted, "trusted-learners", envDefault("LABD_TRUSTED_LEARNERS", "") == "1", "the learners are trusted (one developer on a laptop): while the sandbox image is missing, give them the simple shell, which runs as root on this machine beside labd's data; never for a class (env LABD_TRUSTED_LEARNERS=1)")
	fs.BoolVar(&c.userns, "userns", envDefault("LABD_USERNS", "1") != "0", "run every sandbox's shell, containers and build steps in a user namespace of its own, root mapped to an unprivileged host uid range; turn off only for one trusted user (env LABD_USERNS=0)")
	fs.StringVar(&c.logFormat, "log-format", envDefault("LABD_LOG_FORMAT", "text"), "log lines as text (key=value) or json, one object per line for a log collector (env LABD_LOG_FORMAT)")
	fs.StringVar(&c.cgroupParent, "cgroup-parent", envDefault("LABD_CGROUP_PARENT", "labd"), "parent cgroup of every shell, container and build step, as dockerd's --cgroup-parent (env LABD_CGROUP_PARENT)")
	limits := addLimitFlags(fs)
	admit := addAdmissionFlags(fs)
	c.grading.add(fs)
	c.registry = addRegistryFlags(fs)
	c.engineRegistry = addEngineRegistryFlags(fs, c.registry)
	bootstrap := addBootstrapFlag(fs)
	if c.bootstrapFrom, err = addSourceFlag(fs, "bootstrap-source"); err != nil {
		return c, err
	}
	fs.String("config", envDefault("LABD_CONFIG", ""), "YAML file of settings by flag name (addr: ..., trusted-proxy: [..]); the command line wins over it, it over the environment (env LABD_CONFIG)")
	if path := configPath(args); path != "" {
		if err := applyConfig(fs, path); err != nil {
			return c, err
		}
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if c.logFormat != "text" && c.logFormat != "json" {
		return c, fmt.Errorf("--log-format %q: want text or json", c.logFormat)
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if c.bootstrap, err = parseBootstrapList(*bootstrap); err != nil {
		return c, err
	}
	if c.limits, err = limits.resolve(); err != nil {
		return c, err
	}
	if c.admission, err = admit.resolve(enginebox.SandboxCapacity(engine.SharedOptions{UserNS: usernsOptions(c.userns)})); err != nil {
		return c, err
	}
	return c, nil
}

func runServe(ctx context.Context, args []string, _, stderr io.Writer) error {
	cfg, err := parseServeFlags(args, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	if cfg.logFormat == "json" {
		log = slog.New(slog.NewJSONHandler(stderr, nil))
	}
	slog.SetDefault(log)

	if st, err := os.Stat(cfg.content); err != nil || !st.IsDir() {
		return fmt.Errorf("content directory %s: not a directory (%v)", cfg.content, err)
	}
	if err := os.MkdirAll(cfg.data, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	secret, err := loadSecret(filepath.Join(cfg.data, "secret"))
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable for sandboxes: %w", err)
	}

	idle := cfg.idleTimeout
	if idle == 0 {
		idle = -1 // the flag's 0 means "never"; the Manager's zero value means its default
	}
	// Every sandbox gets its own engine (its own view of the shared image
	// store) on a socket beside its workspace.
	// One process per image store: serve holds its lock while it runs.
	unlockImages, err := lockImages(cfg.data, "labd serve")
	if err != nil {
		return err
	}
	defer unlockImages()
	// The registry first: the engine's Docker Hub stand-in goes to the
	// address it actually serves on (another port if the default is taken).
	reg, store, stopRegistry, err := startRegistry(cfg.data, cfg.registry, log)
	if err != nil {
		return err
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if err := stopRegistry(rctx); err != nil {
			log.Warn("registry shutdown", "err", err)
		}
	}()
	engineRegistry := cfg.engineRegistry.options()
	log.Info("engine registry", "hub_stand_in", engineRegistry.HubStandIn, "hub_upstream", engineRegistry.HubUpstream, "allowed_registries", engineRegistry.AllowedRegistries)
	met := metrics.New()
	shared, err := engine.OpenShared(cfg.data, engine.SharedOptions{CgroupParent: cfg.cgroupParent, Logger: log, Registry: engineRegistry, UserNS: usernsOptions(cfg.userns), Observer: met})
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	// Ranges stay with the sandbox IDs that had them: say so before new
	// learners find none left.
	if free, err := shared.FreeIDRanges(); err != nil {
		log.Warn("uid range pool", "err", err)
	} else if free >= 0 && free < cfg.admission.maxSandboxes {
		log.Warn("uid range pool: fewer ranges free than --max-sandboxes; new learners will be refused once they are gone (each learner's lab keeps its range)",
			"free", free, "max_sandboxes", cfg.admission.maxSandboxes)
	}
	// The learner's shell is a container of the sandbox image
	// (`labd images bootstrap sandbox`). The simple shell (nsbox) runs as
	// root beside labd's data: only trusted learners get it, while the
	// image is missing; everyone else waits for the image.
	provider := &enginebox.Provider{
		Shared: shared,
		Logger: log,
		Limits: cfg.limits.sandbox,
		API: cfg.limits.apiOptions(api.Options{
			Version: engine.Version,
			TempDir: filepath.Join(cfg.data, "engine", "tmp"),
			Logger:  log,
		}),
	}
	log.Info("sandbox limits", "limits", fmt.Sprintf("%+v", cfg.limits.sandbox), "max_context", cfg.limits.maxContext, "max_load", cfg.limits.maxLoad, "max_copy", cfg.limits.maxCopy, "max_request_body", cfg.limits.maxJSONBody)
	if cfg.trusted {
		provider.Inner = nsbox.New(nsbox.Options{Exe: exe})
		log.Warn("--trusted-learners: while the sandbox image is missing, learners get a shell as root on this machine; never use it for a class")
	}
	// What sandboxes of a killed labd left goes now, not at the first
	// learner's sandbox (issue 13: nothing leaks after a restart).
	// Absolute: mounts are found by their absolute paths (--data ./data).
	sandboxesDir, err := filepath.Abs(filepath.Join(cfg.data, "sandboxes"))
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if err := provider.Sweep(sandboxesDir); err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	// Missing base images are made in the background once serving.
	// Official images are pulled through the engines' registry client.
	images := newServeImages(&baseImageMaker{store: shared.Store, dist: shared.Registry(), source: *cfg.bootstrapFrom}, cfg.bootstrap, shared.Runtime != nil, log)
	mgr := sandbox.NewManager(images.provider(provider), sandbox.ManagerOptions{
		DataDir:      cfg.data,
		IdleTimeout:  idle,
		MaxLifetime:  cfg.maxLifetime,
		Logger:       log,
		MaxSandboxes: cfg.admission.maxSandboxes,
		Warm:         cfg.admission.warm,
	})
	images.watch(mgr)
	met.Sandboxes(func() int { held, _ := mgr.Count(); return held }, mgr.Warm)
	mgr.OnDestroy(func(_ string, r sandbox.Reason) { met.SandboxEnded(r.String()) })
	live, instructorToken, closeGrading, err := startGrading(ctx, cfg.data, cfg.grading, log, met)
	if err != nil {
		mgr.Close(context.Background())
		return err
	}
	defer closeGrading()
	webOpts := web.Options{
		Catalog:               labs.NewCatalog(cfg.content),
		Sandboxes:             mgr,
		Secret:                secret,
		AllowedOrigins:        cfg.allowedOrigins,
		TrustedProxies:        cfg.trustedProxies,
		HSTSIncludeSubdomains: cfg.hstsSubdomains,
		Logger:                log,
		Grader:                live,
		InstructorToken:       instructorToken,
		PreviewDomain:         cfg.previewDomain,
		BaseImages:            images,
		MaxUpload:             cfg.maxUploadMiB << 20,
		Admission:             cfg.admission.limit,
		Metrics:               met,
	}
	if st := live.Store(); st != nil {
		webOpts.ReadyChecks = append(webOpts.ReadyChecks, web.ReadyCheck{Name: "progress store", Check: st.Ping})
	}
	if reg != nil {
		// Every learner gets an account on their first lab page (a nil
		// *accounts.Store must not become a non-nil interface).
		webOpts.Accounts = store
		webOpts.RegistryAddr = reg.Addr()
		webOpts.ReadyChecks = append(webOpts.ReadyChecks, web.ReadyCheck{Name: "registry", Check: registryAnswers(reg.Handler())})
	}
	handler := web.New(webOpts)
	// labd grade reaches live sandboxes through DATA/grade.sock (gradeserver.go).
	defer startGradeServer(cfg.data, web.NewGradeAPI(webOpts), log)()

	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		mgr.Close(context.Background())
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info("labd serving", "addr", "http://"+ln.Addr().String(), "content", cfg.content, "data", cfg.data, "idle_timeout", cfg.idleTimeout,
		"trusted_proxies", fmt.Sprint(cfg.trustedProxies), "max_sandboxes", cfg.admission.maxSandboxes,
		"admission_rate", cfg.admission.limit.PerMinute, "admission_burst", cfg.admission.limit.Burst)
	defer images.start(ctx)()

	select {
	case err := <-serveErr:
		mgr.Close(context.Background())
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	log.Info("shutting down")
	// Sandboxes first: their hooks tell every attached browser "server
	// shutdown" before the listener goes away.
	mctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	mErr := mgr.Close(mctx)
	cancel()
	shared.Close()
	hctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	hErr := srv.Shutdown(hctx)
	cancel()
	if err := errors.Join(mErr, hErr); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}

// envBool reads a boolean environment variable ("" or unset: false).
func envBool(key string) (bool, error) {
	v := envDefault(key, "")
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s=%q: want true or false", key, v)
	}
	return b, nil
}

// loadSecret reads the signing key, creating it (0600) on first start so
// cookies and sandbox IDs survive restarts.
func loadSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		if len(b) < secretSize {
			return nil, fmt.Errorf("secret %s: %d bytes, want %d (delete it to make a new one)", path, len(b), secretSize)
		}
		return b, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read secret: %w", err)
	}
	b = make([]byte, secretSize)
	rand.Read(b)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create secret: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return nil, fmt.Errorf("write secret: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("write secret: %w", err)
	}
	return b, nil
}
