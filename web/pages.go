package web

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"os"

	"github.com/labd/labd/labs"
	"github.com/labd/labd/sandbox"
)

type catalogueData struct {
	Entries  []labs.Entry
	Progress map[string]*labProgress // lab ID → the learner's passed checks (grading.go)
}

func (s *server) catalogue(w http.ResponseWriter, r *http.Request) {
	// A new visitor's identity is issued here only while their address is
	// within its admission limit; it is paid for by its first sandbox
	// (admission.go), and the lab page issues one if this did not.
	if s.keys.learnerFromRequest(r) == "" {
		if _, ok := s.admission.peek(admissionClient(r)); ok {
			s.keys.issueLearner(w, r, newLearnerID())
		}
	}
	entries := s.opts.Catalog.List()
	s.render(w, r, http.StatusOK, "catalogue", catalogueData{Entries: entries, Progress: s.progressFor(r, entries)})
}

type labData struct {
	Lab       *labs.Lab
	SandboxID string
	Registry  *registryBox // nil without a registry
	// WaitShell: no sandbox yet, the shell image is being made; the page
	// shows the instructions and reloads itself when the image is ready.
	WaitShell bool
	// Wait: no sandbox now (the class is full, or too many new ones from
	// the learner's address, admission.go); the page shows the
	// instructions and tries again by itself.
	Wait *labWait
}

// labPage shows the lab and makes sure the learner's sandbox for it runs,
// so the terminal can attach as soon as the page has loaded. A sandbox
// whose shell has exited or that was reaped is gone from the Manager, so
// a reload starts a fresh one over the same workspace.
func (s *server) labPage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	lab, err := s.opts.Catalog.Get(id)
	if err != nil {
		s.labError(w, r, id, err)
		return
	}
	if !startsSandbox(r) {
		// Another site's script or <img> would otherwise make every
		// visitor's browser start a sandbox here.
		s.errorPage(w, r, http.StatusForbidden, errorData{
			Title:   "Open the lab from its link",
			Message: "Labs start a sandbox, so they open only as a page of their own, not from inside another site.",
		})
		return
	}
	learner, fresh := s.keys.learnerFromRequest(r), false
	if learner == "" {
		learner, fresh = newLearnerID(), true
	}
	sid := s.keys.sandboxID(learner, id)
	// A new identity or sandbox is admitted before anything of it is made
	// (the cookie, the registry account); the token is spent only when
	// the Manager creates the sandbox (admission.go).
	adm := s.admissionFor(r, learner, sid, fresh)
	if retry, ok := adm.allowed(); !ok {
		s.slowDown(w, r, lab, retry)
		return
	}
	if fresh {
		s.keys.issueLearner(w, r, learner)
	}
	user, box := s.learnerAccount(r.Context(), learner, id)
	var env []string
	if user != "" {
		env = []string{"LABD_USER=" + user}
	}
	// The page does not wait for the shell (starting.go): the terminal
	// attaches when the sandbox is up.
	co := sandbox.CreateOptions{
		Env: env, Resources: sandbox.Resources{Memory: lab.Resources.Memory, Pids: lab.Resources.Pids, Disk: lab.Resources.Disk},
		Admit: adm.admit}
	if lab.Starter != "" {
		co.Seed = func(ctx context.Context, sb sandbox.Sandbox) error { return seedWorkspace(ctx, sb, lab) }
	}
	if bi := s.opts.BaseImages; bi != nil && !bi.ShellReady() {
		// Until the shell image is made a new sandbox is refused at once
		// (the page waits for the image) or is the simple shell of
		// trusted learners: both quick, and the refusal is this page's.
		_, err = s.opts.Sandboxes.GetOrCreateWith(r.Context(), sid, learner, co)
	} else {
		err = s.opts.Sandboxes.Start(r.Context(), sid, learner, co)
	}
	if retry, ok := isSlowDown(err); ok {
		s.slowDown(w, r, lab, retry)
		return
	}
	var full *sandbox.FullError
	if errors.As(err, &full) {
		s.classFull(w, r, lab, full)
		return
	}
	if errors.Is(err, sandbox.ErrShellNotReady) {
		w.Header().Set("Cache-Control", "no-store")
		s.render(w, r, http.StatusOK, "lab", labData{Lab: lab, WaitShell: true})
		return
	}
	if err != nil {
		s.log.Error("start sandbox", "lab", id, "sandbox", sid, "err", err)
		s.errorPage(w, r, http.StatusServiceUnavailable, errorData{
			Title:   "Could not start your sandbox",
			Message: "labd could not start a shell for this lab. Reload to try again; the server log has details.",
		})
		return
	}
	s.attachLab(sid, learner, user, lab)
	if box != nil {
		w.Header().Set("Cache-Control", "private, no-store")
	}
	s.render(w, r, http.StatusOK, "lab", labData{Lab: lab, SandboxID: sid, Registry: box})
}

// startsSandbox reports whether r may start a sandbox: a page load (a
// link from anywhere, a typed address, a reload) or labd's own page, by
// the browser's Fetch Metadata; clients that send none (curl, old
// browsers) too. A cross-site fetch(), <img> or <iframe>, including from a
// learner's app in the port preview (an opaque origin), may not.
func startsSandbox(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
		return true
	}
	return r.Header.Get("Sec-Fetch-Mode") == "navigate" && r.Header.Get("Sec-Fetch-Dest") == "document"
}

// labFile serves a file of the lab's folder (images the instructions
// show). Catalog.File resolves the path and refuses escapes.
func (s *server) labFile(w http.ResponseWriter, r *http.Request) {
	id, rel := r.PathValue("id"), r.PathValue("path")
	if !fs.ValidPath(rel) || rel == "." {
		s.notFound(w, r)
		return
	}
	p, err := s.opts.Catalog.File(id, rel)
	if err != nil {
		s.notFound(w, r)
		return
	}
	f, err := os.Open(p)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("open lab file", "lab", id, "path", rel, "err", err)
		}
		s.notFound(w, r)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		s.notFound(w, r)
		return
	}
	// An SVG opened directly would run its scripts with our origin; the
	// sandbox directive turns them off (and <img> never runs them).
	w.Header().Set("Content-Security-Policy", "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; sandbox")
	w.Header().Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, st.Name(), st.ModTime(), f)
}
