package distribution

import (
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/registry"
	"github.com/labd/labd/sandbox/engine/image"
	"github.com/opencontainers/go-digest"
)

// maxUploads is dockerd's default --max-concurrent-uploads.
const maxUploads = 5

// PushRequest is one POST /images/{name}/push.
type PushRequest struct {
	View *image.View
	Name reference.Named // normalised, without tag
	Tag  string          // "" pushes every tag of the repository, as dockerd
	Auth registry.AuthConfig
	Out  Output
}

// Push uploads the image(s) and writes dockerd 20.10's stream. Errors after
// the first message belong in the stream; the caller decides by whether
// Out was called.
func (c *Client) Push(ctx context.Context, req PushRequest) error {
	o := &out{f: req.Out}
	repo := c.opts.Resolve(req.Name)
	host, err := c.allow.registry(repo.Host)
	if err != nil {
		return err // refused before any connection: not a transfer
	}
	repo.Host = host
	if err := o.message("", "The push refers to repository ["+repo.Named.Name()+"]"); err != nil {
		return err
	}
	type tagged struct {
		tag string
		id  digest.Digest
	}
	var tags []tagged
	if req.Tag != "" {
		ref, err := reference.WithTag(req.Name, req.Tag)
		if err != nil {
			return errInvalid(err)
		}
		id, err := req.View.Resolve(ref.String())
		if err != nil {
			return errNotFound(fmt.Errorf("An image does not exist locally with the tag: %s", reference.FamiliarName(req.Name))) //nolint:staticcheck // dockerd's message
		}
		tags = append(tags, tagged{req.Tag, id})
	} else {
		for name, id := range req.View.Tags() {
			n, err := reference.ParseNormalizedNamed(name)
			if err != nil || n.Name() != req.Name.Name() {
				continue
			}
			if t, ok := n.(reference.Tagged); ok {
				tags = append(tags, tagged{t.Tag(), id})
			}
		}
		sort.Slice(tags, func(i, j int) bool { return tags[i].tag < tags[j].tag })
		if len(tags) == 0 {
			return errNotFound(fmt.Errorf("An image does not exist locally with the tag: %s", reference.FamiliarName(req.Name))) //nolint:staticcheck // dockerd's message
		}
	}
	var sess *session
	for _, t := range tags {
		tr := Transfer{Time: time.Now().UTC(), Kind: "push", Repository: repo.Named.Name(), Registry: repo.Host,
			Tag: t.tag, ImageID: t.id, Account: req.Auth.Username}
		err := c.pushTag(ctx, o, &sess, req, repo, t.tag, t.id, &tr)
		if err != nil {
			tr.Error = err.Error()
		}
		if lerr := c.recordTransfer(req.View.Name(), tr); lerr != nil && err == nil {
			err = lerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

type pushedLayer struct {
	desc Descriptor
	lt   LayerTransfer
}

func (c *Client) pushTag(ctx context.Context, o *out, sessp **session, req PushRequest, repo Repo, tag string, id digest.Digest, tr *Transfer) error {
	raw, err := c.store.RawConfig(id)
	if err != nil {
		return err
	}
	cfg, err := image.ParseConfig(raw)
	if err != nil {
		return err
	}
	diffIDs := cfg.DiffIDs()
	// dockerd's descriptors run from the top layer down.
	var order []digest.Digest
	seen := map[digest.Digest]bool{}
	for i := len(diffIDs) - 1; i >= 0; i-- {
		if !seen[diffIDs[i]] {
			seen[diffIDs[i]] = true
			order = append(order, diffIDs[i])
		}
	}
	for _, d := range order {
		if err := o.update(shortID(d), "Preparing"); err != nil {
			return err
		}
	}
	if *sessp == nil {
		scopes := []string{repo.Scope("pull,push")}
		for _, d := range order {
			for _, rec := range c.rec.forDiffID(d) {
				for _, r := range rec.Repos[repo.Host] {
					if sc := "repository:" + r + ":pull"; r != repo.Path && !slices.Contains(scopes, sc) {
						scopes = append(scopes, sc)
					}
				}
			}
		}
		s, err := c.newSession(ctx, repo.Host, req.Auth, scopes, false)
		if err != nil {
			return cleanErr(err)
		}
		*sessp = s
	}
	s := *sessp

	results := map[digest.Digest]pushedLayer{}
	var mu sync.Mutex
	var firstErr error
	sem := make(chan struct{}, maxUploads)
	var wg sync.WaitGroup
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for i, d := range order {
		if i >= maxUploads {
			if err := o.update(shortID(d), "Waiting"); err != nil {
				return err
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-pctx.Done():
				return
			}
			defer func() { <-sem }()
			pl, err := c.pushLayer(pctx, o, s, repo, d)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
					cancel()
				}
				return
			}
			results[d] = pl
		}()
	}
	wg.Wait()
	if firstErr != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return cleanErr(firstErr)
	}

	// The config goes up silently.
	if err := c.pushConfig(ctx, s, repo, id, raw); err != nil {
		return cleanErr(err)
	}
	m := &Manifest{SchemaVersion: 2, MediaType: MediaTypeManifest,
		Config: &Descriptor{MediaType: MediaTypeConfig, Size: int64(len(raw)), Digest: id.String()}}
	for _, d := range diffIDs {
		pl := results[d]
		m.Layers = append(m.Layers, pl.desc)
	}
	for _, d := range slices.Backward(order) {
		tr.Layers = append(tr.Layers, results[d].lt)
		if results[d].lt.Outcome == OutcomePushed {
			tr.BytesSent += results[d].lt.Size
		}
	}
	mb, err := schema2Bytes(m)
	if err != nil {
		return err
	}
	resp, err := s.do(ctx, http.MethodPut, "/v2/"+repo.Path+"/manifests/"+tag, strings.NewReader(string(mb)),
		http.Header{"Content-Type": {MediaTypeManifest}})
	if err != nil {
		return cleanErr(err)
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusAccepted {
		defer resp.Body.Close()
		return responseError(resp)
	}
	drain(resp)
	md := digest.FromBytes(mb)
	if got := resp.Header.Get("Docker-Content-Digest"); got != "" && got != md.String() {
		return fmt.Errorf("registry stored manifest as %s, expected %s", got, md)
	}
	tr.Digest = md
	canonical, err := reference.WithDigest(repo.Named, md)
	if err == nil {
		if err := req.View.AddRepoDigest(id, canonical.String()); err != nil {
			return err
		}
	}
	if err := o.message("", fmt.Sprintf("%s: digest: %s size: %d", tag, md, len(mb))); err != nil {
		return err
	}
	return o.aux(struct {
		Tag    string
		Digest string
		Size   int
	}{tag, md.String(), len(mb)})
}

// pushLayer places one layer in the repository: already there (HEAD of a
// blob the records know), mounted from another repository of the same
// registry, or compressed and uploaded.
func (c *Client) pushLayer(ctx context.Context, o *out, s *session, repo Repo, diffID digest.Digest) (pushedLayer, error) {
	pid := shortID(diffID)
	cands := c.rec.forDiffID(diffID)
	// Blobs recorded in this repository first, then any other known blob.
	sort.SliceStable(cands, func(i, j int) bool {
		return slices.Contains(cands[i].Repos[repo.Host], repo.Path) && !slices.Contains(cands[j].Repos[repo.Host], repo.Path)
	})
	done := func(rec BlobRecord, outcome, status, from string) (pushedLayer, error) {
		if err := c.rec.add(rec.Digest, rec.Size, diffID, rec.MediaType, repo.Host, repo.Path, rec.Verified); err != nil {
			return pushedLayer{}, err
		}
		mt := rec.MediaType
		if mt == "" || mt == MediaTypeOCILayer {
			mt = MediaTypeLayer
		}
		if err := o.update(pid, status); err != nil {
			return pushedLayer{}, err
		}
		return pushedLayer{
			desc: Descriptor{MediaType: mt, Size: rec.Size, Digest: rec.Digest.String()},
			lt:   LayerTransfer{DiffID: diffID, Digest: rec.Digest, Size: rec.Size, Outcome: outcome, From: from},
		}, nil
	}
	for _, rec := range cands {
		if rec.MediaType != "" && rec.MediaType != MediaTypeLayer && rec.MediaType != MediaTypeOCILayer {
			continue // a schema2 manifest only names gzip layers
		}
		ok, err := c.blobExists(ctx, s, repo, rec.Digest)
		if err != nil {
			return pushedLayer{}, err
		}
		if ok {
			return done(rec, OutcomeExists, "Layer already exists", "")
		}
		c.rec.forget(rec.Digest, repo.Host, repo.Path)
	}
	var uploadURL string
	for _, rec := range cands {
		if rec.MediaType != "" && rec.MediaType != MediaTypeLayer && rec.MediaType != MediaTypeOCILayer {
			continue
		}
		for _, from := range rec.Repos[repo.Host] {
			if from == repo.Path {
				continue
			}
			resp, err := s.do(ctx, http.MethodPost, "/v2/"+repo.Path+"/blobs/uploads/?mount="+rec.Digest.String()+"&from="+from, nil, nil)
			if err != nil {
				return pushedLayer{}, err
			}
			switch resp.StatusCode {
			case http.StatusCreated:
				drain(resp)
				return done(rec, OutcomeMounted, "Mounted from "+familiarPath(repo.Host, from, c.opts), from)
			case http.StatusAccepted:
				// The registry could not mount and opened an upload instead.
				uploadURL, err = s.location(resp)
				drain(resp)
				if err != nil {
					return pushedLayer{}, err
				}
			default:
				drain(resp)
				c.rec.forget(rec.Digest, repo.Host, from)
			}
			if uploadURL != "" {
				break
			}
		}
		if uploadURL != "" {
			break
		}
	}
	rec, reused, err := c.uploadLayer(ctx, o, s, repo, diffID, uploadURL)
	if err != nil {
		return pushedLayer{}, err
	}
	pl, err := done(rec, OutcomePushed, "Pushed", "")
	pl.lt.Reused = reused
	return pl, err
}

// familiarPath is how dockerd names a mount source: the repository's
// familiar name on Docker Hub, host/path elsewhere... dockerd 20.10 prints
// the path alone ("Mounted from alice/hello") for any registry.
func familiarPath(host, path string, _ Options) string { return path }

func (c *Client) blobExists(ctx context.Context, s *session, repo Repo, d digest.Digest) (bool, error) {
	resp, err := s.do(ctx, http.MethodHead, "/v2/"+repo.Path+"/blobs/"+d.String(), nil, nil)
	if err != nil {
		return false, err
	}
	drain(resp)
	switch resp.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusNotFound:
		return false, nil
	case http.StatusUnauthorized, http.StatusForbidden:
		return false, responseError(resp)
	}
	return false, nil
}

// startUpload opens an upload session and returns its location.
func (c *Client) startUpload(ctx context.Context, s *session, repo Repo) (string, error) {
	resp, err := s.do(ctx, http.MethodPost, "/v2/"+repo.Path+"/blobs/uploads/", nil, nil)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusAccepted {
		defer resp.Body.Close()
		return "", responseError(resp)
	}
	defer drain(resp)
	return s.location(resp)
}

// uploadLayer uploads the layer's gzip blob in one PATCH (as dockerd
// does), then commits it with PUT ?digest=. The blob is compressed once
// and kept in the store (compressedLayer): a class pushing the same base
// layer into 50 namespaces, none of which may mount from another,
// compresses it once, not 50 times.
func (c *Client) uploadLayer(ctx context.Context, o *out, s *session, repo Repo, diffID digest.Digest, loc string) (_ BlobRecord, reused bool, err error) {
	pid := shortID(diffID)
	if loc == "" {
		if loc, err = c.startUpload(ctx, s, repo); err != nil {
			return BlobRecord{}, false, err
		}
	}
	blob, _, reused, err := c.compressedLayer(ctx, o, diffID)
	if err != nil {
		return BlobRecord{}, false, err
	}
	f, err := c.store.OpenBlob(blob)
	if err != nil {
		return BlobRecord{}, false, fmt.Errorf("layer %s: %w", pid, err)
	}
	defer f.Close()
	pr, pw := io.Pipe()
	ch := newCountingHash()
	go func() {
		// Buffered so the request goes in large chunks.
		bw := bufio.NewWriterSize(io.MultiWriter(pw, ch), 64<<10)
		_, err := io.Copy(bw, f)
		if err == nil {
			err = bw.Flush()
		}
		pw.CloseWithError(err)
	}()
	resp, err := s.do(ctx, http.MethodPatch, loc, pr, http.Header{"Content-Type": {"application/octet-stream"}})
	pr.CloseWithError(errors.New("upload ended"))
	if err != nil {
		return BlobRecord{}, false, err
	}
	if resp.StatusCode != http.StatusAccepted && resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusCreated {
		defer resp.Body.Close()
		return BlobRecord{}, false, responseError(resp)
	}
	next, err := s.location(resp)
	drain(resp)
	if err != nil {
		next = loc
	}
	d := ch.digest()
	put, err := withQuery(next, "digest", d.String())
	if err != nil {
		return BlobRecord{}, false, err
	}
	resp, err = s.do(ctx, http.MethodPut, put, nil, http.Header{"Content-Length": {"0"}})
	if err != nil {
		return BlobRecord{}, false, err
	}
	if resp.StatusCode != http.StatusCreated {
		defer resp.Body.Close()
		return BlobRecord{}, false, responseError(resp)
	}
	drain(resp)
	if d != blob {
		return BlobRecord{}, false, fmt.Errorf("layer %s: the stored blob %s changed while it was uploaded (%s)", pid, blob, d)
	}
	return BlobRecord{Digest: d, Size: ch.n, DiffID: diffID, MediaType: MediaTypeLayer, Verified: true}, reused, nil
}

// compressedLayer returns the digest and size of a gzip blob of layer
// diffID in the store: one a push made before (the records tie it to the
// layer), or one made now. Pushes of the same layer at the same time wait
// for one compression; reused says this push did not compress it.
func (c *Client) compressedLayer(ctx context.Context, o *out, diffID digest.Digest) (_ digest.Digest, _ int64, reused bool, _ error) {
	for _, rec := range c.rec.forDiffID(diffID) {
		if (rec.MediaType == "" || rec.MediaType == MediaTypeLayer || rec.MediaType == MediaTypeOCILayer) && rec.Verified && c.store.HasBlob(rec.Digest) {
			return rec.Digest, rec.Size, true, nil
		}
	}
	c.mu.Lock()
	if c.zips == nil {
		c.zips = map[digest.Digest]*zipFlight{}
	}
	z, running := c.zips[diffID]
	if !running {
		z = &zipFlight{done: make(chan struct{})}
		c.zips[diffID] = z
	}
	c.mu.Unlock()
	if running {
		select {
		case <-z.done:
			return z.blob, z.size, true, z.err
		case <-ctx.Done():
			return "", 0, false, ctx.Err()
		}
	}
	z.blob, z.size, z.err = c.compress(ctx, o, diffID)
	if z.err == nil {
		// Known from now on by the records (a verified blob of the layer
		// that no repository holds yet).
		z.err = c.rec.add(z.blob, z.size, diffID, MediaTypeLayer, "", "", true)
	}
	c.mu.Lock()
	delete(c.zips, diffID)
	c.mu.Unlock()
	close(z.done)
	return z.blob, z.size, false, z.err
}

// zipFlight is one compression of a layer that pushes wait for.
type zipFlight struct {
	done chan struct{}
	blob digest.Digest
	size int64
	err  error
}

// compress gzips the stored layer into the store.
func (c *Client) compress(ctx context.Context, o *out, diffID digest.Digest) (digest.Digest, int64, error) {
	pid := shortID(diffID)
	tarSize := int64(0)
	if f, err := c.store.OpenBlob(diffID); err == nil {
		if st, err := f.Stat(); err == nil {
			tarSize = st.Size()
		}
		f.Close()
	}
	layer, err := c.store.OpenLayer(diffID)
	if err != nil {
		return "", 0, err
	}
	defer layer.Close()
	pr, pw := io.Pipe()
	go func() {
		bw := bufio.NewWriterSize(pw, 64<<10)
		gz := gzip.NewWriter(bw)
		// Reported as dockerd's "Pushing" of the layer: compressing is
		// most of a push's time.
		src := &progressReader{r: &ctxReader{ctx: ctx, r: layer}, total: tarSize, report: func(n, t int64) { _ = o.progress(pid, "Pushing", n, t) }}
		_, err := io.Copy(gz, src)
		if err == nil {
			err = gz.Close()
		}
		if err == nil {
			err = bw.Flush()
		}
		pw.CloseWithError(err)
	}()
	d, n, err := c.store.PutBlob(pr)
	pr.CloseWithError(errors.New("compression ended"))
	if err != nil {
		return "", 0, fmt.Errorf("compress layer %s: %w", pid, err)
	}
	return d, n, nil
}

// ctxReader ends a read when ctx does (a cancelled push stops compressing).
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r *ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

func (c *Client) pushConfig(ctx context.Context, s *session, repo Repo, id digest.Digest, raw []byte) error {
	ok, err := c.blobExists(ctx, s, repo, id)
	if err != nil || ok {
		return err
	}
	loc, err := c.startUpload(ctx, s, repo)
	if err != nil {
		return err
	}
	put, err := withQuery(loc, "digest", id.String())
	if err != nil {
		return err
	}
	resp, err := s.do(ctx, http.MethodPut, put, strings.NewReader(string(raw)), http.Header{"Content-Type": {"application/octet-stream"}})
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusCreated {
		defer resp.Body.Close()
		return responseError(resp)
	}
	drain(resp)
	return nil
}
