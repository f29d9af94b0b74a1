// Package sandbox defines what a learner's sandbox is (a login shell on a
// pty plus a way for graders to run commands beside it) and the Manager
// that finds, creates, reaps and destroys sandboxes.
//
// The package holds no implementation of a sandbox: providers live in
// subpackages (sandbox/nsbox runs the shell in fresh Linux namespaces; a
// later stage runs it as a container of the embedded engine). Keeping the
// interfaces here small lets the web layer and the graders stay unaware of
// which provider runs underneath.
//
// On-disk layout under ManagerOptions.DataDir:
//
//	<DataDir>/
//	└── sandboxes/
//	    └── <id>/
//	        └── workspace/   (0700) the learner's files; survives destroy and restart
package sandbox
