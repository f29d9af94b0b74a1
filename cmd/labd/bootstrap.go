package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/labd/labd/sandbox"
	"github.com/labd/labd/sandbox/engine/image"
	"github.com/labd/labd/web"
)

// The base images `labd serve` makes in the background on first start,
// and `labd images bootstrap` makes in the foreground.

// bootstrapOrder is what `bootstrap all` builds, in order.
var bootstrapOrder = []string{"busybox", "python", "sandbox"}

func knownBootstrap(name string) bool {
	return name == "all" || slices.Contains(bootstrapOrder, name)
}

// bootstrapTags are the tags each image gets in the base view; the first
// one says whether it is present.
func bootstrapTags(name string) []string {
	switch name {
	case "busybox":
		return []string{"busybox:latest"}
	case "python":
		return image.PythonTags
	case "sandbox":
		return []string{image.SandboxTag}
	}
	return nil
}

// parseBootstrapList reads --bootstrap: "all", "none" or a comma list of
// bootstrapOrder's names; the result is in bootstrapOrder's order.
func parseBootstrapList(s string) ([]string, error) {
	switch strings.TrimSpace(s) {
	case "all", "":
		return bootstrapOrder, nil
	case "none":
		return nil, nil
	}
	want := map[string]bool{}
	for _, n := range strings.Split(s, ",") {
		n = strings.TrimSpace(n)
		if !slices.Contains(bootstrapOrder, n) {
			return nil, fmt.Errorf("--bootstrap: unknown image %q (known: %s, or all, none)", n, strings.Join(bootstrapOrder, ", "))
		}
		want[n] = true
	}
	var out []string
	for _, n := range bootstrapOrder {
		if want[n] {
			out = append(out, n)
		}
	}
	return out, nil
}

// addBootstrapFlag registers serve's --bootstrap.
func addBootstrapFlag(fs *flag.FlagSet) *string {
	return fs.String("bootstrap", envDefault("LABD_BOOTSTRAP", "all"),
		"base images to make in the background when missing: all, none, or a comma list of "+strings.Join(bootstrapOrder, ", ")+" (env LABD_BOOTSTRAP)")
}

// lockImages takes the image store's lock for who, explaining a held one.
// Every command that opens DATA/engine with image.Open (or the engine's
// Open/OpenShared) takes it first: opening removes the staging files of
// whoever else has the store open.
func lockImages(data, who string) (func(), error) {
	dir := filepath.Join(data, "engine")
	release, err := image.LockStore(dir, who)
	var le *image.LockedError
	if errors.As(err, &le) {
		switch {
		case strings.Contains(le.Holder, "labd serve") && strings.HasPrefix(who, "labd images"):
			return nil, fmt.Errorf("%w.\nlabd serve makes missing base images itself in the background (--bootstrap; its log and pages show progress): "+
				"stop it first to bootstrap or import images by hand, or use another --data", err)
		case strings.Contains(le.Holder, "labd images"):
			return nil, fmt.Errorf("%w: wait for it to finish, or stop it", err)
		default:
			return nil, fmt.Errorf("%w: stop it first, or use another --data", err)
		}
	}
	return release, err
}

// serveImages is `labd serve`'s background bootstrap: it makes the missing
// images one at a time, and tells the pages (web.BaseImages) and the log
// how far it is. It also records which sandboxes got the fallback shell
// because the sandbox image was not there yet.
type serveImages struct {
	store   *image.Store
	maker   *baseImageMaker
	runtime bool // container shells are possible (else the sandbox image changes nothing)
	log     *slog.Logger

	mu     sync.Mutex
	images []web.BootstrapImage
	simple map[string]bool // sandbox ID -> started as the fallback shell

	done chan struct{}
}

// newServeImages looks at which of names are present (synchronously: the
// first page served knows whether to show the banner) and logs where
// those came from. m pulls official images when it has an upstream.
func newServeImages(m *baseImageMaker, names []string, runtime bool, log *slog.Logger) *serveImages {
	b := &serveImages{
		store: m.store, maker: m, runtime: runtime, log: log,
		simple: map[string]bool{},
		done:   make(chan struct{}),
	}
	m.fallback = func(name, upstream string, err error) {
		b.log.Warn("base image: official image not pulled, building the local stand-in instead", "image", name, "upstream", upstream, "err", err)
	}
	base, _ := m.store.View(image.BaseView)
	for _, n := range names {
		img := web.BootstrapImage{Name: n, Tags: bootstrapTags(n), State: web.ImageWaiting, Shell: n == "sandbox" && runtime}
		if base != nil {
			if id, err := base.Resolve(img.Tags[0]); err == nil {
				o, rd := originOf(base, id, img.Tags[0])
				// Present but of the other source than asked: made again.
				if m.accepts(n, o) {
					img.State = web.ImagePresent
				}
				b.log.Info("base image: present", append([]any{"image", n, "id", id.Encoded()[:12]}, originAttrs(o, rd)...)...)
			}
		}
		b.images = append(b.images, img)
	}
	return b
}

// originAttrs are the log attributes of a base image's origin.
func originAttrs(o imageOrigin, repoDigest string) []any {
	attrs := []any{"source", string(o)}
	if repoDigest != "" {
		attrs = append(attrs, "digest", repoDigest)
	}
	return attrs
}

// start runs the bootstrap in the background until it is done or ctx
// ends; stop cancels it and waits (bounded by shutdownTimeout) for
// mmdebstrap to be gone and the store to be clean.
func (b *serveImages) start(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		defer close(b.done)
		b.run(ctx)
	}()
	return func() {
		cancel()
		select {
		case <-b.done:
		case <-time.After(shutdownTimeout):
			b.log.Warn("base image bootstrap still stopping", "waited", shutdownTimeout)
		}
	}
}

func (b *serveImages) run(ctx context.Context) {
	for i := range b.images {
		b.mu.Lock()
		img := b.images[i]
		b.mu.Unlock()
		if img.State != web.ImageWaiting {
			continue
		}
		if ctx.Err() != nil {
			b.set(i, func(im *web.BootstrapImage) { im.State = web.ImageCancelled })
			continue
		}
		start := time.Now()
		b.log.Info("base image: preparing", "image", img.Name, "tags", strings.Join(img.Tags, ","))
		b.set(i, func(im *web.BootstrapImage) { im.State, im.Phase = web.ImageBuilding, "starting" })
		made, err := b.maker.make(ctx, img.Name, false, func(line string) {
			phase := phaseOf(line)
			if phase == "" {
				return
			}
			b.log.Info("base image: phase", "image", img.Name, "phase", phase)
			b.set(i, func(im *web.BootstrapImage) { im.Phase = phase })
		})
		elapsed := time.Since(start).Round(time.Millisecond)
		switch {
		case err != nil && ctx.Err() != nil:
			b.log.Warn("base image: cancelled", "image", img.Name, "elapsed", elapsed)
			b.set(i, func(im *web.BootstrapImage) { im.State, im.Phase = web.ImageCancelled, "" })
		case err != nil:
			b.log.Error("base image: failed", "image", img.Name, "elapsed", elapsed, "err", err)
			b.set(i, func(im *web.BootstrapImage) { im.State, im.Phase, im.Error = web.ImageFailed, "", err.Error() })
		default:
			attrs := []any{"image", img.Name, "id", made.ID.Encoded()[:12], "elapsed", elapsed}
			if base, err := b.store.View(image.BaseView); err == nil {
				if info, err := base.Image(made.ID); err == nil {
					attrs = append(attrs, "size", fmt.Sprintf("%.1fMB", float64(info.Size)/1e6))
				}
			}
			attrs = append(attrs, originAttrs(made.Origin, made.RepoDigest)...)
			b.log.Info("base image: ready", attrs...)
			b.set(i, func(im *web.BootstrapImage) { im.State, im.Phase = web.ImageReady, "" })
		}
	}
}

// phaseOf turns a progress line ("python:3.11-slim: I: downloading
// packages with apt...") into a phase ("downloading packages with apt");
// "" for lines that are no phase (mmdebstrap's paths and warnings).
func phaseOf(line string) string {
	if i := strings.Index(line, ": "); i >= 0 && !strings.HasPrefix(line, "I: ") && !strings.HasPrefix(line, "W: ") {
		line = line[i+2:]
	}
	switch {
	case strings.HasPrefix(line, "W: ") || strings.HasPrefix(line, "E: "):
		return ""
	case strings.HasPrefix(line, "I: "):
		line = strings.TrimPrefix(line, "I: ")
		// Temp dirs, hooks and modes tell a learner nothing.
		for _, skip := range []string{"using ", "running --", "removing tempdir", "automatically chosen", "chroot architecture", "finding correct", "skipping "} {
			if strings.HasPrefix(line, skip) {
				return ""
			}
		}
	}
	line = strings.TrimRight(strings.TrimSpace(line), ".")
	if len(line) > 120 {
		line = line[:120] + "…"
	}
	return line
}

func (b *serveImages) set(i int, f func(*web.BootstrapImage)) {
	b.mu.Lock()
	f(&b.images[i])
	b.mu.Unlock()
}

// BootstrapStatus implements web.BaseImages.
func (b *serveImages) BootstrapStatus() web.BootstrapStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := web.BootstrapStatus{Images: slices.Clone(b.images), SimpleShells: len(b.simple)}
	for i := range st.Images {
		st.Images[i].Tags = slices.Clone(st.Images[i].Tags)
	}
	return st
}

// HasImage implements web.BaseImages: the store's own word.
func (b *serveImages) HasImage(ref string) bool {
	base, err := b.store.View(image.BaseView)
	if err != nil {
		return false
	}
	_, err = base.Resolve(ref)
	return err == nil
}

// ShellReady implements web.BaseImages.
func (b *serveImages) ShellReady() bool { return b.HasImage(image.SandboxTag) }

// SimpleShell implements web.BaseImages.
func (b *serveImages) SimpleShell(sid string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.simple[sid]
}

// provider wraps the sandbox provider to note which sandboxes start
// without the sandbox image (enginebox.Provider then falls back to nsbox);
// watch forgets them when they end.
func (b *serveImages) provider(p sandbox.Provider) sandbox.Provider {
	r := &shellRecorder{Provider: p, b: b}
	if w, ok := p.(sandbox.Warmer); ok {
		return &warmRecorder{shellRecorder: r, w: w}
	}
	return r
}

// warmRecorder is a shellRecorder whose provider warms sandboxes: a warm
// one is always a container shell (Prepare refuses without the image), so
// there is nothing to record.
type warmRecorder struct {
	*shellRecorder
	w sandbox.Warmer
}

func (r *warmRecorder) Prepare(ctx context.Context, s sandbox.Spec) (sandbox.Prepared, error) {
	return r.w.Prepare(ctx, s)
}

// OpenWorkspace passes the engine's sandbox.WorkspaceOpener through the
// wrapper: an ended sandbox's workspace is on its unmounted disk.
func (r *shellRecorder) OpenWorkspace(ctx context.Context, name, workspace string) (string, func(), error) {
	if o, ok := r.Provider.(sandbox.WorkspaceOpener); ok {
		return o.OpenWorkspace(ctx, name, workspace)
	}
	return workspace, func() {}, nil
}

// Forget passes the engine's sandbox.Forgetter through the wrapper.
func (r *shellRecorder) Forget(name string) error {
	if f, ok := r.Provider.(sandbox.Forgetter); ok {
		return f.Forget(name)
	}
	return nil
}

// ResetFiles passes the engine's sandbox.Resetter through the wrapper.
func (r *shellRecorder) ResetFiles(ctx context.Context, name string, keepWorkspace bool) error {
	if rs, ok := r.Provider.(sandbox.Resetter); ok {
		return rs.ResetFiles(ctx, name, keepWorkspace)
	}
	return nil
}

func (b *serveImages) watch(m *sandbox.Manager) {
	m.OnDestroy(func(id string, _ sandbox.Reason) {
		b.mu.Lock()
		delete(b.simple, id)
		b.mu.Unlock()
	})
}

type shellRecorder struct {
	sandbox.Provider
	b *serveImages
}

func (r *shellRecorder) Create(ctx context.Context, spec sandbox.Spec) (sandbox.Sandbox, error) {
	before := r.b.HasImage(image.SandboxTag)
	sb, err := r.Provider.Create(ctx, spec)
	// The provider looked in between: present before means a container
	// shell; missing after means the fallback; made meanwhile, unknown,
	// and the note to start a new shell does no harm then.
	if err == nil && r.b.runtime && !before {
		r.b.mu.Lock()
		r.b.simple[spec.ID] = true
		r.b.mu.Unlock()
	}
	return sb, err
}
