package e2e_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// red is --bad in app.css as the browser computes it.
const red = "rgb(207, 34, 46)"

// TestStepStatusViews: on a fresh lab nothing is red: the step with a
// check that does not pass yet is "to do", steps without checks say "no
// check"; pressing Check turns the unfinished step red "not yet" with what
// is missing; doing the step turns it green "done".
func TestStepStatusViews(t *testing.T) {
	root, chromium := prerequisites(t)
	srv := startLabd(t, root)
	ctx := newBrowser(t, chromium)
	shot := func(name string) { t.Helper(); screenshot(t, ctx, srv, name) }

	do(t, ctx, srv, "open lab",
		chromedp.EmulateViewport(1280, 800),
		chromedp.Navigate(srv.url+"/labs/"+labID),
		chromedp.WaitVisible(chromedp.CSS(`.step-status[data-step="1"] .btn-check`)),
	)
	// The grader has evaluated the fresh sandbox: step 1's check fails.
	get(t, ctx, srv, "first evaluation", chromedp.Poll[bool](`window.labd.status.updates >= 1 &&
		document.querySelector('.step-list li[data-step="1"]').dataset.state === 'failed'`))
	steps := get(t, ctx, srv, "step views", chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('.step-list li')).map(li =>
		li.dataset.view + '|' + li.querySelector('.step-state').textContent)`))
	if want := []string{"todo|to do", "nocheck|no check", "nocheck|no check", "nocheck|no check"}; !slices.Equal(steps, want) {
		t.Fatalf("fresh lab step list = %q, want %q", steps, want)
	}
	reds := get(t, ctx, srv, "red marks", chromedp.Evaluate[int](`Array.from(document.querySelectorAll('.step-list li, .step-status li.check')).filter(el =>
		getComputedStyle(el, '::before').backgroundColor === '`+red+`' || getComputedStyle(el, '::before').color === '`+red+`').length`))
	if reds != 0 {
		t.Fatalf("fresh lab shows %d red marks, want none", reds)
	}
	check := get(t, ctx, srv, "check view", chromedp.Evaluate[string](`(() => { const li = document.querySelector('.step-status[data-step="1"] li.check');
		return li.dataset.state + '|' + li.dataset.view + '|' + (li.querySelector('.check-message') ? 'message' : 'quiet'); })()`))
	if check != "failed|todo|quiet" {
		t.Fatalf("fresh check = %q, want the grader's failed shown as a quiet to do", check)
	}
	shot("status-fresh")

	// The learner asks: now the step is red and says what is missing.
	do(t, ctx, srv, "click Check", chromedp.Click(chromedp.CSS(`.step-status[data-step="1"] .btn-check`)))
	do(t, ctx, srv, "not yet", chromedp.WaitVisible(chromedp.CSS(`.step-list li[data-step="1"][data-view="notyet"]`)))
	got := get(t, ctx, srv, "asked view", chromedp.Evaluate[[]string](`(() => {
		const item = document.querySelector('.step-list li[data-step="1"]');
		const msg = document.querySelector('.step-status[data-step="1"] li.check .check-message');
		return [item.querySelector('.step-state').textContent, getComputedStyle(item, '::before').backgroundColor,
			msg ? msg.textContent : '', document.querySelector('.step-list li[data-step="2"]').dataset.view];
	})()`))
	if got[0] != "not yet" || got[1] != red || !strings.Contains(got[2], "greeting.txt") || got[3] != "nocheck" {
		t.Fatalf("after Check: %q; want \"not yet\" in red with a message naming greeting.txt, other steps unchanged", got)
	}
	do(t, ctx, srv, "scroll to step 1", chromedp.ScrollIntoView(chromedp.CSS(`.step-status[data-step="1"]`)))
	shot("status-not-yet")

	// The learner does the step: green, no message.
	do(t, ctx, srv, "terminal connected", chromedp.WaitVisible(chromedp.CSS(`#term-status[data-state="connected"]`)))
	clickRun(t, ctx, srv, 1, 0)
	do(t, ctx, srv, "step done", chromedp.WaitVisible(chromedp.CSS(`.step-list li[data-step="1"][data-view="done"]`)))
	done := get(t, ctx, srv, "done view", chromedp.Evaluate[string](`document.querySelector('.step-list li[data-step="1"] .step-state').textContent + '|' +
		!!document.querySelector('.step-status[data-step="1"] .check-message') + '|' + document.getElementById('lab-progress').textContent`))
	if done != "done|false|1 of 1 checks done" {
		t.Fatalf("after the step: %q", done)
	}
}
