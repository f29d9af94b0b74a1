package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/docker/go-units"
	"github.com/labd/labd/sandbox"
)

// SandboxesPath is the admin API of a class's sandboxes, on labd serve's
// instructor socket beside GradePath (`labd admin sandboxes`):
//
//	GET    /v1/sandboxes           the running sandboxes, []SandboxInfo
//	GET    /v1/sandboxes/{id}      one, running or stopped with its files kept
//	POST   /v1/sandboxes/{id}/stop destroys it (the learner's page says an
//	                               instructor stopped it); its files stay
//	DELETE /v1/sandboxes/{id}      stops it and removes its files, the
//	                               learner's workspace included: SandboxRemoved
//
// 404 for an id with neither a sandbox nor files, 409 while one is being
// made. Errors are JSON {"error": "..."} (GradeError).
const SandboxesPath = "/v1/sandboxes"

// SandboxInfo is one sandbox as an instructor sees it.
type SandboxInfo struct {
	ID string `json:"id"`
	// Instance is the sandbox's own name when it differs from ID (a warm
	// sandbox given to a learner): its cgroup, shell and engine view are
	// named after it, its files are in DATA/sandboxes/<instance>.
	Instance string `json:"instance,omitempty"`
	Lab      string `json:"lab,omitempty"`     // "" when not known
	Learner  string `json:"learner,omitempty"` // the learner's id
	Handle   string `json:"handle,omitempty"`  // their classroom registry user
	// State is "starting", "running" or "stopped" (not running, its files
	// kept).
	State      string         `json:"state"`
	Created    *time.Time     `json:"created,omitempty"`
	LastActive *time.Time     `json:"last_active,omitempty"`
	Ends       *time.Time     `json:"ends,omitempty"` // unless touched
	EndsFor    string         `json:"ends_for,omitempty"`
	Workspace  string         `json:"workspace"`
	Usage      *sandbox.Usage `json:"usage,omitempty"`
	UsageError string         `json:"usage_error,omitempty"`
}

// SandboxRemoved answers DELETE.
type SandboxRemoved struct {
	ID      string   `json:"id"`
	Stopped bool     `json:"stopped"` // it was running
	Removed []string `json:"removed"` // paths
}

// Sandbox states.
const (
	StateStarting = "starting"
	StateRunning  = "running"
	StateStopped  = "stopped"
)

// SandboxColumns head SandboxInfo.Cells: `labd admin sandboxes ls` and the
// instructor page show the same.
var SandboxColumns = []string{"ID", "LAB", "LEARNER", "STATE", "AGE", "IDLE", "MEM", "CPU", "DISK", "ENDS"}

// Cells are i's columns (SandboxColumns) for people, at now.
func (i SandboxInfo) Cells(now time.Time) []string {
	dash := "-"
	orDash := func(s string) string {
		if s == "" {
			return dash
		}
		return s
	}
	since := func(t *time.Time) string {
		if t == nil {
			return dash
		}
		return shortDuration(now.Sub(*t))
	}
	learner := i.Handle
	if learner == "" && i.Learner != "" {
		learner = i.Learner[:min(len(i.Learner), 12)]
	}
	mem, cpu, disk := dash, dash, dash
	if u := i.Usage; u != nil {
		if u.Cgroup {
			mem = bytesOf(u.Memory, u.MemoryLimit)
			cpu = fmt.Sprintf("%.1fs", u.CPUSeconds)
		}
		disk = bytesOf(u.Disk, u.DiskQuota)
		if u.DiskPartial {
			disk = ">" + disk
		}
	}
	ends := dash
	if i.Ends != nil {
		d := i.Ends.Sub(now)
		if d < 0 {
			d = 0
		}
		ends = "in " + shortDuration(d)
		if i.EndsFor != "" {
			ends += " (" + i.EndsFor + ")"
		}
	}
	return []string{i.ID, orDash(i.Lab), orDash(learner), i.State, since(i.Created), since(i.LastActive), mem, cpu, disk, ends}
}

// bytesOf is "used/limit" (or "used" without a limit), in binary units.
func bytesOf(used, limit int64) string {
	s := units.BytesSize(float64(used))
	if limit > 0 {
		s += "/" + units.BytesSize(float64(limit))
	}
	return s
}

// shortDuration is d in its two largest units: "45s", "12m05s", "3h20m",
// "2d04h".
func shortDuration(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
}

// usageTimeout bounds one sandbox's usage: a walk of a large workspace
// stops there (DiskPartial).
const usageTimeout = 5 * time.Second

// usageParallel is how many sandboxes' usage is read at once.
const usageParallel = 4

// sandboxAdmin describes and acts on sandboxes for the admin API and the
// instructor page.
type sandboxAdmin struct {
	opts Options
	keys keys
}

// list describes every sandbox the Manager has.
func (a sandboxAdmin) list(ctx context.Context) []SandboxInfo {
	infos := a.opts.Sandboxes.List()
	out := make([]SandboxInfo, len(infos))
	sem := make(chan struct{}, usageParallel)
	var wg sync.WaitGroup
	for i, in := range infos {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			out[i] = a.describe(ctx, in)
		}()
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Lab != out[j].Lab {
			return out[i].Lab < out[j].Lab
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// get describes sandbox id, running or stopped with its files kept.
func (a sandboxAdmin) get(ctx context.Context, id string) (SandboxInfo, bool) {
	if !sandbox.ValidID(id) {
		return SandboxInfo{}, false
	}
	if in, ok := a.opts.Sandboxes.Info(id); ok {
		return a.describe(ctx, in), true
	}
	ws := a.opts.Sandboxes.WorkspaceDir(id)
	if fi, err := os.Stat(ws); err != nil || !fi.IsDir() {
		return SandboxInfo{}, false
	}
	si := SandboxInfo{ID: id, State: StateStopped, Workspace: ws}
	si.Learner, si.Lab = a.whose(ctx, id, "")
	a.naming(ctx, &si)
	uctx, cancel := context.WithTimeout(ctx, usageTimeout)
	defer cancel()
	n, partial, err := sandbox.DirSize(uctx, ws, usageWalkMax)
	if err != nil {
		si.UsageError = err.Error()
	} else {
		si.Usage = &sandbox.Usage{Disk: n, DiskWalked: true, DiskPartial: partial}
	}
	return si, true
}

// usageWalkMax bounds the walk of a workspace without a disk of its own.
const usageWalkMax = 200_000

func (a sandboxAdmin) describe(ctx context.Context, in sandbox.Info) SandboxInfo {
	si := SandboxInfo{ID: in.ID, Learner: in.Owner, State: StateStarting,
		Workspace: a.opts.Sandboxes.WorkspaceDir(in.ID)}
	created, last := in.Created, in.LastActive
	si.Created, si.LastActive = &created, &last
	if !in.Ends.IsZero() {
		ends := in.Ends
		si.Ends, si.EndsFor = &ends, in.EndsFor.String()
	}
	_, si.Lab = a.whose(ctx, in.ID, in.Owner)
	a.naming(ctx, &si)
	if !in.Ready || in.Sandbox == nil {
		return si
	}
	si.State = StateRunning
	si.Workspace = in.Sandbox.Workspace()
	uctx, cancel := context.WithTimeout(ctx, usageTimeout)
	defer cancel()
	if ur, ok := in.Sandbox.(sandbox.UsageReporter); ok {
		u, err := ur.Usage(uctx)
		if err != nil {
			si.UsageError = err.Error()
			return si
		}
		si.Usage = &u
		return si
	}
	// A sandbox that cannot tell (nsbox): its workspace's size at least.
	n, partial, err := sandbox.DirSize(uctx, si.Workspace, usageWalkMax)
	if err != nil {
		si.UsageError = err.Error()
		return si
	}
	si.Usage = &sandbox.Usage{Disk: n, DiskWalked: true, DiskPartial: partial}
	return si
}

// naming fills in the instance and the learner's registry handle.
func (a sandboxAdmin) naming(ctx context.Context, si *SandboxInfo) {
	if inst := a.opts.Sandboxes.Instance(si.ID); inst != si.ID {
		si.Instance = inst
	}
	if si.Learner == "" || !validLearnerID(si.Learner) {
		return
	}
	if a.opts.Accounts == nil {
		return
	}
	// The name the lab page gives the learner (a lookup error: the
	// likelier one).
	si.Handle, _ = handleOf(ctx, a.keys, a.opts.Accounts, si.Learner)
}

// whose finds the learner (when owner is "") and the lab that sandbox id
// was made for: ids are keyed hashes of both (session.go), so the labs of
// the catalogue, then the progress store's records, are tried.
func (a sandboxAdmin) whose(ctx context.Context, id, owner string) (learner, lab string) {
	if owner != "" {
		for _, e := range a.opts.Catalog.List() {
			if a.keys.sandboxID(owner, e.ID) == id {
				return owner, e.ID
			}
		}
	}
	if a.opts.Grader == nil || a.opts.Grader.Store() == nil {
		return owner, ""
	}
	all, err := a.opts.Grader.Store().All(ctx)
	if err != nil {
		return owner, ""
	}
	for _, p := range all {
		if (owner == "" || p.Learner == owner) && a.keys.sandboxID(p.Learner, p.Lab) == id {
			return p.Learner, p.Lab
		}
	}
	return owner, ""
}

// errStopNotRunning is stop's answer for a sandbox that does not run.
var errStopNotRunning = errors.New("not running")

// stop destroys sandbox id (ReasonAdmin: the learner's page says an
// instructor stopped it).
func (a sandboxAdmin) stop(ctx context.Context, id string) (SandboxInfo, error) {
	in, ok := a.opts.Sandboxes.Info(id)
	if !ok {
		return SandboxInfo{}, fmt.Errorf("sandbox %s: %w", id, errStopNotRunning)
	}
	if !in.Ready {
		return SandboxInfo{}, fmt.Errorf("sandbox %s is being made, try again in a moment: %w", id, sandbox.ErrBusy)
	}
	if err := a.opts.Sandboxes.Destroy(ctx, id, sandbox.ReasonAdmin); err != nil {
		return SandboxInfo{}, err
	}
	a.opts.Logger.Info("sandbox stopped by the instructor", "sandbox", id)
	si, ok := a.get(ctx, id)
	if !ok {
		si = SandboxInfo{ID: id, State: StateStopped}
	}
	return si, nil
}

// remove stops sandbox id and removes its files.
func (a sandboxAdmin) remove(ctx context.Context, id string) (SandboxRemoved, error) {
	rm, err := a.opts.Sandboxes.Remove(ctx, id)
	out := SandboxRemoved{ID: id, Stopped: rm.Stopped, Removed: rm.Paths}
	if out.Removed == nil {
		out.Removed = []string{}
	}
	if err == nil {
		a.opts.Logger.Info("sandbox removed by the instructor", "sandbox", id, "stopped", rm.Stopped, "removed", strings.Join(rm.Paths, " "))
	}
	return out, err
}

// registerAdminAPI adds the admin API's routes to the instructor socket's
// mux.
func registerAdminAPI(mux *http.ServeMux, a sandboxAdmin) {
	mux.HandleFunc("GET "+SandboxesPath, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, a.list(r.Context()))
	})
	mux.HandleFunc("GET "+SandboxesPath+"/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		si, ok := a.get(r.Context(), id)
		if !ok {
			gradeError(w, http.StatusNotFound, fmt.Sprintf("no sandbox %s: none runs and it has no files (labd admin sandboxes ls lists those running)", id))
			return
		}
		writeJSON(w, si)
	})
	mux.HandleFunc("POST "+SandboxesPath+"/{id}/stop", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		si, err := a.stop(r.Context(), id)
		if err != nil {
			adminError(w, id, "stop", err)
			return
		}
		writeJSON(w, si)
	})
	mux.HandleFunc("DELETE "+SandboxesPath+"/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		out, err := a.remove(r.Context(), id)
		if err != nil {
			adminError(w, id, "remove", err)
			return
		}
		writeJSON(w, out)
	})
}

// adminError answers a failed stop or remove with its status.
func adminError(w http.ResponseWriter, id, what string, err error) {
	switch {
	case errors.Is(err, errStopNotRunning):
		gradeError(w, http.StatusNotFound, fmt.Sprintf("sandbox %s is not running (labd admin sandboxes ls lists those running)", id))
	case errors.Is(err, sandbox.ErrNotFound), errors.Is(err, sandbox.ErrInvalidID):
		gradeError(w, http.StatusNotFound, fmt.Sprintf("no sandbox %s: none runs and it has no files", id))
	case errors.Is(err, sandbox.ErrBusy):
		gradeError(w, http.StatusConflict, err.Error())
	default:
		gradeError(w, http.StatusInternalServerError, fmt.Sprintf("%s sandbox %s: %v", what, id, err))
	}
}
