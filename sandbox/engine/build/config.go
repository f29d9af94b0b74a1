package build

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
)

// emptyLayerDiffID is the diff ID of a tar with no entries: a step whose
// upper directory stays empty adds no layer (history empty_layer), as in
// dockerd.
const emptyLayerDiffID = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"

// imageConfig is dockerd's image JSON (image.Image with V1Image inlined).
// It is written with sorted top-level keys, as dockerd's MarshalJSON does.
type imageConfig struct {
	Architecture    string            `json:"architecture,omitempty"`
	Author          string            `json:"author,omitempty"`
	Comment         string            `json:"comment,omitempty"`
	Config          *container.Config `json:"config,omitempty"`
	Container       string            `json:"container,omitempty"`
	ContainerConfig *container.Config `json:"container_config,omitempty"`
	Created         *time.Time        `json:"created,omitempty"`
	DockerVersion   string            `json:"docker_version,omitempty"`
	History         []historyEntry    `json:"history,omitempty"`
	OS              string            `json:"os,omitempty"`
	OSFeatures      []string          `json:"os.features,omitempty"`
	OSVersion       string            `json:"os.version,omitempty"`
	RootFS          *rootFS           `json:"rootfs,omitempty"`
	Variant         string            `json:"variant,omitempty"`
}

type historyEntry struct {
	Created    *time.Time `json:"created,omitempty"`
	Author     string     `json:"author,omitempty"`
	CreatedBy  string     `json:"created_by,omitempty"`
	Comment    string     `json:"comment,omitempty"`
	EmptyLayer bool       `json:"empty_layer,omitempty"`
}

type rootFS struct {
	Type    string   `json:"type"`
	DiffIDs []string `json:"diff_ids,omitempty"`
}

func parseConfig(b []byte) (*imageConfig, error) {
	var c imageConfig
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("decode image config: %w", err)
	}
	return &c, nil
}

// marshal writes the config with sorted top-level keys; nested objects
// keep their struct order (dockerd's image.Image.MarshalJSON).
func (c *imageConfig) marshal() ([]byte, error) {
	pass1, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	var m map[string]*json.RawMessage
	if err := json.Unmarshal(pass1, &m); err != nil {
		return nil, err
	}
	return json.Marshal(m)
}

// childConfig is dockerd's image.NewChildImage: the parent's rootfs plus
// the step's layer (unless empty) and one more history entry whose
// created_by is the container config's Cmd joined with spaces.
func childConfig(parent *imageConfig, runConfig, containerConfig *container.Config, containerID, author, diffID, dockerVersion string, now time.Time) *imageConfig {
	empty := diffID == "" || diffID == emptyLayerDiffID
	rfs := &rootFS{Type: "layers"}
	arch, variant, osName := "amd64", "", "linux"
	var hist []historyEntry
	var osFeatures []string
	var osVersion string
	if parent != nil {
		if parent.RootFS != nil {
			rfs.DiffIDs = append(rfs.DiffIDs, parent.RootFS.DiffIDs...)
		}
		if parent.Architecture != "" {
			arch = parent.Architecture
		}
		variant = parent.Variant
		if parent.OS != "" {
			osName = parent.OS
		}
		hist = append(hist, parent.History...)
		osFeatures, osVersion = parent.OSFeatures, parent.OSVersion
	}
	if !empty {
		rfs.DiffIDs = append(rfs.DiffIDs, diffID)
	}
	t := now.UTC()
	hist = append(hist, historyEntry{
		Created:    &t,
		Author:     author,
		CreatedBy:  strings.Join(containerConfig.Cmd, " "),
		EmptyLayer: empty,
	})
	return &imageConfig{
		Architecture:    arch,
		Author:          author,
		Config:          runConfig,
		Container:       containerID,
		ContainerConfig: containerConfig,
		Created:         &t,
		DockerVersion:   dockerVersion,
		History:         hist,
		OS:              osName,
		OSFeatures:      osFeatures,
		OSVersion:       osVersion,
		RootFS:          rfs,
		Variant:         variant,
	}
}
