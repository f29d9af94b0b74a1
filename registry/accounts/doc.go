// Package accounts keeps the classroom registry's accounts in labd's SQLite
// database (DATA/labd.db).
//
// An account is a name (Docker Hub handle rules, see ValidName), a bcrypt
// password hash and a role: learners push under their own name, instructors
// publish under theirs and library/ and read everything (the policy itself
// lives in registry/auth). Learner accounts made by labd for a web learner
// (EnsureLearner, Rotate) get a random password that labd keeps so the lab
// page can show it; passwords chosen by a person are only ever stored hashed.
//
// Tables are namespaced "registry_*" because other parts of labd share the
// database file; labd_migrations records each component's schema version.
package accounts
