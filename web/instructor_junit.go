package web

import (
	"encoding/xml"
	"io"
	"net/http"
	"sort"
	"strconv"
)

// instructorJUnit writes the class's progress as JUnit XML, for systems
// that read test reports: a test suite per learner and lab, a test case
// per check (a failure until it passed), the score as suite properties.
func (s *server) instructorJUnit(w http.ResponseWriter, r *http.Request) {
	if !s.instructorAuth(w, r) {
		return
	}
	rows, _, err := s.instructorRows(r)
	if err != nil {
		http.Error(w, "could not read progress", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/xml; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="labd-progress.xml"`)
	w.Header().Set("Cache-Control", "no-store")
	if err := writeProgressJUnit(w, rows); err != nil {
		s.log.Warn("instructor JUnit export", "err", err)
	}
}

func writeProgressJUnit(w io.Writer, rows []InstructorRow) error {
	type failure struct {
		Message string `xml:"message,attr"`
	}
	type testcase struct {
		Name      string   `xml:"name,attr"`
		Classname string   `xml:"classname,attr"`
		Failure   *failure `xml:"failure,omitempty"`
	}
	type property struct {
		Name  string `xml:"name,attr"`
		Value string `xml:"value,attr"`
	}
	type suite struct {
		Name       string     `xml:"name,attr"`
		Tests      int        `xml:"tests,attr"`
		Failures   int        `xml:"failures,attr"`
		Properties []property `xml:"properties>property"`
		Cases      []testcase `xml:"testcase"`
	}
	type suites struct {
		XMLName xml.Name `xml:"testsuites"`
		Suites  []suite  `xml:"testsuite"`
	}
	var out suites
	for _, row := range rows {
		su := suite{Name: row.Lab + "/" + row.Learner, Properties: []property{
			{"learner", row.Learner}, {"lab", row.Lab},
			{"score", strconv.Itoa(row.Score)}, {"max_score", strconv.Itoa(row.MaxScore)},
		}}
		for _, st := range row.Steps {
			ids := st.CheckIDs
			sort.Strings(ids)
			for _, id := range ids {
				tc := testcase{Name: strconv.Itoa(st.Step) + ". " + st.Title + " / " + id, Classname: "labd.progress." + row.Lab}
				if _, ok := st.Checks[id]; !ok {
					tc.Failure = &failure{Message: "not passed yet"}
					su.Failures++
				}
				su.Tests++
				su.Cases = append(su.Cases, tc)
			}
		}
		out.Suites = append(out.Suites, su)
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(out); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}
