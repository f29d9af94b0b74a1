package web

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labd/labd/labs"
	"github.com/labd/labd/sandbox"
)

const instructorCookie = "labd_instructor"

// instructorKey is what the instructor cookie holds: a MAC of the token,
// so the cookie is useless once the token changes.
func (s *server) instructorKey() string {
	m := hmac.New(sha256.New, s.opts.Secret)
	m.Write([]byte("instructor\x00" + s.opts.InstructorToken))
	return hex.EncodeToString(m.Sum(nil))
}

// instructorAuth accepts the token as a Bearer header (scripts) or as
// ?token= once (it then sets a cookie and redirects, so the token leaves
// the address bar), or the cookie.
func (s *server) instructorAuth(w http.ResponseWriter, r *http.Request) bool {
	tok := s.opts.InstructorToken
	if tok == "" || s.opts.Grader == nil || s.opts.Grader.Store() == nil {
		s.notFound(w, r)
		return false
	}
	if ok, _ := s.isInstructor(r); ok {
		return true
	}
	if q := r.URL.Query().Get("token"); q != "" {
		if subtle.ConstantTimeCompare([]byte(q), []byte(tok)) != 1 {
			http.Error(w, "wrong instructor token", http.StatusForbidden)
			return false
		}
		setCookie(w, r, &http.Cookie{Name: instructorCookie, Value: s.instructorKey(), Path: "/",
			HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: 12 * 3600})
		http.Redirect(w, r, r.URL.Path, http.StatusSeeOther)
		return false
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="labd instructor"`)
	http.Error(w, "instructor token required: open /instructor?token=... (the token is in the server log or --instructor-token)", http.StatusUnauthorized)
	return false
}

// InstructorRow is one learner in one lab.
type InstructorRow struct {
	Learner string `json:"learner"`
	Lab     string `json:"lab"`
	// Sandbox is the learner's running sandbox for the lab, if any: the
	// instructor may open its ports and files.
	Sandbox   string     `json:"sandbox,omitempty"`
	StartedAt *time.Time `json:"started_at,omitempty"`
	Passed    int        `json:"passed"`
	Total     int        `json:"total"`
	// Score is the points of the passed checks (a check's "points:",
	// default 1), of MaxScore.
	Score    int          `json:"score"`
	MaxScore int          `json:"max_score"`
	Steps    []StepPassed `json:"steps"`
}

// StepPassed is one step of a row: PassedAt is when its last check passed.
type StepPassed struct {
	Step     int                  `json:"step"`
	Title    string               `json:"title"`
	PassedAt *time.Time           `json:"passed_at,omitempty"`
	Checks   map[string]time.Time `json:"checks"`
	Done     int                  `json:"done"`
	Total    int                  `json:"total"`
	Score    int                  `json:"score"`
	MaxScore int                  `json:"max_score"`
	// CheckIDs are the step's checks, passed or not.
	CheckIDs []string `json:"check_ids"`
}

// instructorLab is one lab's table.
type instructorLab struct {
	Lab  *labs.Lab
	Rows []InstructorRow
}

func (s *server) instructorRows(r *http.Request) ([]InstructorRow, []instructorLab, error) {
	all, err := s.opts.Grader.Store().All(r.Context())
	if err != nil {
		return nil, nil, err
	}
	var rows []InstructorRow
	byLab := map[string]*instructorLab{}
	var order []string
	for _, p := range all {
		lab, err := s.opts.Catalog.Get(p.Lab)
		if err != nil {
			continue // removed or broken lab
		}
		row := InstructorRow{Learner: p.Learner, Lab: p.Lab}
		if sid := s.keys.sandboxID(p.Learner, p.Lab); sid != "" {
			if _, _, running := s.opts.Sandboxes.Get(sid); running {
				row.Sandbox = sid
			}
		}
		if !p.StartedAt.IsZero() {
			t := p.StartedAt
			row.StartedAt = &t
		}
		for _, st := range lab.Steps {
			sp := StepPassed{Step: st.Index, Title: st.Title, Checks: map[string]time.Time{}, Total: len(st.Checks)}
			var last time.Time
			for _, c := range st.Checks {
				sp.CheckIDs = append(sp.CheckIDs, c.ID)
				sp.MaxScore += c.Points
				if t, ok := p.Passed[c.ID]; ok {
					sp.Checks[c.ID] = t
					sp.Done++
					sp.Score += c.Points
					if t.After(last) {
						last = t
					}
				}
			}
			if sp.Total > 0 && sp.Done == sp.Total {
				sp.PassedAt = &last
			}
			row.Passed += sp.Done
			row.Total += sp.Total
			row.Score += sp.Score
			row.MaxScore += sp.MaxScore
			row.Steps = append(row.Steps, sp)
		}
		rows = append(rows, row)
		il, ok := byLab[p.Lab]
		if !ok {
			il = &instructorLab{Lab: lab}
			byLab[p.Lab] = il
			order = append(order, p.Lab)
		}
		il.Rows = append(il.Rows, row)
	}
	var tables []instructorLab
	for _, id := range order {
		tables = append(tables, *byLab[id])
	}
	return rows, tables, nil
}

func (s *server) instructor(w http.ResponseWriter, r *http.Request) {
	if !s.instructorAuth(w, r) {
		return
	}
	_, tables, err := s.instructorRows(r)
	if err != nil {
		s.log.Error("instructor view", "err", err)
		http.Error(w, "could not read progress", http.StatusInternalServerError)
		return
	}
	s.render(w, r, http.StatusOK, "instructor", instructorPage{Labs: tables, Sandboxes: s.sandboxRows(r), Columns: SandboxColumns})
}

// instructorPage is the instructor view's data.
type instructorPage struct {
	Labs      []instructorLab
	Sandboxes []sandboxRow
	Columns   []string
}

// sandboxRow is one running sandbox on the instructor page: the same
// columns as `labd admin sandboxes ls`.
type sandboxRow struct {
	SandboxInfo
	Cells []string
}

func (s *server) sandboxRows(r *http.Request) []sandboxRow {
	now := time.Now()
	var rows []sandboxRow
	for _, si := range (sandboxAdmin{opts: s.opts, keys: s.keys}).list(r.Context()) {
		rows = append(rows, sandboxRow{si, si.Cells(now)})
	}
	return rows
}

// instructorSandbox is the instructor page's Stop and Remove buttons
// (POST /instructor/sandboxes/{sid}/stop|remove): forms whose Origin must
// be labd's own when the instructor's cookie carries them (routeAdmin).
// Remove deletes the learner's work: its form asks for a ticked box.
func (s *server) instructorSandbox(w http.ResponseWriter, r *http.Request) {
	sid, action := r.PathValue("sid"), r.PathValue("action")
	if _, ok := s.access(w, r, routeAdmin, sid, 0); !ok {
		return
	}
	a := sandboxAdmin{opts: s.opts, keys: s.keys}
	var err error
	switch action {
	case "stop":
		_, err = a.stop(r.Context(), sid)
	case "remove":
		if r.PostFormValue("confirm") != "yes" {
			s.errorPage(w, r, http.StatusBadRequest, errorData{Title: "Not removed",
				Message: "Removing a sandbox deletes its learner's files: tick the box beside Remove to confirm."})
			return
		}
		_, err = a.remove(r.Context(), sid)
	default:
		s.notFound(w, r)
		return
	}
	if err != nil {
		status, msg := http.StatusInternalServerError, "labd could not "+action+" sandbox "+sid+": "+err.Error()
		switch {
		case errors.Is(err, errStopNotRunning), errors.Is(err, sandbox.ErrNotFound), errors.Is(err, sandbox.ErrInvalidID):
			status, msg = http.StatusNotFound, "Sandbox "+sid+" is not running and has no files."
		case errors.Is(err, sandbox.ErrBusy):
			status = http.StatusConflict
		default:
			s.log.Error("instructor: "+action+" sandbox", "sandbox", sid, "err", err)
		}
		s.errorPage(w, r, status, errorData{Title: "Could not " + action + " the sandbox", Message: msg})
		return
	}
	http.Redirect(w, r, "/instructor#sandboxes", http.StatusSeeOther)
}

func (s *server) instructorJSON(w http.ResponseWriter, r *http.Request) {
	if !s.instructorAuth(w, r) {
		return
	}
	rows, _, err := s.instructorRows(r)
	if err != nil {
		http.Error(w, "could not read progress", http.StatusInternalServerError)
		return
	}
	if rows == nil {
		rows = []InstructorRow{}
	}
	writeJSON(w, rows)
}

// instructorCSV writes one line per learner, lab and step.
func (s *server) instructorCSV(w http.ResponseWriter, r *http.Request) {
	if !s.instructorAuth(w, r) {
		return
	}
	rows, _, err := s.instructorRows(r)
	if err != nil {
		http.Error(w, "could not read progress", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="labd-progress.csv"`)
	w.Header().Set("Cache-Control", "no-store")
	cw := csv.NewWriter(w)
	cw.Write([]string{"learner", "lab", "step", "title", "checks_passed", "checks_total", "score", "max_score", "passed_at"})
	for _, row := range rows {
		for _, st := range row.Steps {
			at := ""
			if st.PassedAt != nil {
				at = st.PassedAt.UTC().Format(time.RFC3339)
			}
			cw.Write([]string{row.Learner, row.Lab, strconv.Itoa(st.Step), st.Title, strconv.Itoa(st.Done), strconv.Itoa(st.Total), strconv.Itoa(st.Score), strconv.Itoa(st.MaxScore), at})
		}
	}
	cw.Flush()
}

// isInstructor reports whether r carries the instructor token (bearer) or
// the instructor cookie.
func (s *server) isInstructor(r *http.Request) (ok, bearer bool) {
	tok := s.opts.InstructorToken
	if tok == "" {
		return false, false
	}
	eq := func(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }
	if b, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); found && eq(b, tok) {
		return true, true
	}
	if c, err := r.Cookie(instructorCookie); err == nil && eq(c.Value, s.instructorKey()) {
		return true, false
	}
	return false, false
}
