package e2e_test

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// TestClipboard copies and pastes in the terminal as a learner does: with
// Ctrl+Shift+C / Ctrl+Shift+V, and with the right-click menu (xterm.js puts
// the selection in its textarea under the mouse, so the browser's own menu
// has Copy and Paste). Each paste must reach the shell exactly once.
func TestClipboard(t *testing.T) {
	root, chromium := prerequisites(t)
	srv := startLabd(t, root)
	ctx := newBrowser(t, chromium)
	do(t, ctx, srv, "open lab",
		chromedp.EmulateViewport(1280, 800),
		chromedp.Navigate(srv.url+"/labs/"+labID),
		chromedp.WaitVisible(chromedp.CSS(`#terminal .xterm`)),
	)
	waitTerminal(t, ctx, srv, "shell prompt", promptRE)
	for _, name := range []string{"clipboard-read", "clipboard-write"} {
		if _, err := chromedp.CallBrowser(ctx, browser.SetPermission, browser.SetPermissionParams{
			Permission: &browser.PermissionDescriptor{Name: name, AllowWithoutSanitization: true},
			Setting:    browser.PermissionSettingGranted,
			Origin:     srv.url,
		}); err != nil {
			t.Fatalf("grant %s: %v", name, err)
		}
	}
	clipboard := func() string {
		return get(t, ctx, srv, "read clipboard", chromedp.Evaluate[string](`navigator.clipboard.readText()`, chromedp.EvalAwaitPromise))
	}
	setClipboard := func(s string) {
		get(t, ctx, srv, "write clipboard", chromedp.Evaluate[bool](fmt.Sprintf(`navigator.clipboard.writeText(%q).then(() => true)`, s), chromedp.EvalAwaitPromise))
	}

	// Ctrl+Shift+C copies the selection (a double-click selects a word).
	typeCommand(t, ctx, srv, `echo copy-$((30+3))`)
	waitTerminal(t, ctx, srv, "echo output", regexp.MustCompile(`(?m)^copy-33\s*$`))
	x, y := wordXY(t, ctx, srv, "copy-33")
	do(t, ctx, srv, "double-click the word",
		chromedp.MouseClickXY(x, y, chromedp.ClickCount(2)),
	)
	setClipboard("before")
	do(t, ctx, srv, "Ctrl+Shift+C", chromedp.KeyEvent("C", chromedp.KeyModifiers(chromedp.ModifierCtrl, chromedp.ModifierShift)))
	if got := clipboard(); got != "copy-33" {
		t.Errorf("clipboard after Ctrl+Shift+C = %q, want %q", got, "copy-33")
	}

	// Right-click on the selection: xterm.js moves its textarea under the
	// mouse holding the selection, selected, which the browser's menu
	// copies.
	do(t, ctx, srv, "right-click", chromedp.MouseClickXY(x, y, chromedp.ButtonRight))
	ta := get(t, ctx, srv, "textarea after right-click", chromedp.Evaluate[string](`(() => {
		const ta = document.querySelector('#terminal .xterm-helper-textarea');
		return [document.activeElement === ta, ta.value.substring(ta.selectionStart, ta.selectionEnd)].join('|');
	})()`))
	if ta != "true|copy-33" {
		t.Errorf("after a right-click the focused textarea's selected text is %q, want %q (what the browser menu's Copy takes)", ta, "true|copy-33")
	}

	// Ctrl+Shift+V pastes once.
	setClipboard("echo pasted-$((20+1))")
	do(t, ctx, srv, "Ctrl+Shift+V",
		chromedp.Focus(chromedp.CSS(`#terminal .xterm-helper-textarea`)),
		chromedp.KeyEvent("V", chromedp.KeyModifiers(chromedp.ModifierCtrl, chromedp.ModifierShift)),
		chromedp.KeyEvent(kb.Enter),
	)
	waitTerminal(t, ctx, srv, "pasted command's output", regexp.MustCompile(`(?m)^pasted-21.*$`))
	if m := regexp.MustCompile(`(?m)^pasted-21.*$`).FindString(terminalText(ctx)); strings.TrimSpace(m) != "pasted-21" {
		t.Errorf("Ctrl+Shift+V: the shell ran %q, want pasted-21 (pasted once)", m)
	}
	// A second paste would arrive after the Enter and spoil the next line.
	typeCommand(t, ctx, srv, `echo mark-$((1+1))`)
	waitTerminal(t, ctx, srv, "the next command alone (Ctrl+Shift+V pasted once)", regexp.MustCompile(`(?m)^mark-2\s*$`))

	// The right-click menu's Paste is a paste event on that textarea.
	get(t, ctx, srv, "menu Paste", chromedp.Evaluate[bool](`(() => {
		const ta = document.querySelector('#terminal .xterm-helper-textarea');
		const dt = new DataTransfer();
		dt.setData('text/plain', 'echo menu-$((5+5))');
		return ta.dispatchEvent(new ClipboardEvent('paste', {clipboardData: dt, bubbles: true, cancelable: true}));
	})()`))
	do(t, ctx, srv, "Enter", chromedp.KeyEvent(kb.Enter))
	waitTerminal(t, ctx, srv, "menu-pasted command's output", regexp.MustCompile(`(?m)^menu-10\s*$`))
}

// wordXY returns the viewport point of the middle of the first terminal
// row that is exactly word, on its first characters.
func wordXY(t *testing.T, ctx context.Context, srv *labd, word string) (float64, float64) {
	t.Helper()
	js := fmt.Sprintf(`(() => {
		const rows = Array.from(document.querySelectorAll('#terminal .xterm-rows > div'));
		const row = rows.find(r => r.textContent.replace(/\u00a0/g, ' ').trim() === %q);
		if (!row) return [];
		const r = row.getBoundingClientRect();
		// The row's first span holds the word's characters.
		const span = row.firstElementChild ? row.firstElementChild.getBoundingClientRect() : r;
		return [span.left + Math.min(span.width / 2, 12), r.top + r.height / 2];
	})()`, word)
	xy := get(t, ctx, srv, "word position", chromedp.Evaluate[[]float64](js))
	if len(xy) < 2 {
		t.Fatalf("no terminal row reads %q:\n%s", word, terminalText(ctx))
	}
	return xy[0], xy[1]
}
