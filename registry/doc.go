// Package registry is labd's classroom registry: CNCF Distribution
// (github.com/distribution/distribution/v3) embedded in-process, with
// filesystem storage under DATA/registry, token authentication issued by
// labd itself (registry/auth) against the accounts in DATA/labd.db
// (registry/accounts), a per-learner disk quota, garbage collection, and
// what distribution v3.1 lacks: sha512 content and tag parameters
// (digests.go) and the referrers API (referrers.go).
//
// On-disk layout (Options.Dir, normally DATA/registry):
//
//	DATA/registry/
//	├── lock          flock held by the running registry (and by offline GC)
//	├── token.key     ECDSA P-256 key signing tokens (0600)
//	├── jwks.json     its public half, loaded by distribution's token auth
//	├── http.secret   HMAC key of upload state, so uploads survive restarts
//	└── storage/docker/registry/v2/{blobs,repositories}/...   distribution's tree
//
// One listener serves both the registry API (/v2/...) and the token
// endpoint (/auth/token). See docs/registry.md.
package registry
