package distribution

import (
	"bytes"
	"encoding/json"
)

// Media types.
const (
	MediaTypeManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeConfig       = "application/vnd.docker.container.image.v1+json"
	MediaTypeLayer        = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	MediaTypeOCIManifest  = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeOCIIndex     = "application/vnd.oci.image.index.v1+json"
	MediaTypeOCIConfig    = "application/vnd.oci.image.config.v1+json"
	MediaTypeOCILayer     = "application/vnd.oci.image.layer.v1.tar+gzip"
	MediaTypeOCILayerTar  = "application/vnd.oci.image.layer.v1.tar"
)

// Descriptor is a content descriptor, fields in distribution's order.
type Descriptor struct {
	MediaType string    `json:"mediaType,omitempty"`
	Size      int64     `json:"size"`
	Digest    string    `json:"digest"`
	URLs      []string  `json:"urls,omitempty"`
	Platform  *Platform `json:"platform,omitempty"`
}

// Platform of a manifest list entry.
type Platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Variant      string `json:"variant,omitempty"`
}

// Manifest is a schema2 or OCI image manifest, or (Manifests set) a
// manifest list or OCI index.
type Manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType,omitempty"`
	Config        *Descriptor  `json:"config,omitempty"`
	Layers        []Descriptor `json:"layers,omitempty"`
	Manifests     []Descriptor `json:"manifests,omitempty"`
}

// schema2Bytes marshals a schema2 manifest as distribution's
// schema2.FromStruct does (three-space indent), so the digest matches
// dockerd's for the same blobs.
func schema2Bytes(m *Manifest) ([]byte, error) {
	return json.MarshalIndent(m, "", "   ")
}

func jsonMarshal(v any) (json.RawMessage, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}
