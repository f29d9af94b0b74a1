package labs

import (
	"html/template"
	"net/url"
	"strconv"
	"strings"

	"github.com/labd/labd/labs/check"
)

// MaxAnswer bounds a free answer (the form's maxlength; the server
// refuses longer ones).
const MaxAnswer = 500

// questionHTML is a question's form: its prompt and choices (radio
// buttons, or checkboxes when several are correct) or a text field. What
// is correct is never in the page.
func questionHTML(labID string, c Check) string {
	q := c.Spec.(*check.Question)
	esc := template.HTMLEscapeString
	var b strings.Builder
	b.WriteString(`<form class="question" method="post" action="/labs/` + esc(url.PathEscape(labID)) + `/questions/` + esc(url.PathEscape(c.ID)) + `" data-check="` + esc(c.ID) + `">`)
	b.WriteString(`<p class="question-prompt">` + esc(q.Prompt) + `</p>`)
	if len(q.Choices) > 0 {
		typ := "radio"
		if q.Multiple() {
			typ = "checkbox"
			b.WriteString(`<p class="question-note">Pick every right answer.</p>`)
		}
		b.WriteString(`<div class="question-choices">`)
		for _, ch := range q.Choices {
			b.WriteString(`<label><input type="` + typ + `" name="answer" value="` + esc(ch) + `"> ` + esc(ch) + `</label>`)
		}
		b.WriteString(`</div>`)
	} else {
		b.WriteString(`<input class="question-text" type="text" name="answer" maxlength="` + strconv.Itoa(MaxAnswer) + `" autocomplete="off" aria-label="` + esc(q.Prompt) + `">`)
	}
	b.WriteString(`<button type="submit">Answer</button></form>` + "\n")
	return b.String()
}
