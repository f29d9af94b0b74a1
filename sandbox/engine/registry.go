package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/pkg/jsonmessage"
	"github.com/labd/labd/sandbox/engine/api"
	"github.com/labd/labd/sandbox/engine/distribution"
	"github.com/opencontainers/go-digest"
)

// Registry returns the registry client every engine of the process shares.
func (s *Shared) Registry() *distribution.Client { return s.dist }

// Login implements api.Backend (POST /auth).
func (e *Engine) Login(ctx context.Context, auth registry.AuthConfig) (*registry.AuthenticateOKBody, error) {
	status, token, err := e.shared.dist.Login(ctx, auth)
	if err != nil {
		return nil, err
	}
	return &registry.AuthenticateOKBody{Status: status, IdentityToken: token}, nil
}

// ImagePush implements api.Backend.
func (e *Engine) ImagePush(ctx context.Context, name, tag string, auth registry.AuthConfig, out func(*jsonmessage.JSONMessage) error) error {
	named, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return refError(err) // dockerd 20.10: a plain error (500)
	}
	// A tag in the name and none in the query (SDK callers) is honoured.
	if t, ok := named.(reference.Tagged); ok && tag == "" {
		tag = t.Tag()
	}
	if tag != "" {
		if _, err := reference.WithTag(reference.TrimNamed(named), tag); err != nil {
			return api.InvalidParameterError(err)
		}
	}
	named = reference.TrimNamed(named)
	err = e.shared.dist.Push(ctx, distribution.PushRequest{View: e.view, Name: named, Tag: tag, Auth: auth, Out: out})
	if err == nil {
		ref := reference.FamiliarName(named)
		if tag != "" {
			ref += ":" + tag
		}
		e.imageEvent(events.ActionPush, ref, ref)
	}
	return err
}

// ImagePull implements api.Backend: POST /images/create?fromImage=&tag=,
// as dockerd's PullImage parses them (the tag may be a digest).
func (e *Engine) ImagePull(ctx context.Context, name, tag string, auth registry.AuthConfig, out func(*jsonmessage.JSONMessage) error) error {
	ref, err := pullReference(name, tag)
	if err != nil {
		return err
	}
	if err := e.checkDisk(0); err != nil {
		return err
	}
	_, err = e.pull(ctx, ref, auth, out)
	return err
}

func pullReference(name, tag string) (reference.Named, error) {
	ref, err := reference.ParseNormalizedNamed(strings.TrimSuffix(name, ":"))
	if err != nil {
		return nil, api.InvalidParameterError(refError(err))
	}
	if tag != "" {
		if d, derr := digest.Parse(tag); derr == nil {
			ref, err = reference.WithDigest(reference.TrimNamed(ref), d)
		} else {
			ref, err = reference.WithTag(ref, tag)
		}
		if err != nil {
			return nil, api.InvalidParameterError(err)
		}
	}
	if _, ok := ref.(reference.Digested); !ok {
		ref = reference.TagNameOnly(ref)
	}
	return ref, nil
}

func (e *Engine) pull(ctx context.Context, ref reference.Named, auth registry.AuthConfig, out func(*jsonmessage.JSONMessage) error) (digest.Digest, error) {
	id, err := e.shared.dist.Pull(ctx, distribution.PullRequest{View: e.view, Ref: ref, Auth: auth, Out: out})
	if err != nil {
		return "", err
	}
	fam := reference.FamiliarString(ref)
	e.imageEvent(events.ActionPull, fam, fam)
	return id, nil
}

// PullForBuild pulls the image a FROM (or COPY --from) names when the view
// lacks it, writing Docker's lines ("latest: Pulling from …") as build
// output, and returns the image ID. Builds pull anonymously.
func (e *Engine) PullForBuild(ctx context.Context, name string, w io.Writer) (string, error) {
	ref, err := pullReference(name, "")
	if err != nil {
		return "", err
	}
	id, err := e.pull(ctx, ref, registry.AuthConfig{}, func(m *jsonmessage.JSONMessage) error {
		if m.Progress != nil && m.Progress.Current > 0 || m.Status == "" {
			return nil
		}
		line := m.Status + "\n"
		if m.ID != "" {
			line = m.ID + ": " + line
		}
		_, err := io.WriteString(w, line)
		return err
	})
	if err != nil {
		return "", err
	}
	return id.String(), nil
}

// Transfers returns the pushes and pulls of this engine's view, oldest
// first, with per-layer outcomes (for graders).
func (e *Engine) Transfers() []distribution.Transfer {
	return e.shared.dist.Transfers(e.view.Name())
}

// refError drops the name newer reference parsers add to the upper-case
// error, giving dockerd 20.10's text.
func refError(err error) error {
	if errors.Is(err, reference.ErrNameContainsUppercase) || strings.HasSuffix(err.Error(), ") must be lowercase") {
		return fmt.Errorf("%w: %w", reference.ErrReferenceInvalidFormat, reference.ErrNameContainsUppercase)
	}
	return err
}
