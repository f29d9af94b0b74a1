// Package auth is the classroom registry's token server: it checks Basic
// credentials against the account store, decides which of the requested
// scopes an account gets (Policy), and signs the JWTs that distribution's
// "token" access controller verifies (Issuer).
//
// The flow is Docker's token authentication
// (https://distribution.github.io/distribution/spec/auth/token/): /v2/
// answers 401 with `Bearer realm=".../auth/token",service="labd-registry"`,
// the client asks the realm for a token with its scopes, and retries with
// `Authorization: Bearer <token>`. Denied scopes are left out of the token
// rather than refused, so the registry itself answers "denied: requested
// access to the resource is denied" as Docker Hub does. With
// offline_token=true (docker login) the answer also carries a refresh
// token, Docker's identity token, bound to the account's password.
package auth
