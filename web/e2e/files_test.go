package e2e_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestBrowserRunWaitsAndFiles drives the terminal comforts of the lab
// page in Chromium: Run buttons clicked while a command runs wait for the
// shell's prompt (OSC 133 markers from the sandbox's bash), can be
// cancelled, and type multi-line blocks line by line; the Files panel
// lists, uploads (button and drag and drop onto the terminal) and
// downloads files and archives of the workspace.
func TestBrowserRunWaitsAndFiles(t *testing.T) {
	root, chromium := prerequisites(t)
	srv := startLabd(t, root)
	ctx := newBrowser(t, chromium)

	do(t, ctx, srv, "open lab",
		chromedp.EmulateViewport(1400, 900),
		chromedp.Navigate(srv.url+"/labs/"+labID),
		chromedp.WaitVisible(chromedp.CSS(`#term-status[data-state="connected"]`)),
	)
	waitTerminal(t, ctx, srv, "shell prompt", promptRE)
	// The markers come through the whole chain: the sandbox's bash, the
	// pty, the hub, the websocket, xterm.js's parser.
	get(t, ctx, srv, "prompt markers", chromedp.Poll[bool](`window.labd.shell().marks && window.labd.shell().state === 'prompt'`))

	// Run during `sleep 3`: the block waits (and says so), the busy
	// indicator shows, and the block is typed only once the next prompt is
	// drawn. Bash prints the A marker before it expands PS1 and readline
	// takes the terminal; a line typed in between is echoed by the tty and
	// again by readline. A slow PS1 (a git prompt, a loaded machine) widens
	// that gap: with a one-second PS1 a block typed at A lands above the
	// prompt every time.
	typeCommand(t, ctx, srv, `PS1_SAVED=$PS1; PS1='$(sleep 1)'"$PS1"; echo "slow-ps1-$((2+3))"`)
	waitTerminal(t, ctx, srv, "slow PS1 set", regexp.MustCompile(`(?m)^slow-ps1-5`))
	waitPrompt(t, ctx, srv)
	typeCommand(t, ctx, srv, `sleep 3`)
	get(t, ctx, srv, "busy state", chromedp.Poll[bool](`window.labd.shell().state === 'busy'`))
	clickRun(t, ctx, srv, 1, 0) // echo "labd-run-$((6*7))" | tee greeting.txt
	get(t, ctx, srv, "waiting bar", chromedp.Poll[bool](`(() => {
		const w = document.getElementById('run-wait');
		return !w.hidden && w.textContent.includes('Waiting for the prompt') && !document.getElementById('term-busy').hidden;
	})()`))
	// Not anchored: the output shows whether or not it starts a line.
	runOut := regexp.MustCompile(`labd-run-42`)
	waitTerminal(t, ctx, srv, "Run output", runOut)
	waitPrompt(t, ctx, srv)
	after := afterLine(t, ctx, srv, "sleep 3", runOut)
	if !regexp.MustCompile(`^ *\n[^\n]*@lab-[^\n]*[#$] echo "labd-run-\$\(\(6\*7\)\)" \| tee greeting\.txt *\nlabd-run-42$`).MatchString(after) || strings.Count(after, `echo "labd-run-`) != 1 {
		t.Errorf("after `sleep 3` the terminal shows:\n%s\nwant the next prompt with the Run block typed once, after sleep ended, then its output", after)
	}
	get(t, ctx, srv, "waiting bar gone", chromedp.Poll[bool](`document.getElementById('run-wait').hidden && document.getElementById('term-busy').hidden`))
	typeCommand(t, ctx, srv, `PS1=$PS1_SAVED; echo "fast-ps1-$((3+4))"`)
	waitTerminal(t, ctx, srv, "PS1 restored", regexp.MustCompile(`(?m)^fast-ps1-7`))
	waitPrompt(t, ctx, srv)

	// A multi-line block during a command: typed after the prompt, one
	// line per (continuation) prompt, as a learner types it.
	typeCommand(t, ctx, srv, `sleep 2`)
	get(t, ctx, srv, "busy state", chromedp.Poll[bool](`window.labd.shell().state === 'busy'`))
	clickRun(t, ctx, srv, 4, 0)
	waitTerminal(t, ctx, srv, "multi-line output", regexp.MustCompile(`(?m)^line-3`))
	after = afterLine(t, ctx, srv, "sleep 2", regexp.MustCompile(`(?m)^line-3`))
	if !regexp.MustCompile(`^ *\n[^\n]*[#$] for i in 1 2 3; do *\n> +echo "line-\$i" *\n> done *\nline-1 *\nline-2 *\nline-3`).MatchString(after) {
		t.Errorf("after `sleep 2` the terminal shows:\n%s\nwant the prompt, the three lines at their prompts, then line-1..3", after)
	}

	// Cancel: a waiting block is never typed.
	typeCommand(t, ctx, srv, `sleep 3`)
	get(t, ctx, srv, "busy state", chromedp.Poll[bool](`window.labd.shell().state === 'busy'`))
	clickRun(t, ctx, srv, 3, 1) // echo "mark=$MARK"
	do(t, ctx, srv, "cancel the waiting block",
		chromedp.WaitVisible(chromedp.CSS(`#run-wait`)),
		chromedp.Click(chromedp.CSS(`#btn-run-cancel`)),
		chromedp.WaitNotVisible(chromedp.CSS(`#run-wait`)),
	)
	get(t, ctx, srv, "prompt after sleep", chromedp.Poll[bool](`window.labd.shell().state === 'prompt' && window.labd.shell().queued === 0`))
	typeCommand(t, ctx, srv, `echo "after-cancel-$((3*3))"`)
	waitTerminal(t, ctx, srv, "output after cancel", regexp.MustCompile(`(?m)^after-cancel-9`))
	if text := terminalText(ctx); strings.Contains(text, `echo "mark=`) {
		t.Errorf("the cancelled block was typed:\n%s", text)
	}

	// Files panel: lists the workspace (greeting.txt from the Run above).
	do(t, ctx, srv, "open files",
		chromedp.Click(chromedp.CSS(`#btn-files`)),
		chromedp.WaitVisible(chromedp.CSS(`#files li[data-name="greeting.txt"] a.files-get`)),
	)
	// Upload with the button's file input.
	local := filepath.Join(t.TempDir(), "upload-e2e.txt")
	if err := os.WriteFile(local, []byte("uploaded-through-the-page\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	do(t, ctx, srv, "upload a file",
		chromedp.SetUploadFiles(chromedp.CSS(`#files .files-input`), []string{local}),
		chromedp.WaitVisible(chromedp.CSS(`#files li[data-name="upload-e2e.txt"]`)),
	)
	if msg := get(t, ctx, srv, "upload message", chromedp.Text(chromedp.CSS(`#files .files-msg`))); !strings.Contains(msg, "Uploaded upload-e2e.txt to ~") {
		t.Errorf("upload message = %q", msg)
	}
	// Drag and drop onto the terminal, into a subfolder opened in the panel.
	waitPrompt(t, ctx, srv)
	typeCommand(t, ctx, srv, `mkdir -p drops && echo "made-$((4*4))"`)
	waitTerminal(t, ctx, srv, "mkdir", regexp.MustCompile(`(?m)^made-16`))
	do(t, ctx, srv, "open subfolder",
		chromedp.Click(chromedp.CSS(`#files .files-refresh`)),
		chromedp.WaitVisible(chromedp.CSS(`#files li[data-name="drops"] button`)),
		chromedp.Click(chromedp.CSS(`#files li[data-name="drops"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`#files li.files-empty`)),
		chromedp.Evaluate[chromedp.Void](`(() => {
			const dt = new DataTransfer();
			dt.items.add(new File(['dropped-onto-the-terminal\n'], 'dropped.txt', {type: 'text/plain'}));
			const pane = document.querySelector('.pane-terminal');
			pane.dispatchEvent(new DragEvent('dragenter', {dataTransfer: dt, bubbles: true, cancelable: true}));
			pane.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
		})()`),
		chromedp.WaitVisible(chromedp.CSS(`#files li[data-name="dropped.txt"]`)),
	)
	if where := get(t, ctx, srv, "folder shown", chromedp.Text(chromedp.CSS(`#files .files-where`))); where != "~/drops" {
		t.Errorf("folder shown = %q, want ~/drops", where)
	}
	screenshot(t, ctx, srv, "lab-files-panel")
	// The shell sees both files (the output differs from the typed text).
	waitPrompt(t, ctx, srv)
	typeCommand(t, ctx, srv, `cat upload-e2e.txt drops/dropped.txt | tr a-z A-Z`)
	waitTerminal(t, ctx, srv, "uploaded files in the shell", regexp.MustCompile(`UPLOADED-THROUGH-THE-PAGE\s*\nDROPPED-ONTO-THE-TERMINAL`))

	// Downloads: the panel's links and the archive form give the bytes.
	do(t, ctx, srv, "back up", chromedp.Click(chromedp.CSS(`#files .files-up`)),
		chromedp.WaitVisible(chromedp.CSS(`#files li[data-name="greeting.txt"] a.files-get`)))
	got := get(t, ctx, srv, "download link", chromedp.Evaluate[[]string](`(async () => {
		const a = document.querySelector('#files li[data-name="greeting.txt"] a.files-get');
		const r = await fetch(a.href);
		return [String(r.status), r.headers.get('Content-Disposition') || '', await r.text(), a.getAttribute('download')];
	})()`, chromedp.EvalAwaitPromise))
	if !slices.Equal(got, []string{"200", "attachment; filename=greeting.txt", "labd-run-42\n", "greeting.txt"}) {
		t.Errorf("download link of greeting.txt: %q", got)
	}
	b64 := get(t, ctx, srv, "archive", chromedp.Evaluate[string](`(async () => {
		const f = document.querySelector('#files form.files-archive');
		const r = await fetch(f.action + '?' + new URLSearchParams(new FormData(f)));
		const b = new Uint8Array(await r.arrayBuffer());
		let s = ''; for (const c of b) s += String.fromCharCode(c);
		return r.status === 200 ? btoa(s) : 'status ' + r.status;
	})()`, chromedp.EvalAwaitPromise))
	names := tarNames(t, b64)
	for _, want := range []string{"workspace/greeting.txt", "workspace/upload-e2e.txt", "workspace/drops/", "workspace/drops/dropped.txt"} {
		if !slices.Contains(names, want) {
			t.Errorf("workspace archive lacks %s; has %q", want, names)
		}
	}
	// A wrong path says so in the panel; the page stays.
	do(t, ctx, srv, "download a missing file",
		chromedp.SetValue(chromedp.CSS(`#files form.files-download input[name="path"]`), "nope.txt"),
		chromedp.Click(chromedp.CSS(`#files form.files-download button[type="submit"]`)),
	)
	get(t, ctx, srv, "error in the panel", chromedp.Poll[bool](`document.querySelector('#files .files-msg').textContent.includes('nope.txt: no such file')`))
	if loc := get(t, ctx, srv, "location", chromedp.Evaluate[string](`location.pathname`)); loc != "/labs/"+labID {
		t.Errorf("after a failed download the page is %s, want the lab", loc)
	}
}

// waitPrompt waits until the page sees the shell at a drawn prompt with
// nothing queued, so keys typed next reach readline. Call it after output
// of the last command showed: until then the state may still be the
// previous prompt's.
func waitPrompt(t *testing.T, ctx context.Context, srv *labd) {
	t.Helper()
	get(t, ctx, srv, "prompt", chromedp.Poll[bool](`window.labd.shell().state === 'prompt' && window.labd.shell().queued === 0`))
}

// afterLine returns the terminal text from the end of the first line
// containing marker (a typed command) to the end of the first match of
// end after it.
func afterLine(t *testing.T, ctx context.Context, srv *labd, marker string, end *regexp.Regexp) string {
	t.Helper()
	text := terminalText(ctx)
	i := strings.Index(text, marker)
	if i < 0 {
		t.Fatalf("%q not in the terminal:\n%s\nlabd log:\n%s", marker, text, srv.log())
	}
	rest := text[i+len(marker):]
	loc := end.FindStringIndex(rest)
	if loc == nil {
		t.Fatalf("%s not after %q in the terminal:\n%s", end, marker, text)
	}
	return rest[:loc[1]]
}

func tarNames(t *testing.T, b64 string) []string {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatalf("archive fetch: %s", b64)
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("archive is not gzip: %v", err)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatalf("archive: %v", err)
		}
		names = append(names, h.Name)
	}
}
