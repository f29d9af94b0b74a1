package image

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/opencontainers/go-digest"
)

// EmptyTarDiffID is the diffID of a layer tar with no entries (1024 zero
// bytes); Docker records such a step as empty_layer instead of a layer.
const EmptyTarDiffID = digest.Digest("sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef")

// Config is Docker's image config JSON (moby image.Image). Fields are
// declared in sorted key order because dockerd sorts the top-level keys
// when it writes a config, so json.Marshal of a Config gives the bytes
// dockerd 20.10 writes for the same image (container_config included).
// Parse existing configs with ParseConfig but keep their raw bytes: the
// image ID is the hash of the bytes, and unknown fields are dropped here.
type Config struct {
	Size            int64             `json:"Size,omitempty"`
	Architecture    string            `json:"architecture,omitempty"`
	Author          string            `json:"author,omitempty"`
	Comment         string            `json:"comment,omitempty"`
	Config          *container.Config `json:"config,omitempty"`
	Container       string            `json:"container,omitempty"`
	ContainerConfig *container.Config `json:"container_config,omitempty"`
	Created         time.Time         `json:"created"`
	DockerVersion   string            `json:"docker_version,omitempty"`
	History         []History         `json:"history,omitempty"`
	ID              string            `json:"id,omitempty"`
	OS              string            `json:"os,omitempty"`
	OSFeatures      []string          `json:"os.features,omitempty"`
	OSVersion       string            `json:"os.version,omitempty"`
	Parent          string            `json:"parent,omitempty"`
	RootFS          *RootFS           `json:"rootfs,omitempty"`
	Variant         string            `json:"variant,omitempty"`
}

// History is one entry of Config.History, fields in moby's order.
type History struct {
	Created    time.Time `json:"created"`
	Author     string    `json:"author,omitempty"`
	CreatedBy  string    `json:"created_by,omitempty"`
	Comment    string    `json:"comment,omitempty"`
	EmptyLayer bool      `json:"empty_layer,omitempty"`
}

// RootFS lists an image's layers, bottom first.
type RootFS struct {
	Type    string          `json:"type"`
	DiffIDs []digest.Digest `json:"diff_ids,omitempty"`
}

// ParseConfig decodes a config and checks what the store relies on.
func ParseConfig(raw []byte) (*Config, error) {
	var c Config
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("parse image config: %w", err)
	}
	if c.RootFS == nil {
		c.RootFS = &RootFS{Type: "layers"}
	}
	if c.RootFS.Type != "layers" {
		return nil, fmt.Errorf("parse image config: rootfs type %q not supported", c.RootFS.Type)
	}
	for _, d := range c.RootFS.DiffIDs {
		if err := d.Validate(); err != nil || d.Algorithm() != digest.SHA256 {
			return nil, fmt.Errorf("parse image config: invalid diff_id %q", d)
		}
	}
	return &c, nil
}

// Marshal returns the config bytes the way dockerd writes them.
func (c *Config) Marshal() ([]byte, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("marshal image config: %w", err)
	}
	return b, nil
}

// DiffIDs returns the config's layer diffIDs, bottom first.
func (c *Config) DiffIDs() []digest.Digest {
	if c.RootFS == nil {
		return nil
	}
	return c.RootFS.DiffIDs
}

// ID returns the image ID of raw config bytes: "sha256:" + sha256(raw).
func ID(raw []byte) digest.Digest { return digest.FromBytes(raw) }

// ChainID returns the chain ID of a stack of layers (bottom first):
// C0 = D0, Cn = sha256(C(n-1) + " " + Dn). It is "" for no layers.
func ChainID(diffIDs []digest.Digest) digest.Digest {
	ids := ChainIDs(diffIDs)
	if len(ids) == 0 {
		return ""
	}
	return ids[len(ids)-1]
}

// ChainIDs returns the chain ID of every prefix of diffIDs.
func ChainIDs(diffIDs []digest.Digest) []digest.Digest {
	out := make([]digest.Digest, len(diffIDs))
	for i, d := range diffIDs {
		if i == 0 {
			out[i] = d
			continue
		}
		out[i] = digest.FromString(string(out[i-1]) + " " + string(d))
	}
	return out
}
