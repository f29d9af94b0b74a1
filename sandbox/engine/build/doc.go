// Package build is labd's classic Docker builder: it parses a Dockerfile
// with buildkit's parser, dispatches each instruction the way dockerd's
// legacy builder (DOCKER_BUILDKIT=0) does, probes and fills the classic
// build cache, and writes the legacy output ("Step 1/4 : ...",
// " ---> Using cache", "Successfully built ...").
//
// Every step commits an image whose parent is the previous step's image,
// with the probe config as container_config, so the next build finds it
// as a cache hit. RUN steps run in a container (Runner) on an overlay of
// the parent's layers; COPY and ADD copy into such an overlay without a
// container; the overlay's upper directory becomes the step's layer.
//
// The dispatch rules (build args, cache probe configs, created-by strings,
// COPY source hashes) follow moby's builder/dockerfile package
// (Apache-2.0), which this package ports where exactness matters.
//
// The image store and the container runtime are the Store and Runner
// interfaces, defined here where they are consumed.
package build
