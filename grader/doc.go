// Package grader checks lab steps against what really happened: the files
// in the learner's workspace and what the learner's engine did (images,
// builds, containers, pushes, API calls), read through the Docker Engine API
// (github.com/docker/docker/client) plus labd's records extension
// (GET /labd/v1/records, docs/engine.md).
//
// Grade evaluates every check of a lab once (labd grade, labd test); Live
// re-evaluates a sandbox's checks when its engine publishes an event, when a
// workspace file changes or when the learner presses Check, and tells
// subscribers (the lab page's status websocket) the new state. Passes are
// stored in the progress database (grader/progress) and stay passed unless a
// check says sticky: false.
//
// A check that cannot be evaluated (the engine is not reachable, a record
// labd's engine keeps is missing on a real dockerd, no live sandbox for a
// script) is reported as StateError with "could not check: <reason>", never
// as passed.
package grader
