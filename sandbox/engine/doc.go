// Package engine ties labd's embedded container engine together: one
// view of the shared image store, the classic builder, the runtime and an
// event bus make an Engine, which serves the Docker Engine API through
// sandbox/engine/api.
//
// Shared holds what every sandbox shares (the store and the runtime);
// (*Shared).Engine gives each sandbox its own view, hence its own images,
// tags and build cache, over the same deduplicated blobs. Open is the
// standalone form used by `labd engine` (view "default"). Learners'
// sandboxes are made by sandbox/enginebox, the provider that gives each
// its Engine, network, cgroup, disk and shell.
package engine
