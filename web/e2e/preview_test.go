package e2e_test

import (
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// previewSite is the learner's app of TestPreviewBrowser: a page that
// needs its stylesheet, script, image and a fetch() to look right, and a
// second page reached by a link.
var previewSite = map[string]string{
	"index.html": `<!doctype html><html><head><title>preview-e2e</title>` +
		`<link rel="stylesheet" href="style.css"><script src="app.js"></script></head>` +
		`<body><h1 id="title">preview-e2e</h1><img id="pic" src="pic.gif" alt="pic">` +
		`<p id="fetched">pending</p><a id="next" href="next.html">next page</a></body></html>`,
	"next.html": `<!doctype html><html><head><title>next</title><link rel="stylesheet" href="style.css"></head>` +
		`<body><h1 id="title">second page</h1></body></html>`,
	"style.css": `#title { color: rgb(1, 2, 3); }`,
	"app.js": `window.appScript = 'ran';
addEventListener('DOMContentLoaded', () => fetch('data.txt')
  .then(r => r.ok ? r.text() : Promise.reject(new Error('HTTP ' + r.status)))
  .then(t => { document.getElementById('fetched').textContent = 'fetched:' + t.trim(); },
        e => { document.getElementById('fetched').textContent = 'error:' + e; }));`,
	"data.txt": "data-42\n",
	// A 1x1 GIF.
	"pic.gif": "GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;",
}

// previewPageJS reports what of the page loaded, and whether its origin is
// labd's.
const previewPageJS = `(() => {
	const pic = document.getElementById('pic');
	let cookies = 'readable';
	try { document.cookie; } catch (e) { cookies = 'blocked'; }
	return {
		color: getComputedStyle(document.getElementById('title')).color,
		image: pic ? pic.naturalWidth : -1,
		script: window.appScript || '',
		fetched: (document.getElementById('fetched') || {}).textContent || '',
		origin: self.origin,
		host: location.host,
		path: location.pathname,
		cookies: cookies,
	};
})()`

type previewPage struct {
	Color   string `json:"color"`
	Image   int    `json:"image"`
	Script  string `json:"script"`
	Fetched string `json:"fetched"`
	Origin  string `json:"origin"`
	Host    string `json:"host"`
	Path    string `json:"path"`
	Cookies string `json:"cookies"`
}

// TestPreviewBrowser checks the port preview in a real Chromium, with a
// busybox httpd published on 5001 in the learner's sandbox:
//
//   - path-based (/sandboxes/{sid}/ports/5001/): the page is served with
//     CSP sandbox (an opaque origin), so Chromium sends no SameSite cookie
//     with its subresources and treats its fetch() as cross-origin; its
//     stylesheet, script, image and fetch must still load (through the
//     capability URL, docs/preview.md), a link to a second page must work,
//     and labd's cookies must stay out of its reach;
//   - host-based (--preview-domain localhost:PORT; Chromium resolves
//     *.localhost to loopback itself): the Ports box's link lands on
//     http://5001-<sid>.localhost:PORT/ with everything loaded at /;
//   - another learner's browser gets 403 on both URLs.
func TestPreviewBrowser(t *testing.T) {
	root, chromium := prerequisites(t)

	bin := buildLabd(t, root)
	data := os.Getenv("LABD_E2E_DATA")
	if data == "" {
		data = t.TempDir()
	}
	if out, err := exec.Command(bin, "images", "bootstrap", "busybox", "--data", data).CombinedOutput(); err != nil {
		t.Fatalf("labd images bootstrap busybox: %v\n%s", err, out)
	}
	// The preview domain names labd's port, so pick it first.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	ln.Close()
	srv := serveLabd(t, bin, "--addr", addr, "--content", filepath.Join(root, "web/testdata/content"),
		"--data", data, "--idle-timeout", "10m", "--preview-domain", "localhost:"+port,
		// The simple shell stands in for the sandbox image this test does
		// not make (a trusted learner's).
		"--trusted-learners")
	ctx := newBrowser(t, chromium)

	shot := func(name string) { t.Helper(); screenshot(t, ctx, srv, name) }

	do(t, ctx, srv, "open lab",
		chromedp.EmulateViewport(1280, 800),
		chromedp.Navigate(srv.url+"/labs/"+labID),
		chromedp.WaitVisible(chromedp.CSS(`#term-status[data-state="connected"]`)),
	)
	waitTerminal(t, ctx, srv, "shell prompt", promptRE)
	sid := get(t, ctx, srv, "sandbox id", chromedp.AttributeValue(chromedp.CSS(`#lab`), "data-sandbox")).Value

	// The app: busybox httpd over the files above, written in the
	// container from base64 (nothing to quote).
	var sh strings.Builder
	sh.WriteString("mkdir /w && cd /w")
	for _, name := range []string{"index.html", "next.html", "style.css", "app.js", "data.txt", "pic.gif"} {
		fmt.Fprintf(&sh, " && echo %s | base64 -d > %s", base64.StdEncoding.EncodeToString([]byte(previewSite[name])), name)
	}
	sh.WriteString(" && exec httpd -f -p 5000 -h /w")
	typeCommand(t, ctx, srv, `docker run -d -p 5001:5000 busybox sh -c '`+sh.String()+`' >/dev/null && for i in $(seq 100); do curl -s localhost:5001/data.txt && break; sleep 0.2; done`)
	waitTerminal(t, ctx, srv, "the app answering in the sandbox", regexp.MustCompile(`data-42`))

	wantLoaded := func(what string, p previewPage) {
		t.Helper()
		if p.Color != "rgb(1, 2, 3)" {
			t.Errorf("%s: #title color %q: style.css not applied", what, p.Color)
		}
		if p.Image <= 0 {
			t.Errorf("%s: pic.gif naturalWidth %d: image not loaded", what, p.Image)
		}
		if p.Script != "ran" {
			t.Errorf("%s: app.js did not run", what)
		}
		if p.Fetched != "fetched:data-42" {
			t.Errorf("%s: fetch('data.txt') shows %q, want fetched:data-42", what, p.Fetched)
		}
	}
	// pageLoaded waits for the app's fetch to settle (either way) and
	// reads the page.
	pageLoaded := func(what string) previewPage {
		t.Helper()
		get(t, ctx, srv, what+": fetch settled", chromedp.Poll[bool](`(() => { const f = document.getElementById('fetched'); return !!f && f.textContent !== 'pending'; })()`))
		return get(t, ctx, srv, what+": page state", chromedp.Evaluate[previewPage](previewPageJS))
	}

	// Path-based.
	do(t, ctx, srv, "open the path-based preview",
		chromedp.Navigate(srv.url+"/sandboxes/"+sid+"/ports/5001/"),
		chromedp.WaitVisible(chromedp.CSS(`#title`)),
	)
	p := pageLoaded("path-based")
	t.Logf("path-based preview: %+v", p)
	wantLoaded("path-based", p)
	if !strings.HasPrefix(p.Path, "/sandboxes/"+sid+"/preview/5001/") || p.Host != addr {
		t.Errorf("path-based page at %s%s, want labd's host under /sandboxes/%s/preview/5001/", p.Host, p.Path, sid)
	}
	if p.Origin != "null" || p.Cookies != "blocked" {
		t.Errorf("path-based page: origin %q, document.cookie %s; want an opaque origin that cannot read cookies", p.Origin, p.Cookies)
	}
	// labd's pages are out of reach of the page's scripts.
	labdRead := get(t, ctx, srv, "fetch a labd page from the preview", chromedp.Evaluate[string](
		`fetch('/labs/`+labID+`').then(r => r.text()).then(t => t.includes('data-sandbox') ? 'read labd' : 'no labd page', e => 'refused')`,
		chromedp.EvalAwaitPromise))
	if labdRead == "read labd" {
		t.Error("the preview page's script read a labd page")
	}
	shot("preview-path-based")
	do(t, ctx, srv, "follow the app's link", chromedp.Click(chromedp.CSS(`#next`)))
	get(t, ctx, srv, "second page", chromedp.Poll[bool](`!!document.getElementById('title') && document.getElementById('title').textContent === 'second page' && document.readyState === 'complete'`))
	next := get(t, ctx, srv, "second page", chromedp.Evaluate[previewPage](previewPageJS))
	if next.Color != "rgb(1, 2, 3)" || !strings.HasSuffix(next.Path, "/next.html") {
		t.Errorf("second page: %+v, want next.html with its stylesheet", next)
	}
	capped := get(t, ctx, srv, "preview URL", chromedp.Evaluate[string](`location.href`))

	// Host-based: the Ports box's link.
	do(t, ctx, srv, "back to the lab",
		chromedp.Navigate(srv.url+"/labs/"+labID),
		chromedp.WaitVisible(chromedp.CSS(`a.port-link[data-port="5001"]`)),
	)
	href := get(t, ctx, srv, "port link", chromedp.AttributeValue(chromedp.CSS(`a.port-link[data-port="5001"]`), "href")).Value
	do(t, ctx, srv, "open the host-based preview",
		chromedp.Navigate(srv.url+href),
		chromedp.WaitVisible(chromedp.CSS(`#title`)),
	)
	h := pageLoaded("host-based")
	t.Logf("host-based preview: %+v", h)
	wantLoaded("host-based", h)
	hostOrigin := "http://5001-" + sid + ".localhost:" + port
	if h.Origin != hostOrigin || h.Path != "/" || h.Cookies != "readable" {
		t.Errorf("host-based page: origin %q path %q cookies %s, want %s/ as a normal origin", h.Origin, h.Path, h.Cookies, hostOrigin)
	}
	shot("preview-host-based")

	// Another learner (a browser context of its own, so its own labd
	// cookie) gets 403 on both URLs.
	octx, cancel := chromedp.NewContext(ctx, chromedp.WithNewBrowserContext())
	defer cancel()
	// The first Do creates the tab and binds it to its context: no timeout.
	if err := chromedp.Do(octx); err != nil {
		t.Fatalf("new browser context: %v", err)
	}
	do(t, octx, srv, "other learner opens the lab",
		chromedp.Navigate(srv.url+"/labs/"+labID),
		chromedp.WaitVisible(chromedp.CSS(`#lab`)),
	)
	for _, u := range []string{capped, hostOrigin + "/"} {
		do(t, octx, srv, "other learner opens "+u, chromedp.Navigate(u))
		text := get(t, octx, srv, "other learner's page", chromedp.Evaluate[string](`location.href + "\n" + document.title + "\n" + document.body.innerText`))
		if !strings.Contains(text, "Not your sandbox") || strings.Contains(text, "preview-e2e") || strings.Contains(text, "second page") {
			t.Errorf("other learner at %s sees %q, want Not your sandbox", u, text)
		}
	}
}
