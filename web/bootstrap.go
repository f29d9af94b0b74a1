package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/distribution/reference"

	"github.com/labd/labd/labs"
)

// BaseImages tells the pages about the base images labd prepares in the
// background on first start (cmd/labd's bootstrap): every page shows a
// banner while it runs or when it failed, a lab page says which of the
// lab's images (labs.Lab.Images) are not there yet, and whether the
// learner's terminal is the simple shell because it was opened before the
// sandbox image was ready.
type BaseImages interface {
	BootstrapStatus() BootstrapStatus
	// HasImage reports whether ref is among the base images now.
	HasImage(ref string) bool
	// SimpleShell reports whether sandbox sid runs the fallback shell
	// because the sandbox image was not ready when it started.
	SimpleShell(sid string) bool
	// ShellReady reports whether the learners' shell image is there.
	ShellReady() bool
}

// BootstrapStatus is a snapshot of the background bootstrap.
type BootstrapStatus struct {
	// Images are the images the bootstrap was asked for, in order.
	Images []BootstrapImage `json:"images"`
	// SimpleShells counts live sandboxes that got the fallback shell.
	SimpleShells int `json:"simple_shells"`
}

// BootstrapImage is one image of the bootstrap.
type BootstrapImage struct {
	Name  string   `json:"name"` // busybox, python, sandbox
	Tags  []string `json:"tags"` // python:3.11-slim, python:3
	State string   `json:"state"`
	Phase string   `json:"phase,omitempty"` // what it is doing now (Building)
	Error string   `json:"error,omitempty"` // why it failed (Failed)
	// Shell marks the learner's shell image: terminals opened before it
	// is ready are the simple shell.
	Shell bool `json:"shell,omitempty"`
}

// BootstrapImage states.
const (
	ImagePresent   = "present"   // there before the bootstrap started: nothing to do
	ImageWaiting   = "waiting"   // to be made after the ones before it
	ImageBuilding  = "building"  // being made
	ImageReady     = "ready"     // made by this bootstrap
	ImageFailed    = "failed"    // could not be made (Error says why)
	ImageCancelled = "cancelled" // the server stopped first
)

func (i BootstrapImage) pending() bool { return i.State == ImageWaiting || i.State == ImageBuilding }

// banner is what the layout shows above every page, and what
// /bootstrap/status returns for bootstrap.js to update it.
type banner struct {
	// State is "preparing", "failed" or "done" (nothing left to prepare).
	State string `json:"state"`
	// Message is the one line the banner leads with ("" when done).
	Message string `json:"message,omitempty"`
	// Phase is what the image being made is doing.
	Phase string `json:"phase,omitempty"`
	// Errors explain failed images (for the operator; long).
	Errors []string `json:"errors,omitempty"`
	// Notes are for this page: the lab's missing images, the simple shell.
	Notes []string `json:"notes,omitempty"`
	// Poll says the state may still change: keep asking.
	Poll bool `json:"poll"`
	// ShellReady, on a page waiting for its terminal, says the shell
	// image is there now: the page reloads to start the terminal.
	ShellReady bool `json:"shell_ready,omitempty"`
	// URL is the status endpoint for this page.
	URL string `json:"-"`
}

// empty reports a banner with nothing to say.
func (b *banner) empty() bool {
	return b.Message == "" && len(b.Notes) == 0 && len(b.Errors) == 0
}

// bannerFor builds the banner of a page about lab (nil: not a lab page)
// and sandbox sid. It returns nil when there is nothing to show.
func (s *server) bannerFor(lab *labs.Lab, sid string, waitShell bool) *banner {
	bi := s.opts.BaseImages
	if bi == nil {
		return nil
	}
	st := bi.BootstrapStatus()
	b := &banner{State: "done", URL: "/bootstrap/status"}
	if lab != nil {
		q := url.Values{"lab": {lab.ID}}
		if sid != "" {
			q.Set("sandbox", sid)
		}
		if waitShell {
			q.Set("wait", "shell")
		}
		b.URL += "?" + q.Encode()
	}

	// The images being made, counted among those that needed making.
	var todo []BootstrapImage
	var shell *BootstrapImage
	for i, img := range st.Images {
		if img.State != ImagePresent {
			todo = append(todo, img)
		}
		if img.Shell {
			shell = &st.Images[i]
		}
	}
	var failed []string
	for i, img := range todo {
		switch {
		case img.pending() && b.Message == "":
			b.State, b.Poll = "preparing", true
			b.Message = fmt.Sprintf("Preparing base images: %s (%d/%d)…", img.Name, i+1, len(todo))
			if img.State == ImageBuilding {
				b.Phase = img.Phase
			} else {
				b.Phase = "waiting"
			}
		case img.State == ImageFailed:
			failed = append(failed, img.Name)
			b.Errors = append(b.Errors, img.Name+": "+img.Error)
		}
	}
	if len(failed) > 0 {
		msg := fmt.Sprintf("Base image %s could not be prepared; labs that need it will not work until an operator imports it (labd images import). The server log says why.", strings.Join(failed, ", "))
		if b.Message == "" {
			b.State, b.Message = "failed", msg
		} else {
			b.Notes = append(b.Notes, msg)
		}
	}
	if shell != nil {
		switch {
		case sid != "" && bi.SimpleShell(sid) && shell.State == ImageReady:
			b.Notes = append(b.Notes, "The full terminal is ready, but yours was opened before, so it is the simple shell: "+
				"type exit, then Start a new shell, to get the full one. Your files stay.")
		case sid != "" && bi.SimpleShell(sid) && shell.pending():
			b.Notes = append(b.Notes, "Your terminal is the simple shell for now: the sandbox image is still being prepared. "+
				"Once it is ready, type exit and start a new shell to get the full one. Your files stay.")
		case lab == nil && shell.State == ImageReady && st.SimpleShells > 0:
			b.Notes = append(b.Notes, "The sandbox image is ready: terminals opened before now run the simple shell; new ones get the full one.")
		}
	}
	if lab != nil {
		b.Notes = append(b.Notes, s.labImageNotes(lab, st, bi)...)
	}
	if waitShell {
		// The page waits for its terminal: keep polling until the shell
		// image is there, whoever makes it (this bootstrap or an import).
		b.ShellReady = bi.ShellReady()
		b.Poll = b.Poll || !b.ShellReady
		switch {
		case b.ShellReady:
		case shell != nil && shell.pending():
			b.Notes = append(b.Notes, "Your terminal starts as soon as the sandbox image is ready.")
		case shell != nil && shell.State == ImageFailed:
			b.Notes = append(b.Notes, "Your terminal cannot start: the sandbox image could not be prepared. An operator can import it (labd images import) or retry; this page starts the terminal once it is there.")
		default:
			b.Notes = append(b.Notes, "Your terminal cannot start yet: this server has no sandbox image and is not making one. An operator makes it with labd images bootstrap sandbox; this page starts the terminal once it is there.")
		}
		return b
	}
	if b.empty() {
		return nil
	}
	return b
}

// labImageNotes says which of the lab's images are not there yet, and why.
func (s *server) labImageNotes(lab *labs.Lab, st BootstrapStatus, bi BaseImages) []string {
	var notes []string
	for _, ref := range lab.Images {
		if bi.HasImage(ref) {
			continue
		}
		img, ok := bootstrapImageFor(st, ref)
		switch {
		case ok && img.pending():
			phase := "waiting for the images before it"
			if img.State == ImageBuilding && img.Phase != "" {
				phase = img.Phase
			}
			notes = append(notes, fmt.Sprintf("This lab needs the image %s, which is still being prepared (%s). "+
				"You can read ahead and use the terminal already; the commands that need %s work once it is ready.", ref, phase, ref))
		case ok && img.State == ImageFailed:
			notes = append(notes, fmt.Sprintf("This lab needs the image %s, which could not be prepared: "+
				"the steps that use it fail until an operator imports it (labd images import).", ref))
		case ok && img.State == ImageCancelled:
			notes = append(notes, fmt.Sprintf("This lab needs the image %s, which was still being prepared when the server stopped: it continues on the next start.", ref))
		case !ok:
			notes = append(notes, fmt.Sprintf("This lab needs the image %s, which this server does not have: "+
				"the steps that use it fail until an operator imports it (labd images import).", ref))
		}
	}
	return notes
}

// bootstrapImageFor finds the bootstrap image that makes ref.
func bootstrapImageFor(st BootstrapStatus, ref string) (BootstrapImage, bool) {
	want := normalRef(ref)
	for _, img := range st.Images {
		for _, t := range img.Tags {
			if normalRef(t) == want {
				return img, true
			}
		}
	}
	return BootstrapImage{}, false
}

// normalRef is ref in full (docker.io/library/python:3.11-slim).
func normalRef(ref string) string {
	n, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return ref
	}
	return reference.TagNameOnly(n).String()
}

// bannerOf is the layout's template function: the banner for the page
// being rendered (lab pages name their lab and sandbox).
func (s *server) bannerOf(page any) *banner {
	switch d := page.(type) {
	case labData:
		return s.bannerFor(d.Lab, d.SandboxID, d.WaitShell)
	case *labData:
		return s.bannerFor(d.Lab, d.SandboxID, d.WaitShell)
	}
	return s.bannerFor(nil, "", false)
}

// bootstrapStatus serves GET /bootstrap/status[?lab=ID&sandbox=SID]: the
// banner as JSON, {"state":"done","poll":false} when there is nothing to
// show. The sandbox counts only for its owner (routeBanner); for anyone
// else it is left out, not refused.
func (s *server) bootstrapStatus(w http.ResponseWriter, r *http.Request) {
	var lab *labs.Lab
	if id := r.URL.Query().Get("lab"); id != "" {
		lab, _ = s.opts.Catalog.Get(id)
	}
	sid := r.URL.Query().Get("sandbox")
	if sid != "" && !s.allows(r, routeBanner, sid) {
		sid = ""
	}
	b := s.bannerFor(lab, sid, r.URL.Query().Get("wait") == "shell")
	if b == nil {
		b = &banner{State: "done"}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(b)
}
