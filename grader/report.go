package grader

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
)

// WriteText prints one line per check: step, check, state, message.
func (r LabResult) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tCHECK\tSTATE\tMESSAGE")
	for _, st := range r.Steps {
		for _, c := range st.Checks {
			msg := c.Message
			if c.State != StatePassed && c.Hint != "" {
				msg = strings.TrimSpace(msg + " (hint: " + c.Hint + ")")
			}
			fmt.Fprintf(tw, "%d. %s\t%s\t%s\t%s\n", st.Index, st.Title, c.ID, c.State, strings.Join(strings.Fields(msg), " "))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%s: %d of %d checks passed, score %d of %d\n", r.Lab, r.Passed, r.Total, r.Score, r.MaxScore)
	return err
}

// WriteJSON writes the result as indented JSON.
func (r LabResult) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteJUnit writes one test case per check; failed checks are failures and
// checks that could not be checked are errors.
func (r LabResult) WriteJUnit(w io.Writer) error {
	type failure struct {
		Message string `xml:"message,attr"`
		Text    string `xml:",chardata"`
	}
	type tc struct {
		Name      string    `xml:"name,attr"`
		Classname string    `xml:"classname,attr"`
		Failure   *failure  `xml:"failure,omitempty"`
		Error     *failure  `xml:"error,omitempty"`
		Skipped   *struct{} `xml:"skipped,omitempty"`
	}
	type property struct {
		Name  string `xml:"name,attr"`
		Value string `xml:"value,attr"`
	}
	type suite struct {
		XMLName  xml.Name `xml:"testsuite"`
		Name     string   `xml:"name,attr"`
		Tests    int      `xml:"tests,attr"`
		Failures int      `xml:"failures,attr"`
		Errors   int      `xml:"errors,attr"`
		Skipped  int      `xml:"skipped,attr"`
		// The score has no place in JUnit's schema but properties,
		// which CI systems show beside the suite.
		Properties []property `xml:"properties>property"`
		Cases      []tc       `xml:"testcase"`
	}
	s := suite{Name: r.Lab, Properties: []property{{"score", strconv.Itoa(r.Score)}, {"max_score", strconv.Itoa(r.MaxScore)}}}
	for _, st := range r.Steps {
		for _, c := range st.Checks {
			t := tc{Name: fmt.Sprintf("%d. %s / %s", st.Index, st.Title, c.ID), Classname: "labd.grade." + r.Lab}
			switch c.State {
			case StateFailed:
				t.Failure = &failure{Message: c.Message, Text: c.Hint}
				s.Failures++
			case StateError:
				t.Error = &failure{Message: c.Message}
				s.Errors++
			case StatePending:
				t.Skipped = &struct{}{}
				s.Skipped++
			}
			s.Tests++
			s.Cases = append(s.Cases, t)
		}
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(s); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}
