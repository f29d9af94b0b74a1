package distribution

import (
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/docker/docker/pkg/jsonmessage"
	"github.com/labd/labd/sandbox/engine/image"
	"github.com/opencontainers/go-digest"
)

// Output gets the JSON messages of a login, push or pull in the order
// dockerd's stream formatter writes them. It must be safe for concurrent
// use only if the caller shares it; the client serialises its own calls.
type Output func(*jsonmessage.JSONMessage) error

// Client pushes and pulls for every engine of a process: the blob records
// and the in-flight downloads are shared.
type Client struct {
	opts    Options
	store   *image.Store
	dir     string
	version string
	rec     *records
	allow   *allowlist

	secureHC, insecureHC *http.Client

	onTransfer func(Transfer) // OnTransfer; set before the first transfer

	mu      sync.Mutex
	logs    map[string]*transferLog
	flights map[digest.Digest]*flight
	zips    map[digest.Digest]*zipFlight // compressions of layers for pushes, by diffID
}

// New opens the client's records under the store's directory
// (<engine>/distribution). version is the engine version for User-Agent.
func New(store *image.Store, opts Options, version string) (*Client, error) {
	allow, err := newAllowlist(opts)
	if err != nil {
		return nil, fmt.Errorf("registry client: %w", err)
	}
	dir := filepath.Join(store.Dir(), "distribution")
	for _, d := range []string{dir, filepath.Join(dir, "transfers")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("registry client: %w", err)
		}
	}
	// Downloads of a killed process.
	if err := os.RemoveAll(filepath.Join(dir, "tmp")); err != nil {
		return nil, fmt.Errorf("registry client: clean tmp: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o700); err != nil {
		return nil, fmt.Errorf("registry client: %w", err)
	}
	rec, err := openRecords(filepath.Join(dir, "blobs.jsonl"))
	if err != nil {
		return nil, fmt.Errorf("registry client: blob records: %w", err)
	}
	c := &Client{opts: opts, store: store, dir: dir, version: version, rec: rec, allow: allow,
		logs: map[string]*transferLog{}, flights: map[digest.Digest]*flight{}}
	c.secureHC, c.insecureHC = newHTTPClients(allow)
	return c, nil
}

// Options returns the client's configuration.
func (c *Client) Options() Options { return c.opts }

// Close releases the record file.
func (c *Client) Close() error { return c.rec.close() }

// Blobs returns the blob records of a layer (for tests and graders).
func (c *Client) Blobs(diffID digest.Digest) []BlobRecord { return c.rec.forDiffID(diffID) }

// out serialises an Output and adds dockerd's message shapes.
type out struct {
	mu sync.Mutex
	f  Output
}

func (o *out) send(m *jsonmessage.JSONMessage) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.f(m)
}

// message is progress.Message: a status without progressDetail.
func (o *out) message(id, status string) error {
	return o.send(&jsonmessage.JSONMessage{ID: id, Status: status})
}

// update is progress.Update: a status with an empty progressDetail.
func (o *out) update(id, status string) error {
	return o.send(&jsonmessage.JSONMessage{ID: id, Status: status, Progress: &jsonmessage.JSONProgress{}})
}

func (o *out) progress(id, status string, cur, total int64) error {
	p := &jsonmessage.JSONProgress{Current: cur, Total: total}
	return o.send(&jsonmessage.JSONMessage{ID: id, Status: status, Progress: p, ProgressMessage: p.String()})
}

func (o *out) aux(v any) error {
	b, err := jsonMarshal(v)
	if err != nil {
		return err
	}
	raw := b
	return o.send(&jsonmessage.JSONMessage{Aux: &raw, Progress: &jsonmessage.JSONProgress{}})
}

func shortID(d digest.Digest) string {
	h := d.Encoded()
	if len(h) > 12 {
		h = h[:12]
	}
	return h
}

// progressReader reports reads at most every 100 ms.
type progressReader struct {
	r        io.Reader
	n, total int64
	last     time.Time
	report   func(n, total int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	if now := time.Now(); now.Sub(p.last) >= 100*time.Millisecond || (err == io.EOF && p.n > 0) {
		p.last = now
		p.report(p.n, p.total)
	}
	return n, err
}

// countingHash hashes and counts what passes through.
type countingHash struct {
	h hash.Hash
	n int64
}

func newCountingHash() *countingHash { return &countingHash{h: sha256.New()} }

func (c *countingHash) Write(b []byte) (int, error) {
	c.n += int64(len(b))
	return c.h.Write(b)
}

func (c *countingHash) digest() digest.Digest { return digest.NewDigest(digest.SHA256, c.h) }

// withQuery adds key=value to a URL (an upload Location may carry its own
// query, e.g. _state).
func withQuery(u, key, value string) (string, error) {
	pu, err := url.Parse(u)
	if err != nil {
		return "", err
	}
	q := pu.Query()
	q.Set(key, value)
	pu.RawQuery = q.Encode()
	return pu.String(), nil
}

// cleanErr unwraps url.Error around registry and credential errors, as
// dockerd's retryOnError does, so the stream says "denied: …" alone.
func cleanErr(err error) error {
	if ue, ok := err.(*url.Error); ok {
		if errorCode(ue.Err) != "" || ue.Err == errNoBasicAuth {
			return ue.Err
		}
	}
	return err
}

// drain reads and closes a response body so the connection is reused.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
}

// OnTransfer has f hear of every push and pull once it is recorded (labd's
// metrics). Call it before the client's first transfer.
func (c *Client) OnTransfer(f func(Transfer)) { c.onTransfer = f }

// recordTransfer logs tr in view's records and tells OnTransfer.
func (c *Client) recordTransfer(view string, tr Transfer) error {
	err := c.transferLog(view).add(tr)
	if f := c.onTransfer; f != nil {
		f(tr)
	}
	return err
}
