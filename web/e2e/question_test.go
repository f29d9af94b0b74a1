package e2e_test

import (
	"path/filepath"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestBrowserQuestion: a learner answers a question block in Chromium; a
// wrong answer shows "Not quite" in the step's status, the right one
// turns the check green.
func TestBrowserQuestion(t *testing.T) {
	root, chromium := prerequisites(t)
	srv := startLabdWith(t, root, filepath.Join(root, "web/testdata/starter-content"))
	ctx := newBrowser(t, chromium)
	check := func(id string) string {
		return `document.querySelector('.step-status li.check[data-check="` + id + `"]')`
	}
	do(t, ctx, srv, "open the quiz",
		chromedp.EmulateViewport(1280, 800),
		chromedp.Navigate(srv.url+"/labs/quiz-lab"),
		chromedp.WaitVisible(chromedp.CSS(`#term-status[data-state="connected"]`)),
	)
	markPage(t, ctx, srv)
	do(t, ctx, srv, "answer wrong",
		chromedp.Click(chromedp.CSS(`form.question[data-check="layer-maker"] input[value="CMD"]`)),
		chromedp.Click(chromedp.CSS(`form.question[data-check="layer-maker"] button`)),
	)
	afterNavigation(t, ctx, srv, "the wrong answer graded", check("layer-maker")+`.dataset.state === 'failed' &&
		document.querySelector('.step-status[data-step="1"]').textContent.includes('Not quite')`)
	screenshot(t, ctx, srv, "question-wrong")
	markPage(t, ctx, srv)
	do(t, ctx, srv, "answer right",
		chromedp.Click(chromedp.CSS(`form.question[data-check="layer-maker"] input[value="RUN"]`)),
		chromedp.Click(chromedp.CSS(`form.question[data-check="layer-maker"] button`)),
	)
	afterNavigation(t, ctx, srv, "the right answer passes", check("layer-maker")+`.dataset.state === 'passed'`)
	markPage(t, ctx, srv)
	do(t, ctx, srv, "a free answer",
		chromedp.SendKeys(chromedp.CSS(`form.question[data-check="flask-port"] input.question-text`), "5000"),
		chromedp.Click(chromedp.CSS(`form.question[data-check="flask-port"] button`)),
	)
	afterNavigation(t, ctx, srv, "the free answer passes", check("flask-port")+`.dataset.state === 'passed'`)
	screenshot(t, ctx, srv, "question-right")
}
