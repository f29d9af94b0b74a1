package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/distribution/reference"
	"github.com/docker/docker/pkg/jsonmessage"
	"github.com/opencontainers/go-digest"

	"github.com/labd/labd/sandbox/engine/distribution"
	"github.com/labd/labd/sandbox/engine/image"
)

// Where a base image comes from: with an upstream for Docker Hub's names
// (--hub-upstream), the official image is pulled; without one, or when
// the upstream does not answer or lacks it, a stand-in is built locally.

// imageSource is --source (images bootstrap) and --bootstrap-source
// (serve): auto pulls when there is an upstream and falls back to the
// stand-in; pull insists on the official image; standin never pulls.
type imageSource string

const (
	sourceAuto    imageSource = "auto"
	sourcePull    imageSource = "pull"
	sourceStandIn imageSource = "standin"
)

func (s *imageSource) String() string { return string(*s) }

func (s *imageSource) Set(v string) error {
	switch imageSource(strings.TrimSpace(v)) {
	case sourceAuto, "":
		*s = sourceAuto
	case sourcePull:
		*s = sourcePull
	case sourceStandIn, "stand-in":
		*s = sourceStandIn
	default:
		return fmt.Errorf("unknown image source %q (known: auto, pull, standin)", v)
	}
	return nil
}

// addSourceFlag registers name (default: env LABD_BOOTSTRAP_SOURCE, else
// auto).
func addSourceFlag(fs *flag.FlagSet, name string) (*imageSource, error) {
	src := new(imageSource)
	if err := src.Set(os.Getenv("LABD_BOOTSTRAP_SOURCE")); err != nil {
		return nil, fmt.Errorf("LABD_BOOTSTRAP_SOURCE: %w", err)
	}
	fs.Var(src, name, "where base images come from: auto (the official image from --hub-upstream when set and reachable, else a stand-in built locally), "+
		"pull (the official image only), standin (always built locally); the sandbox image is always built locally (env LABD_BOOTSTRAP_SOURCE)")
	return src, nil
}

// officialRef is the image of Docker Hub that name stands in for, under
// the tag the labs use; "" when it has no upstream (labd's own sandbox
// image). Only that tag is pulled: python:3 upstream is another image.
func officialRef(name string) string {
	switch name {
	case "busybox":
		return "busybox:latest"
	case "python":
		return image.PythonTags[0]
	}
	return ""
}

// imageOrigin says how an image came into the base view.
type imageOrigin string

const (
	originPulled   imageOrigin = "pulled"   // from a registry, with a repo digest
	originStandIn  imageOrigin = "stand-in" // built here (image.StandInLabel)
	originImported imageOrigin = "imported" // labd images import, or unknown
)

// originOf tells where image id of the base view came from; for a pulled
// image also its repo digest (busybox@sha256:…), preferring the one of
// tag's repository.
func originOf(v *image.View, id digest.Digest, tag string) (imageOrigin, string) {
	info, err := v.Image(id)
	if err != nil {
		return originImported, ""
	}
	if c := info.Config; c != nil && c.Config != nil && c.Config.Labels[image.StandInLabel] == "true" {
		return originStandIn, ""
	}
	if len(info.RepoDigests) == 0 {
		return originImported, ""
	}
	repo := tag
	if named, err := reference.ParseNormalizedNamed(tag); err == nil {
		repo = reference.FamiliarName(named)
	}
	for _, d := range info.RepoDigests {
		if strings.HasPrefix(d, repo+"@") {
			return originPulled, d
		}
	}
	return originPulled, info.RepoDigests[0]
}

// describeOrigin is the words `labd images ls`, the CLI and the log use.
func describeOrigin(o imageOrigin, repoDigest string) string {
	switch o {
	case originPulled:
		return "pulled official image " + repoDigest
	case originStandIn:
		return "local stand-in, not the official image"
	}
	return "imported"
}

// baseImageMaker makes the bootstrap's images into the base view.
type baseImageMaker struct {
	store *image.Store
	// dist pulls Docker Hub's names from its Options().HubUpstream; nil
	// or without an upstream, nothing is pulled.
	dist   *distribution.Client
	source imageSource
	// fallback, if set, hears why the official image was not pulled
	// before the stand-in is built instead; else progress does.
	fallback func(name, upstream string, err error)
}

// madeImage is what make did.
type madeImage struct {
	ID         digest.Digest
	Origin     imageOrigin
	RepoDigest string // of a pulled image
	Present    bool   // there already: nothing done
}

func (m *baseImageMaker) upstream() string {
	if m.dist == nil {
		return ""
	}
	return m.dist.Options().HubUpstream
}

// accepts reports whether an image of origin o already in the base view
// is what source asks for: an explicit source replaces one made by the
// other source, never an imported one.
func (m *baseImageMaker) accepts(name string, o imageOrigin) bool {
	if officialRef(name) == "" || o == originImported {
		return true
	}
	switch m.source {
	case sourcePull:
		return o == originPulled
	case sourceStandIn:
		return o == originStandIn
	}
	return true
}

// make makes one image unless its first tag is in the base view already
// (force makes it again), reporting progress lines ("<tag>: …").
func (m *baseImageMaker) make(ctx context.Context, name string, force bool, progress func(string)) (madeImage, error) {
	tags := bootstrapTags(name)
	if len(tags) == 0 {
		return madeImage{}, fmt.Errorf("bootstrap: unknown image %q", name)
	}
	tag := tags[0]
	base, err := m.store.View(image.BaseView)
	if err != nil {
		return madeImage{}, err
	}
	if !force {
		if id, err := base.Resolve(tag); err == nil {
			o, rd := originOf(base, id, tag)
			if m.accepts(name, o) {
				progress(fmt.Sprintf("%s: present (%s)", tag, describeOrigin(o, rd)))
				return madeImage{ID: id, Origin: o, RepoDigest: rd, Present: true}, nil
			}
		}
	}
	if ref := officialRef(name); ref != "" && m.source != sourceStandIn {
		up := m.upstream()
		switch {
		case up != "":
			id, err := m.pull(ctx, base, ref, up, progress)
			if err == nil {
				o, rd := originOf(base, id, ref)
				progress(fmt.Sprintf("%s: done: %s (%s, from %s)", ref, id.Encoded()[:12], describeOrigin(o, rd), up))
				return madeImage{ID: id, Origin: o, RepoDigest: rd}, nil
			}
			if ctx.Err() != nil || m.source == sourcePull {
				return madeImage{}, fmt.Errorf("bootstrap %s: pull the official image from %s: %w", ref, up, err)
			}
			if m.fallback != nil {
				m.fallback(name, up, err)
			} else {
				progress(fmt.Sprintf("%s: could not pull the official image from %s (%v): building the local stand-in instead", ref, up, err))
			}
		case m.source == sourcePull:
			return madeImage{}, fmt.Errorf("bootstrap %s: --source pull needs a registry for Docker Hub's names: set --hub-upstream (env LABD_HUB_UPSTREAM), e.g. registry-1.docker.io or a mirror", ref)
		}
	}
	id, err := m.buildStandIn(ctx, name, progress)
	if err != nil {
		return madeImage{}, err
	}
	o, rd := originOf(base, id, tag)
	return madeImage{ID: id, Origin: o, RepoDigest: rd}, nil
}

// pull fetches the official image through the engine's registry client
// (token auth, shared downloads) into the base view, tagged ref.
func (m *baseImageMaker) pull(ctx context.Context, base *image.View, ref, upstream string, progress func(string)) (digest.Digest, error) {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", err
	}
	progress(fmt.Sprintf("%s: pulling the official image from %s", ref, upstream))
	return m.dist.Pull(ctx, distribution.PullRequest{
		View: base,
		Ref:  reference.TagNameOnly(named),
		Out: func(msg *jsonmessage.JSONMessage) error {
			// Status lines only: byte counts would flood the log.
			if msg.Status == "" || msg.Progress != nil && msg.Progress.Current > 0 {
				return nil
			}
			line := msg.Status
			if msg.ID != "" {
				line = msg.ID + ": " + line
			}
			progress(ref + ": " + line)
			return nil
		},
	})
}

// debianSources overrides the host's apt sources for the Debian-based
// images (tests: an unreachable mirror); nil uses the host's.
var debianSources []string

// buildStandIn builds name locally, replacing whatever its tags name.
func (m *baseImageMaker) buildStandIn(ctx context.Context, name string, progress func(string)) (digest.Digest, error) {
	// The presence check is make's: the builders must not keep an
	// image of the other source.
	opts := image.BootstrapOptions{Force: true, Progress: progress, Sources: debianSources}
	switch name {
	case "busybox":
		const tag = "busybox:latest"
		progress(tag + ": building the local stand-in from Debian's busybox-static")
		id, err := image.BootstrapBusybox(ctx, m.store)
		if err != nil {
			return "", err
		}
		progress(fmt.Sprintf("%s: done: %s (%s)", tag, id.Encoded()[:12], describeOrigin(originStandIn, "")))
		return id, nil
	case "python":
		return image.BootstrapPython(ctx, m.store, opts)
	case "sandbox":
		return image.BootstrapSandbox(ctx, m.store, opts)
	}
	return "", errors.New("bootstrap: unknown image " + name)
}
