package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/labd/labd/grader"
	"github.com/labd/labd/labs"
	"github.com/labd/labd/sandbox"
)

// GradePath is the grading endpoint `labd grade` calls on labd serve's
// instructor socket (DATA/grade.sock, cmd/labd/gradeserver.go):
//
//	GET /v1/grade?sandbox=ID&lab=LAB
//
// 200 with a GradeReport; 400 bad parameters; 404 unknown lab (422 broken);
// 409 when the sandbox is not running in this server (never opened, or
// destroyed when idle): the caller then grades what it can alone.
// Errors are JSON {"error": "..."}.
const GradePath = "/v1/grade"

// GradeReport is the endpoint's answer.
type GradeReport struct {
	Result grader.LabResult `json:"result"`
	// Learner owns the sandbox; Sticky lists the checks reported passed
	// because they passed before (progress store) though they fail now.
	Learner string   `json:"learner"`
	Sticky  []string `json:"sticky,omitempty"`
}

// GradeError is the body of a refused grading request.
type GradeError struct {
	Error string `json:"error"`
}

// NewGradeAPI returns the grading endpoint's handler over the same
// sandboxes, labs and progress store as the web UI (opts as for New). It
// runs the full grade in-process, script and http checks included, inside
// the live sandbox. It does no authentication: serve it only where the
// instructor alone can connect (the 0600 unix socket).
func NewGradeAPI(opts Options) http.Handler {
	if opts.Catalog == nil || opts.Sandboxes == nil || len(opts.Secret) == 0 {
		panic("web.NewGradeAPI: Catalog, Sandboxes and Secret are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	g := &gradeAPI{opts: opts, keys: deriveKeys(opts.Secret)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+GradePath, g.grade)
	// labd admin sandboxes (adminapi.go).
	registerAdminAPI(mux, sandboxAdmin{opts: opts, keys: g.keys})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		gradeError(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path+" (labd grade uses GET "+GradePath+", labd admin sandboxes "+SandboxesPath+")")
	})
	return mux
}

type gradeAPI struct {
	opts Options
	keys keys
}

func gradeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(GradeError{Error: msg})
}

func (g *gradeAPI) grade(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	sid, labID := q.Get("sandbox"), q.Get("lab")
	if !sandbox.ValidID(sid) || labID == "" {
		gradeError(w, http.StatusBadRequest, "want ?sandbox=<valid sandbox ID>&lab=<lab ID>")
		return
	}
	lab, err := g.opts.Catalog.Get(labID)
	if err != nil {
		var be *labs.BrokenError
		switch {
		case errors.As(err, &be):
			gradeError(w, http.StatusUnprocessableEntity, fmt.Sprintf("lab %s is broken: %v", labID, err))
		case errors.Is(err, labs.ErrNotFound):
			gradeError(w, http.StatusNotFound, fmt.Sprintf("no lab %s in labd serve's content directory", labID))
		default:
			gradeError(w, http.StatusInternalServerError, fmt.Sprintf("lab %s: %v", labID, err))
		}
		return
	}
	sb, owner, ok := g.opts.Sandboxes.Get(sid)
	if !ok {
		gradeError(w, http.StatusConflict, fmt.Sprintf("sandbox %s is not running in labd serve (never opened, or destroyed when idle): opening the lab starts it again", sid))
		return
	}
	if g.keys.sandboxID(owner, lab.ID) != sid {
		gradeError(w, http.StatusBadRequest, fmt.Sprintf("sandbox %s was not started for lab %s", sid, lab.ID))
		return
	}
	env := &grader.Env{Workspace: sb.Workspace(), Sandbox: sb}
	if g.opts.Accounts != nil {
		// The name the lab page gave the learner; a lookup error leaves
		// push checks to name whichever is likelier.
		env.User, err = handleOf(r.Context(), g.keys, g.opts.Accounts, owner)
		if err != nil {
			g.opts.Logger.Warn("registry account of the graded learner", "sandbox", sid, "err", err)
		}
	}
	if es, ok := sb.(engineSocketer); ok {
		c, err := grader.NewClient(es.GraderSocket())
		if err != nil {
			gradeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		defer c.Close()
		env.Docker = c
	}
	if g.opts.Grader != nil && g.opts.Grader.Store() != nil {
		answers, err := g.opts.Grader.Store().Answers(r.Context(), owner, lab.ID)
		if err != nil {
			gradeError(w, http.StatusInternalServerError, "read answers: "+err.Error())
			return
		}
		env.Answers = func(id string) ([]string, bool) { a, ok := answers[id]; return a, ok }
	}
	g.opts.Sandboxes.Touch(sid)
	rep := GradeReport{Result: grader.Grade(r.Context(), env, lab), Learner: owner}
	if g.opts.Grader != nil && g.opts.Grader.Store() != nil {
		passed, err := g.opts.Grader.Store().Passed(r.Context(), owner, lab.ID)
		if err != nil {
			gradeError(w, http.StatusInternalServerError, "read progress: "+err.Error())
			return
		}
		rep.Sticky = grader.ApplyPassed(&rep.Result, lab, passed)
	}
	g.opts.Logger.Info("graded for labd grade", "sandbox", sid, "lab", lab.ID, "passed", rep.Result.Passed, "total", rep.Result.Total,
		"sticky", strings.Join(rep.Sticky, ","))
	writeJSON(w, rep)
}
