package e2e_test

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserStarterAndStartFromStep: a lab's starter files are in a new
// learner's workspace at the first prompt, and "Start from this step"
// does the earlier steps in the learner's sandbox; a setup that fails
// says so on its page and leaves the files as they were.
func TestBrowserStarterAndStartFromStep(t *testing.T) {
	root, chromium := prerequisites(t)
	srv := startLabdWith(t, root, filepath.Join(root, "web/testdata/starter-content"))
	ctx := newBrowser(t, chromium)

	do(t, ctx, srv, "open the starter lab",
		chromedp.EmulateViewport(1280, 800),
		chromedp.Navigate(srv.url+"/labs/starter-lab"),
		chromedp.WaitVisible(chromedp.CSS(`#term-status[data-state="connected"]`)),
	)
	waitTerminal(t, ctx, srv, "shell prompt", promptRE)
	typeCommand(t, ctx, srv, `cat app.py data/notes.txt`)
	waitTerminal(t, ctx, srv, "starter files", regexp.MustCompile(`(?m)^print\("hello"\)\s*\nnotes`))

	do(t, ctx, srv, "open the setup lab",
		chromedp.Navigate(srv.url+"/labs/setup-lab"),
		chromedp.WaitVisible(chromedp.CSS(`#term-status[data-state="connected"]`)),
	)
	waitTerminal(t, ctx, srv, "shell prompt", promptRE)
	typeCommand(t, ctx, srv, `echo mine > mine.txt; ls one.txt || echo "no-one-$((1+1))"`)
	waitTerminal(t, ctx, srv, "nothing done yet", regexp.MustCompile(`(?m)^no-one-2`))

	markPage(t, ctx, srv)
	do(t, ctx, srv, "start from step 2",
		chromedp.Click(chromedp.CSS(`section.step[data-step="2"] details.start-step > summary`)),
		chromedp.WaitVisible(chromedp.CSS(`section.step[data-step="2"] .start-step-form button`)),
		chromedp.Click(chromedp.CSS(`section.step[data-step="2"] .start-step-form button`)),
	)
	// The form posts, labd runs the setup, then sends the page back to
	// the step: a new page, whose terminal connects again.
	afterNavigation(t, ctx, srv, "the lab again, at step 2", `location.pathname + location.hash === '/labs/setup-lab#two' &&
		document.querySelector('#term-status').dataset.state === 'connected'`)
	waitTerminal(t, ctx, srv, "shell prompt", promptRE)
	typeCommand(t, ctx, srv, `cat one.txt mine.txt; echo "set-up-$((2+2))"`)
	waitTerminal(t, ctx, srv, "step 1 done for the learner", regexp.MustCompile(`(?m)^one\s*\nmine\s*\nset-up-4`))
	screenshot(t, ctx, srv, "start-from-step")

	markPage(t, ctx, srv)
	do(t, ctx, srv, "start from step 3, whose setup fails",
		chromedp.Click(chromedp.CSS(`section.step[data-step="3"] details.start-step > summary`)),
		chromedp.WaitVisible(chromedp.CSS(`section.step[data-step="3"] .start-step-form button`)),
		chromedp.Click(chromedp.CSS(`section.step[data-step="3"] .start-step-form button`)),
	)
	afterNavigation(t, ctx, srv, "the error page", `document.body.innerText.includes('Could not set up step 3')`)
	page := get(t, ctx, srv, "error page", chromedp.Evaluate[string](`document.body.innerText`))
	for _, want := range []string{"Could not set up step 3", "it last printed: no network here", "Your files are as they were before"} {
		if !strings.Contains(page, want) {
			t.Errorf("the failed setup's page lacks %q:\n%s", want, page)
		}
	}
	screenshot(t, ctx, srv, "start-from-step-failed")
	do(t, ctx, srv, "back to the lab",
		chromedp.Navigate(srv.url+"/labs/setup-lab"),
		chromedp.WaitVisible(chromedp.CSS(`#term-status[data-state="connected"]`)),
	)
	waitTerminal(t, ctx, srv, "shell prompt", promptRE)
	typeCommand(t, ctx, srv, `ls half.txt 2>/dev/null || echo "no-half-$((3+3))"`)
	waitTerminal(t, ctx, srv, "the failed setup's file is gone", regexp.MustCompile(`(?m)^no-half-6`))
}

// markPage marks the current document, so afterNavigation knows the next.
func markPage(t *testing.T, ctx context.Context, srv *labd) {
	t.Helper()
	get(t, ctx, srv, "mark the page", chromedp.Evaluate[bool](`window.labdOldPage = true`))
}

// afterNavigation waits until a document other than the marked one holds
// cond. While the browser navigates an evaluation fails; it is retried.
func afterNavigation(t *testing.T, ctx context.Context, srv *labd, what, cond string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	var last error
	for time.Now().Before(deadline) {
		tctx, cancel := context.WithTimeout(ctx, time.Second)
		ok, err := chromedp.Run(tctx, chromedp.Evaluate[bool](`!window.labdOldPage && (`+cond+`)`))
		cancel()
		if err == nil && ok {
			return
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not so within %v (last error %v)\nlabd log:\n%s", what, waitTimeout, last, srv.log())
}
