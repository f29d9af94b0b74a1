// Package distribution is the engine's registry client: docker login, push
// and pull over the registry HTTP API (distribution spec v2), as dockerd
// 20.10 does them, with its JSON progress messages.
//
// It keeps two records under <engine>/distribution/:
//
//	blobs.jsonl               compressed blob ↔ layer diffID, and the registry repositories known to hold each blob
//	transfers/<view>.jsonl    every push and pull of a view, with per-layer outcomes (for graders)
//
// With the blob records an unchanged layer is neither compressed nor
// uploaded again (HEAD, then a cross-repository mount), and a pulled layer
// already in the shared store is not downloaded when the view already sees
// it or this engine once hashed that blob and found the layer in it (a
// manifest may pair any blob with any diffID; the store is every
// learner's). Downloads of the same blob by concurrent pulls (one per
// sandbox) are made once; each pull checks the content against its own
// config.
//
// Docker Hub names (no registry host) go to Options.HubUpstream when set,
// else to Options.HubStandIn (the classroom registry); messages keep Docker's
// names (docker.io/alice/app). Only those registries and
// Options.AllowedRegistries are ever contacted, token realms and redirects
// included (allow.go).
package distribution
