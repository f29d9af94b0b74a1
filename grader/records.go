package grader

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/docker/docker/client"
)

// Records mirrors labd's GET /labd/v1/records answer (docs/engine.md). It
// is declared here, where it is consumed, so the grader needs only HTTP to
// read it and works against any engine that serves it.
type Records struct {
	Engine     string           `json:"engine"`
	View       string           `json:"view"`
	Now        time.Time        `json:"now"`
	Seq        uint64           `json:"seq"`      // records added since the engine started
	CallSeq    uint64           `json:"call_seq"` // calls among them
	Calls      []CallRecord     `json:"calls"`
	Builds     []BuildRecord    `json:"builds"`
	Transfers  []TransferRecord `json:"transfers"`
	Containers []struct {
		Time   time.Time `json:"time"`
		Action string    `json:"action"`
		ID     string    `json:"id"`
		Name   string    `json:"name"`
		Image  string    `json:"image"`
	} `json:"containers"`
}

// CallRecord is one API request of the learner.
type CallRecord struct {
	Time   time.Time `json:"time"`
	Method string    `json:"method"`
	Path   string    `json:"path"`
	Query  string    `json:"query"`
	Status int       `json:"status"`
}

// BuildRecord is one build.
type BuildRecord struct {
	Time        time.Time         `json:"time"`
	Dockerfile  string            `json:"dockerfile"`
	Tags        []string          `json:"tags"`
	NoCache     bool              `json:"no_cache"`
	Target      string            `json:"target"`
	BuildArgs   map[string]string `json:"build_args"`
	ContextSize int64             `json:"context_size"`
	ImageID     string            `json:"image_id"`
	Error       string            `json:"error"`
	Steps       []struct {
		Step        int    `json:"step"`
		Instruction string `json:"instruction"`
		Cached      bool   `json:"cached"`
		ImageID     string `json:"image_id"`
		CreatedBy   string `json:"created_by"`
	} `json:"steps"`
}

// TransferRecord is one push or pull.
type TransferRecord struct {
	Time       time.Time `json:"time"`
	Kind       string    `json:"kind"`
	Repository string    `json:"repository"`
	Tag        string    `json:"tag"`
	Digest     string    `json:"digest"`
	ImageID    string    `json:"image_id"`
	Account    string    `json:"account"`
	Error      string    `json:"error"`
	Layers     []struct {
		Outcome string `json:"outcome"`
	} `json:"layers"`
}

// fetchRecords asks the engine for its records through the Docker client's
// own transport (the unix socket).
func fetchRecords(ctx context.Context, c *client.Client, since time.Time) (*Records, error) {
	q := url.Values{}
	if !since.IsZero() {
		q.Set("since", since.Format(time.RFC3339Nano))
	}
	return getRecords(ctx, c, q)
}

// awaitRecords long-polls the engine: it answers once the engine's record
// count is no longer after, or when wait has passed. The answer carries
// only records from now on; Seq and CallSeq are what the caller wants.
func awaitRecords(ctx context.Context, c *client.Client, after uint64, wait time.Duration) (*Records, error) {
	q := url.Values{}
	q.Set("since", time.Now().Format(time.RFC3339Nano))
	q.Set("after", strconv.FormatUint(after, 10))
	q.Set("wait", wait.String())
	return getRecords(ctx, c, q)
}

func getRecords(ctx context.Context, c *client.Client, q url.Values) (*Records, error) {
	if c == nil {
		return nil, cannot("the sandbox has no engine")
	}
	u := "http://docker/labd/v1/records"
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Host = "docker"
	resp, err := c.HTTPClient().Do(req)
	if err != nil {
		return nil, cannot("the engine is not running (%v)", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, errNoRecords
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, cannot("engine records: %s: %s", resp.Status, b)
	}
	var r Records
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, cannot("engine records: %v", err)
	}
	if r.Engine != "labd" {
		return nil, errNoRecords
	}
	return &r, nil
}

func (r *Records) String() string {
	return fmt.Sprintf("%d calls, %d builds, %d transfers", len(r.Calls), len(r.Builds), len(r.Transfers))
}
