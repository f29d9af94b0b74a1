package registry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	distauth "github.com/distribution/distribution/v3/registry/auth"
	_ "github.com/distribution/distribution/v3/registry/auth/token" // "token" access controller
	"github.com/distribution/distribution/v3/registry/handlers"
	"github.com/distribution/distribution/v3/registry/storage"
	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"

	"github.com/labd/labd/registry/accounts"
	"github.com/labd/labd/registry/auth"
)

// Defaults for Options.
const (
	DefaultAddr       = "127.0.0.1:5000"
	DefaultService    = "labd-registry"
	DefaultQuota      = 2 << 30 // bytes per learner namespace
	DefaultTokenTTL   = 5 * time.Minute
	DefaultGCInterval = 24 * time.Hour
	DefaultGCIdle     = 10 * time.Minute
	// Issuer is the "iss" of every token labd signs.
	Issuer = "labd"
	// TokenPath is where the token endpoint lives on the registry's listener.
	TokenPath = "/auth/token"
)

// Accounts is what the registry needs from the account store
// (*accounts.Store): password checks for tokens, password stamps for
// refresh tokens, roles for the policy and the quota.
type Accounts interface {
	Check(ctx context.Context, name, password string) (accounts.Role, error)
	Stamp(ctx context.Context, name string) (accounts.Role, string, error)
	Role(ctx context.Context, name string) (accounts.Role, error)
}

// Options configure New. Dir and Accounts are required.
type Options struct {
	Dir      string   // DATA/registry
	Accounts Accounts // DATA/labd.db
	// Addr is the TCP address to listen on; "" serves no listener (use
	// Handler). Plain HTTP: Docker allows that on 127.0.0.0/8 and for
	// registries configured as insecure.
	Addr    string
	Service string // token audience and challenge service; DefaultService
	// Realm is the token endpoint URL put in challenges. Empty means
	// "http://<Host of the request>/auth/token", right for every address
	// the listener is reached by.
	Realm    string
	TokenTTL time.Duration // DefaultTokenTTL
	// Quota caps the bytes stored under each learner's namespace (blobs
	// linked into its repositories plus uploads in progress); 0 means
	// DefaultQuota, negative means no quota.
	Quota int64
	// GCInterval is how often garbage collection runs; 0 means
	// DefaultGCInterval, negative never. A due collection waits until no
	// write has come for GCIdle (DefaultGCIdle), so a push in progress is
	// not collected between its layers and its manifest.
	GCInterval time.Duration
	GCIdle     time.Duration
	Logger     *slog.Logger
}

// Registry is a running classroom registry.
type Registry struct {
	opts    Options
	log     *slog.Logger
	storage string // root directory of the filesystem driver
	lock    *os.File
	app     *handlers.App
	handler http.Handler
	quota   *quota

	ln  net.Listener
	srv *http.Server

	// gate: write requests hold it shared, garbage collection exclusive.
	gate      sync.RWMutex
	lastWrite atomic.Int64 // unix nanoseconds

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// ErrLocked means another labd process has the registry directory open.
var ErrLocked = errors.New("registry directory is in use by another labd process")

// New opens the registry in opts.Dir (creating keys on first start) and,
// when opts.Addr is set, starts serving it. Close stops it.
func New(opts Options) (*Registry, error) {
	if opts.Dir == "" || opts.Accounts == nil {
		return nil, errors.New("registry: Dir and Accounts are required")
	}
	if opts.Service == "" {
		opts.Service = DefaultService
	}
	if opts.TokenTTL == 0 {
		opts.TokenTTL = DefaultTokenTTL
	}
	if opts.Quota == 0 {
		opts.Quota = DefaultQuota
	}
	if opts.GCInterval == 0 {
		opts.GCInterval = DefaultGCInterval
	}
	if opts.GCIdle == 0 {
		opts.GCIdle = DefaultGCIdle
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	r := &Registry{opts: opts, log: opts.Logger, storage: filepath.Join(opts.Dir, "storage"), stop: make(chan struct{})}
	if err := os.MkdirAll(r.storage, 0o700); err != nil {
		return nil, fmt.Errorf("registry dir: %w", err)
	}
	lock, err := lockDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	r.lock = lock
	if err := r.open(); err != nil {
		lock.Close()
		return nil, err
	}
	if opts.Addr != "" {
		ln, err := net.Listen("tcp", opts.Addr)
		if err != nil {
			r.app.Shutdown()
			lock.Close()
			return nil, fmt.Errorf("registry listen: %w", err)
		}
		r.ln = ln
		r.srv = &http.Server{
			Handler:           r.handler,
			ReadHeaderTimeout: 30 * time.Second,
			ErrorLog:          slog.NewLogLogger(r.log.Handler(), slog.LevelWarn),
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			if err := r.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				r.log.Error("registry serve", "err", err)
			}
		}()
	}
	if opts.GCInterval > 0 {
		r.wg.Add(1)
		go r.gcLoop()
	}
	return r, nil
}

func (r *Registry) open() error {
	issuer, err := auth.LoadOrCreateKey(filepath.Join(r.opts.Dir, "token.key"), Issuer, r.opts.Service, r.opts.TokenTTL)
	if err != nil {
		return err
	}
	jwks := filepath.Join(r.opts.Dir, "jwks.json")
	if err := issuer.WriteJWKS(jwks); err != nil {
		return err
	}
	secret, err := loadOrCreateSecret(filepath.Join(r.opts.Dir, "http.secret"))
	if err != nil {
		return err
	}
	realm := r.opts.Realm
	if realm == "" {
		realm = placeholderRealm
	}
	cfg, ac, err := parseConfig(configParams{
		root: r.storage, secret: secret, realm: realm, service: r.opts.Service, issuer: Issuer, jwks: jwks,
	})
	if err != nil {
		return err
	}
	routeLogrus(r.log)
	r.app = handlers.NewApp(context.Background(), cfg)
	r.quota = &quota{limit: r.opts.Quota, root: r.storage, accounts: r.opts.Accounts, log: r.log}

	tokens := &auth.Handler{
		Issuer:   issuer,
		Accounts: r.opts.Accounts,
		Policy:   auth.Policy{Roles: r.opts.Accounts},
		Logger:   r.log,
	}
	mux := http.NewServeMux()
	mux.Handle(TokenPath, tokens)
	refs := &referrers{root: r.storage, access: ac}
	// A second view of the same storage, for distribution's tag service.
	ns, err := storage.NewRegistry(context.Background(),
		filesystem.New(filesystem.DriverParameters{RootDirectory: r.storage, MaxThreads: 100}), storage.EnableDelete)
	if err != nil {
		r.app.Shutdown()
		return fmt.Errorf("registry storage: %w", err)
	}
	dg := &digests{root: r.storage, tags: tagger(ns), log: r.log}
	mux.Handle("/", r.guard(refs.wrap(dg.wrap(r.quota.wrap(r.app)))))
	r.handler = mux
	return nil
}

// Handler serves the registry API and the token endpoint; New's listener
// serves the same handler.
func (r *Registry) Handler() http.Handler { return r.handler }

// Addr is the address the listener is bound to ("" without one).
func (r *Registry) Addr() string {
	if r.ln == nil {
		return ""
	}
	return r.ln.Addr().String()
}

// Close stops the listener (waiting for requests until ctx ends), the
// GC schedule and distribution's background work, and releases the
// directory.
func (r *Registry) Close(ctx context.Context) error {
	var err error
	r.closeOnce.Do(func() {
		close(r.stop)
		if r.srv != nil {
			if e := r.srv.Shutdown(ctx); e != nil {
				err = fmt.Errorf("registry shutdown: %w", e)
				r.srv.Close()
			}
		}
		r.wg.Wait()
		r.app.Shutdown()
		r.lock.Close()
	})
	return err
}

// guard serialises writes against garbage collection and rewrites the
// challenge realm for the host the client used.
func (r *Registry) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			r.gate.RLock()
			defer func() {
				r.lastWrite.Store(time.Now().UnixNano())
				r.gate.RUnlock()
			}()
			r.lastWrite.Store(time.Now().UnixNano())
		}
		if r.opts.Realm == "" {
			w = &realmWriter{ResponseWriter: w, realm: requestRealm(req)}
		}
		next.ServeHTTP(w, req)
	})
}

// placeholderRealm stands in the configuration for the per-request realm.
const placeholderRealm = "http://labd-registry.invalid" + TokenPath

func requestRealm(req *http.Request) string {
	scheme := "http"
	if req.TLS != nil || strings.EqualFold(req.Header.Get("X-Forwarded-Proto"), "https") {
		scheme = "https"
	}
	return scheme + "://" + req.Host + TokenPath
}

type realmWriter struct {
	http.ResponseWriter
	realm string
	done  bool
}

func (w *realmWriter) WriteHeader(code int) {
	if !w.done {
		w.done = true
		h := w.Header()
		if vs := h.Values("WWW-Authenticate"); len(vs) > 0 {
			h.Del("WWW-Authenticate")
			for _, v := range vs {
				h.Add("WWW-Authenticate", strings.Replace(v, `"`+placeholderRealm+`"`, `"`+w.realm+`"`, 1))
			}
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *realmWriter) Write(b []byte) (int, error) {
	if !w.done {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

func (w *realmWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *realmWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// lockDir takes an exclusive flock on DIR/lock so that two labd
// processes (or a server and `labd registry gc`) never share storage.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("registry lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w", dir, ErrLocked)
		}
		return nil, fmt.Errorf("registry lock: %w", err)
	}
	return f, nil
}

// loadOrCreateSecret keeps distribution's upload-state HMAC key across
// restarts, so a push interrupted by a restart can resume.
func loadOrCreateSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil && len(b) >= 32 {
		return strings.TrimSpace(string(b)), nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("registry secret: %w", err)
	}
	raw := make([]byte, 32)
	rand.Read(raw)
	s := hex.EncodeToString(raw)
	if err := os.WriteFile(path, []byte(s+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("registry secret: %w", err)
	}
	return s, nil
}

type configParams struct {
	root, secret, realm, service, issuer, jwks string
}

// parseConfig builds distribution's configuration through its own parser
// and checks what NewApp would otherwise panic on.
func parseConfig(p configParams) (*configuration.Configuration, distauth.AccessController, error) {
	// %q gives YAML-compatible double-quoted strings.
	y := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %q
  delete:
    enabled: true
  redirect:
    disable: true
  maintenance:
    uploadpurging:
      enabled: true
      age: 168h
      interval: 24h
      dryrun: false
http:
  secret: %q
validation:
  manifests:
    urls:
      # Non-distributable layers point elsewhere; the registry never
      # fetches them, so any http(s) URL may be recorded.
      allow: ['^https?://']
auth:
  token:
    realm: %q
    service: %q
    issuer: %q
    jwks: %q
    signingalgorithms: [ES256]
`, p.root, p.secret, p.realm, p.service, p.issuer, p.jwks)
	cfg, err := configuration.Parse(strings.NewReader(y))
	if err != nil {
		return nil, nil, fmt.Errorf("registry config: %w", err)
	}
	if cfg.Storage.Type() != "filesystem" {
		return nil, nil, fmt.Errorf("registry config: storage %q (REGISTRY_* environment variables override labd's configuration)", cfg.Storage.Type())
	}
	// The two constructors NewApp panics on, tried first.
	ac, err := distauth.GetAccessController(cfg.Auth.Type(), cfg.Auth.Parameters())
	if err != nil {
		return nil, nil, fmt.Errorf("registry config: token auth: %w", err)
	}
	if _, err := factory.Create(context.Background(), cfg.Storage.Type(), cfg.Storage.Parameters()); err != nil {
		return nil, nil, fmt.Errorf("registry config: storage: %w", err)
	}
	return cfg, ac, nil
}
