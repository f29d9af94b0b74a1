package distribution

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/registry"
	"github.com/labd/labd/sandbox/engine/image"
	"github.com/opencontainers/go-digest"
)

// maxDownloads is dockerd's default --max-concurrent-downloads.
const maxDownloads = 3

// PullRequest is one POST /images/create?fromImage= (or an implicit pull).
type PullRequest struct {
	View *image.View
	Ref  reference.Named // normalised, with a tag or a digest
	Auth registry.AuthConfig
	Out  Output
}

var manifestAccept = []string{MediaTypeManifest, MediaTypeManifestList, MediaTypeOCIManifest, MediaTypeOCIIndex}

// Pull fetches the image into the shared store, makes it visible in the
// view with its tag and repo digest, and writes dockerd 20.10's stream. It
// returns the image ID.
func (c *Client) Pull(ctx context.Context, req PullRequest) (digest.Digest, error) {
	o := &out{f: req.Out}
	repo := c.opts.Resolve(req.Ref)
	host, err := c.allow.registry(repo.Host)
	if err != nil {
		return "", err // refused before any connection: not a transfer
	}
	repo.Host = host
	tr := Transfer{Time: time.Now().UTC(), Kind: "pull", Repository: repo.Named.Name(), Registry: repo.Host, Account: req.Auth.Username}
	id, err := c.pull(ctx, o, req, repo, &tr)
	if err != nil {
		tr.Error = err.Error()
	}
	if lerr := c.recordTransfer(req.View.Name(), tr); lerr != nil && err == nil {
		err = lerr
	}
	return id, err
}

func (c *Client) pull(ctx context.Context, o *out, req PullRequest, repo Repo, tr *Transfer) (digest.Digest, error) {
	ref := req.Ref
	var tagOrDigest string
	if d, ok := ref.(reference.Digested); ok {
		tagOrDigest = d.Digest().String()
	} else if t, ok := ref.(reference.Tagged); ok {
		tagOrDigest = t.Tag()
		tr.Tag = t.Tag()
	} else {
		ref = reference.TagNameOnly(ref)
		tagOrDigest = ref.(reference.Tagged).Tag()
		tr.Tag = tagOrDigest
	}
	s, err := c.newSession(ctx, repo.Host, req.Auth, []string{repo.Scope("pull")}, false)
	if err != nil {
		return "", cleanErr(err)
	}
	mb, mt, md, err := c.fetchManifest(ctx, s, repo, tagOrDigest)
	if err != nil {
		return "", pullError(err, ref)
	}
	if d, ok := ref.(reference.Digested); ok && d.Digest() != md {
		return "", fmt.Errorf("manifest verification failed for digest %s", d.Digest())
	}
	m, err := parseManifest(mb, mt)
	if err != nil {
		return "", err
	}
	if len(m.Manifests) > 0 {
		var pick *Descriptor
		for i := range m.Manifests {
			p := m.Manifests[i].Platform
			if p != nil && p.OS == "linux" && p.Architecture == goruntime.GOARCH {
				pick = &m.Manifests[i]
				break
			}
		}
		if pick == nil {
			return "", errNotFound(fmt.Errorf("no matching manifest for linux/%s in the manifest list entries", goruntime.GOARCH))
		}
		sub, smt, sd, err := c.fetchManifest(ctx, s, repo, pick.Digest)
		if err != nil {
			return "", pullError(err, ref)
		}
		if sd.String() != pick.Digest {
			return "", fmt.Errorf("manifest verification failed for digest %s", pick.Digest)
		}
		if m, err = parseManifest(sub, smt); err != nil {
			return "", err
		}
	}
	if m.Config == nil {
		return "", fmt.Errorf("unsupported manifest media type %s", mt)
	}
	tr.Digest = md
	if err := o.message(tagOrDigest, "Pulling from "+repo.Path); err != nil {
		return "", err
	}
	id := digest.Digest(m.Config.Digest)
	if err := id.Validate(); err != nil {
		return "", fmt.Errorf("bad config digest: %w", err)
	}
	if !c.haveImage(req.View, id, m) {
		if err := c.pullImage(ctx, o, s, req.View, repo, m, tr); err != nil {
			return "", err
		}
	}
	tr.ImageID = id
	if _, err := req.View.Image(id); err != nil {
		if err := req.View.Add(id, "", false); err != nil {
			return "", err
		}
	}
	updated := true
	if t, ok := ref.(reference.Tagged); ok {
		if old, err := req.View.Resolve(ref.String()); err == nil && old == id {
			updated = false
		} else if err := req.View.AddTag(id, ref.String()); err != nil {
			return "", err
		}
		_ = t
	} else if old, err := req.View.Resolve(ref.String()); err == nil && old == id {
		updated = false
	}
	if canonical, err := reference.WithDigest(repo.Named, md); err == nil {
		if err := req.View.AddRepoDigest(id, canonical.String()); err != nil {
			return "", err
		}
	}
	if err := o.message("", "Digest: "+md.String()); err != nil {
		return "", err
	}
	status := "Status: Image is up to date for "
	if updated {
		status = "Status: Downloaded newer image for "
	}
	return id, o.message("", status+reference.FamiliarString(ref))
}

// haveImage reports whether the store has the image config and every
// layer may be reused for the view (then nothing is fetched, as dockerd
// short-circuits).
func (c *Client) haveImage(v *image.View, id digest.Digest, m *Manifest) bool {
	cfg, err := c.store.Config(id)
	if err != nil {
		return false
	}
	diffIDs := cfg.DiffIDs()
	if len(diffIDs) != len(m.Layers) {
		return false
	}
	for i, d := range diffIDs {
		if !c.mayReuse(v, digest.Digest(m.Layers[i].Digest), d) {
			return false
		}
	}
	return true
}

// mayReuse reports whether a pull of blob d, which the image config says
// holds layer diffID, may use the stored layer instead of downloading the
// blob. The store is shared by every learner and a manifest may pair any
// blob with any diffID, so only when the view already sees the layer (its
// owner has it anyway) or this engine once hashed blob d and found diffID
// in it; anything else is downloaded and verified.
func (c *Client) mayReuse(v *image.View, d, diffID digest.Digest) bool {
	if !c.store.HasLayer(diffID) {
		return false
	}
	return c.rec.verified(d, diffID) || v.HasLayer(diffID)
}

// pullError gives dockerd's messages for a missing repository or
// manifest (404 before the stream starts).
func pullError(err error, ref reference.Named) error {
	var re *RegistryError
	if !errors.As(err, &re) {
		return err
	}
	switch re.Code {
	case "DENIED":
		return errNotFound(fmt.Errorf("pull access denied for %s, repository does not exist or may require 'docker login': %w", reference.FamiliarName(ref), re))
	case "MANIFEST_UNKNOWN":
		return errNotFound(fmt.Errorf("manifest for %s not found: %w", reference.FamiliarString(ref), re))
	case "NAME_UNKNOWN":
		return errNotFound(fmt.Errorf("repository %s not found: %w", reference.FamiliarName(ref), re))
	}
	return err
}

func (c *Client) fetchManifest(ctx context.Context, s *session, repo Repo, tagOrDigest string) ([]byte, string, digest.Digest, error) {
	// dockerd 20.10 asks with HEAD first; its errors name that request.
	resp, err := s.do(ctx, http.MethodHead, "/v2/"+repo.Path+"/manifests/"+tagOrDigest, nil,
		http.Header{"Accept": {strings.Join(manifestAccept, ", ")}})
	if err != nil {
		return nil, "", "", err
	}
	drain(resp)
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		return nil, "", "", responseError(resp)
	}
	resp, err = s.do(ctx, http.MethodGet, "/v2/"+repo.Path+"/manifests/"+tagOrDigest, nil,
		http.Header{"Accept": {strings.Join(manifestAccept, ", ")}})
	if err != nil {
		return nil, "", "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, "", "", responseError(resp)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, "", "", err
	}
	mt, _, _ := strings.Cut(resp.Header.Get("Content-Type"), ";")
	return b, strings.TrimSpace(mt), digest.FromBytes(b), nil
}

func parseManifest(b []byte, mt string) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("decode manifest: %w", err)
	}
	if m.MediaType == "" {
		m.MediaType = mt
	}
	switch m.MediaType {
	case MediaTypeManifest, MediaTypeOCIManifest, MediaTypeManifestList, MediaTypeOCIIndex, "":
	default:
		return nil, fmt.Errorf("unsupported manifest media type %s", m.MediaType)
	}
	if m.SchemaVersion != 2 {
		return nil, fmt.Errorf("unsupported manifest schema version %d", m.SchemaVersion)
	}
	return &m, nil
}

// pullImage fetches the config and the missing layers, then stores the
// config (exact bytes).
func (c *Client) pullImage(ctx context.Context, o *out, s *session, v *image.View, repo Repo, m *Manifest, tr *Transfer) error {
	raw, err := c.fetchBlobBytes(ctx, s, repo, digest.Digest(m.Config.Digest))
	if err != nil {
		return cleanErr(err)
	}
	cfg, err := image.ParseConfig(raw)
	if err != nil {
		return err
	}
	diffIDs := cfg.DiffIDs()
	if len(diffIDs) != len(m.Layers) {
		return fmt.Errorf("image config lists %d layers, manifest %d", len(diffIDs), len(m.Layers))
	}
	type job struct {
		desc   Descriptor
		diffID digest.Digest
		pid    string
		done   chan error
	}
	var jobs []*job
	for i, l := range m.Layers {
		d := digest.Digest(l.Digest)
		if err := d.Validate(); err != nil {
			return fmt.Errorf("bad layer digest %q: %w", l.Digest, err)
		}
		j := &job{desc: l, diffID: diffIDs[i], pid: shortID(d)}
		if c.mayReuse(v, d, diffIDs[i]) {
			if err := o.update(j.pid, "Already exists"); err != nil {
				return err
			}
			if c.rec.verified(d, diffIDs[i]) {
				_ = c.rec.add(d, l.Size, diffIDs[i], l.MediaType, repo.Host, repo.Path, true)
			}
			tr.Layers = append(tr.Layers, LayerTransfer{DiffID: diffIDs[i], Digest: d, Size: l.Size, Outcome: OutcomeAlreadyExists})
			continue
		}
		if err := o.update(j.pid, "Pulling fs layer"); err != nil {
			return err
		}
		j.done = make(chan error, 1)
		jobs = append(jobs, j)
	}
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, maxDownloads)
	for i, j := range jobs {
		if i >= maxDownloads {
			if err := o.update(j.pid, "Waiting"); err != nil {
				return err
			}
		}
		go func() {
			select {
			case sem <- struct{}{}:
			case <-pctx.Done():
				j.done <- pctx.Err()
				return
			}
			defer func() { <-sem }()
			j.done <- c.fetchLayer(pctx, o, s, repo, j.desc, j.diffID, j.pid)
		}()
	}
	// Extraction is reported bottom up, as dockerd extracts in order.
	for _, j := range jobs {
		if err := <-j.done; err != nil {
			cancel()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return cleanErr(err)
		}
		if err := o.progress(j.pid, "Extracting", j.desc.Size, j.desc.Size); err != nil {
			return err
		}
		if err := o.update(j.pid, "Pull complete"); err != nil {
			return err
		}
		tr.Layers = append(tr.Layers, LayerTransfer{DiffID: j.diffID, Digest: digest.Digest(j.desc.Digest), Size: j.desc.Size, Outcome: OutcomePulled})
		tr.BytesRecv += j.desc.Size
	}
	if _, err := c.store.PutImage(ctx, raw); err != nil {
		return err
	}
	return nil
}

func (c *Client) fetchBlobBytes(ctx context.Context, s *session, repo Repo, d digest.Digest) ([]byte, error) {
	resp, err := s.do(ctx, http.MethodGet, "/v2/"+repo.Path+"/blobs/"+d.String(), nil, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, responseError(resp)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if digest.FromBytes(b) != d {
		return nil, fmt.Errorf("blob %s: digest mismatch", d)
	}
	return b, nil
}

// flight is one download-and-store of a blob shared by concurrent pulls.
type flight struct {
	done    chan struct{}
	err     error
	diffID  digest.Digest // of the content, as hashed
	ctx     context.Context
	cancel  context.CancelFunc
	waiters int
}

// fetchLayer downloads, verifies and stores a layer once for every
// concurrent pull of the same blob (the pull-through cache of a class):
// the first caller does the work with its progress; the others wait. The
// work stops only when every waiter has gone. Each caller then checks the
// content's diffID against its own image config: pulls of one blob may
// claim different layers, and only the content decides.
func (c *Client) fetchLayer(ctx context.Context, o *out, s *session, repo Repo, desc Descriptor, diffID digest.Digest, pid string) error {
	d := digest.Digest(desc.Digest)
	c.mu.Lock()
	f, ok := c.flights[d]
	if !ok {
		fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		f = &flight{done: make(chan struct{}), ctx: fctx, cancel: cancel}
		c.flights[d] = f
		go func() {
			f.diffID, f.err = c.downloadLayer(fctx, o, s, repo, desc, pid)
			cancel()
			c.mu.Lock()
			delete(c.flights, d)
			c.mu.Unlock()
			close(f.done)
		}()
	}
	f.waiters++
	c.mu.Unlock()
	select {
	case <-f.done:
		if f.err != nil {
			return f.err
		}
		if f.diffID != diffID {
			return fmt.Errorf("filesystem layer verification failed for digest %s: the layer has diffID %s, the image config says %s", d, f.diffID, diffID)
		}
		if ok {
			// Another pull downloaded it.
			if !c.store.HasLayer(diffID) {
				return fmt.Errorf("layer %s missing after download", diffID)
			}
			_ = o.update(pid, "Verifying Checksum")
			_ = o.update(pid, "Download complete")
			_ = c.rec.add(d, desc.Size, diffID, desc.MediaType, repo.Host, repo.Path, true)
		}
		return nil
	case <-ctx.Done():
		c.mu.Lock()
		f.waiters--
		if f.waiters == 0 {
			f.cancel()
		}
		c.mu.Unlock()
		return ctx.Err()
	}
}

// downloadLayer fetches blob d, checks its digest, stores the layer and
// returns the diffID of its content.
func (c *Client) downloadLayer(ctx context.Context, o *out, s *session, repo Repo, desc Descriptor, pid string) (digest.Digest, error) {
	d := digest.Digest(desc.Digest)
	resp, err := s.do(ctx, http.MethodGet, "/v2/"+repo.Path+"/blobs/"+d.String(), nil, nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", responseError(resp)
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(c.dir, "tmp", hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp)
	defer f.Close()
	ch := newCountingHash()
	total := desc.Size
	src := &progressReader{r: resp.Body, total: total, report: func(n, t int64) { _ = o.progress(pid, "Downloading", n, t) }}
	if _, err := io.Copy(io.MultiWriter(f, ch), src); err != nil {
		return "", err
	}
	_ = o.update(pid, "Verifying Checksum")
	if ch.digest() != d || (desc.Size > 0 && ch.n != desc.Size) {
		return "", fmt.Errorf("filesystem layer verification failed for digest %s", d)
	}
	_ = o.update(pid, "Download complete")
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	br := bufio.NewReaderSize(f, 1<<16)
	var r io.Reader = br
	head, _ := br.Peek(4)
	switch {
	case len(head) >= 2 && head[0] == 0x1f && head[1] == 0x8b:
		gz, err := gzip.NewReader(br)
		if err != nil {
			return "", fmt.Errorf("layer %s: %w", d, err)
		}
		defer gz.Close()
		r = gz
	case bytes.Equal(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return "", fmt.Errorf("layer %s: zstd-compressed layers are not supported", d)
	}
	info, err := c.store.PutLayer(ctx, r)
	if err != nil {
		return "", fmt.Errorf("store layer %s: %w", d, err)
	}
	return info.DiffID, c.rec.add(d, ch.n, info.DiffID, desc.MediaType, repo.Host, repo.Path, true)
}
