package web

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
	"golang.org/x/crypto/bcrypt"

	"github.com/labd/labd/registry/accounts"
	"github.com/labd/labd/sandbox"
	"github.com/labd/labd/web/terminal"
)

// The personas of the access tables.
const (
	pOwner = iota
	pOther
	pInstructor
	pNoCookie
	pForeign // the owner's cookie, but from another origin
	nPersonas
)

var personaNames = [nPersonas]string{"owner", "other learner", "instructor", "no cookie", "foreign origin"}

func (r reason) String() string {
	return [...]string{"allowed", "noSandbox", "notYours", "foreignOrigin", "badProof", "noLearner"}[r]
}

// TestDecide is the access decision's whole table: every route kind for
// each persona, on a running sandbox, then the cases around it (ended
// sandboxes, kept workspaces, bearer tokens, proofs).
func TestDecide(t *testing.T) {
	const owner, other, instr = "OWNER", "OTHER", "TEACHER"
	live := sandboxState{live: true, owner: owner}
	personas := [nPersonas]asker{
		pOwner:      {learner: owner, originOK: true},
		pOther:      {learner: other, originOK: true},
		pInstructor: {learner: instr, instructor: true, originOK: true},
		pNoCookie:   {originOK: true},
		pForeign:    {learner: owner, originOK: false},
	}
	// proofOf is what each persona holds of a route's proof: a path
	// capability is in a URL anyone may have copied; the preview host's
	// cookie and token are had only by who may ask labd for them.
	proofOf := func(k routeKind, p int) error {
		switch rules[k].who {
		case whoHostCookie, whoAuthToken:
			if p == pOther || p == pNoCookie {
				return errProofInvalid
			}
		}
		return nil
	}
	const (
		ok = allowed
		nY = notYours
		fO = foreignOrigin
		bP = badProof
		nL = noLearner
	)
	table := []struct {
		k    routeKind
		want [nPersonas]reason // owner, other, instructor, no cookie, foreign origin
	}{
		{routeTerminal, [nPersonas]reason{ok, nY, nY, nY, fO}},
		{routeStatus, [nPersonas]reason{ok, nY, nY, nY, fO}},
		{routeBanner, [nPersonas]reason{ok, nY, nY, nY, ok}},
		{routePorts, [nPersonas]reason{ok, nY, ok, nY, ok}},
		{routePreview, [nPersonas]reason{ok, nY, ok, nY, ok}},
		// No cookie at all: a subresource of the app's page, authorized
		// by the capability (page loads: below).
		{routePreviewCap, [nPersonas]reason{ok, nY, ok, ok, ok}},
		{routePreviewHost, [nPersonas]reason{ok, nY, ok, nY, ok}},
		{routePreviewHostAuth, [nPersonas]reason{ok, bP, ok, bP, ok}},
		{routeFilesRead, [nPersonas]reason{ok, nY, ok, nY, ok}},
		{routeFilesWrite, [nPersonas]reason{ok, nY, ok, nY, fO}},
		// Everyone's own account.
		{routeRegistry, [nPersonas]reason{ok, ok, ok, nL, fO}},
		// The instructor's alone: not even the owner stops it there.
		{routeAdmin, [nPersonas]reason{nY, nY, ok, nY, nY}},
		// The idle warning's button: the owner's, from labd's page.
		{routeTouch, [nPersonas]reason{ok, nY, nY, nY, fO}},
		// Everyone's own sandbox of the lab (its id comes from the cookie).
		{routeReset, [nPersonas]reason{ok, ok, ok, nL, fO}},
		{routeStartStep, [nPersonas]reason{ok, ok, ok, nL, fO}},
		{routeAnswer, [nPersonas]reason{ok, ok, ok, nL, fO}},
	}
	if len(table) != len(rules) {
		t.Fatalf("the table has %d route kinds, rules has %d", len(table), len(rules))
	}
	for _, row := range table {
		for p, want := range row.want {
			a := personas[p]
			a.proof = proofOf(row.k, p)
			if got := decide(row.k, live, a); got != want {
				t.Errorf("kind %d (%s), %s: %v, want %v", row.k, rules[row.k].what, personaNames[p], got, want)
			}
		}
	}

	kept := sandboxState{owner: owner, kept: true}
	gone := sandboxState{owner: owner}
	bearer := asker{instructor: true, bearer: true}
	instrForeign := asker{learner: instr, instructor: true}
	tests := []struct {
		name string
		k    routeKind
		st   sandboxState
		a    asker
		want reason
	}{
		// Ended sandboxes: 404 for everyone, the instructor's files aside.
		{"terminal of an ended sandbox, owner", routeTerminal, gone, personas[pOwner], noSandbox},
		{"terminal of an ended sandbox, stranger", routeTerminal, gone, personas[pNoCookie], noSandbox},
		{"status of an ended sandbox", routeStatus, gone, personas[pOwner], noSandbox},
		{"ports of an ended sandbox, instructor", routePorts, kept, personas[pInstructor], noSandbox},
		{"preview of an ended sandbox", routePreview, gone, personas[pOwner], noSandbox},
		{"capability of an ended sandbox", routePreviewCap, gone, personas[pOwner], noSandbox},
		{"preview host of an ended sandbox", routePreviewHost, gone, personas[pOwner], noSandbox},
		{"token of an ended sandbox", routePreviewHostAuth, gone, personas[pOwner], noSandbox},
		{"kept files, owner", routeFilesRead, kept, personas[pOwner], noSandbox},
		{"kept files, other", routeFilesRead, kept, personas[pOther], noSandbox},
		{"kept files, instructor", routeFilesRead, kept, personas[pInstructor], allowed},
		{"kept files, instructor's token", routeFilesRead, kept, bearer, allowed},
		{"kept upload, instructor", routeFilesWrite, kept, personas[pInstructor], allowed},
		{"kept upload, instructor cookie, foreign origin", routeFilesWrite, kept, instrForeign, foreignOrigin},
		{"kept upload, instructor's token, no origin", routeFilesWrite, kept, bearer, allowed},
		{"no workspace, instructor", routeFilesRead, gone, personas[pInstructor], noSandbox},
		{"registry, no sandbox needed", routeRegistry, gone, personas[pOwner], allowed},
		// Bearer tokens are sent deliberately: no Origin needed.
		{"upload, instructor's token", routeFilesWrite, live, bearer, allowed},
		{"upload, instructor cookie, foreign origin", routeFilesWrite, live, instrForeign, foreignOrigin},
		{"terminal, instructor's token", routeTerminal, live, bearer, notYours},
		// The owner's cookie carries the request even beside a token.
		{"upload, owner with a token, foreign origin", routeFilesWrite, live, asker{learner: owner, instructor: true, bearer: true}, foreignOrigin},
		// Capabilities: page loads need the owner's (or instructor's) cookie.
		{"capability page load, no cookie", routePreviewCap, live, asker{pageLoad: true}, notYours},
		{"capability page load, other", routePreviewCap, live, asker{learner: other, pageLoad: true}, notYours},
		{"capability page load, owner", routePreviewCap, live, asker{learner: owner, pageLoad: true}, allowed},
		{"capability page load, instructor", routePreviewCap, live, asker{learner: instr, instructor: true, pageLoad: true}, allowed},
		{"forged capability, owner", routePreviewCap, live, asker{learner: owner, proof: errProofInvalid}, badProof},
		{"expired capability, instructor", routePreviewCap, live, asker{instructor: true, proof: errProofExpired}, badProof},
		{"preview host, labd's cookie alone", routePreviewHost, live, asker{learner: owner, proof: errProofInvalid}, notYours},
		{"spent token, owner", routePreviewHostAuth, live, asker{proof: errProofUsed}, badProof},
		{"admin, instructor's token, no origin", routeAdmin, gone, bearer, allowed},
		{"admin, instructor cookie, foreign origin", routeAdmin, live, instrForeign, foreignOrigin},
		{"admin of an ended sandbox, instructor", routeAdmin, kept, personas[pInstructor], allowed},
	}
	for _, tt := range tests {
		if got := decide(tt.k, tt.st, tt.a); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestSameOrigin is the one Origin check's table: websocket handshakes
// (no Origin: not a browser) and forms (Origin or Referer required),
// behind a trusted TLS proxy and not.
func TestSameOrigin(t *testing.T) {
	const host = "labs.example.com"
	s := &server{opts: Options{
		AllowedOrigins: []string{"https://other.example", "third.example:8443"},
		TrustedProxies: prefixes("10.0.0.0/8"),
	}}
	req := func(https bool, origin, referer string) *http.Request {
		r := httptest.NewRequest("GET", "http://"+host+"/sandboxes/sb-0123456789abcdef/terminal", nil)
		r.RemoteAddr = "192.0.2.1:5000"
		if https {
			r.RemoteAddr = "10.0.0.1:5000"
			r.Header.Set("X-Forwarded-Proto", "https")
		}
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		if referer != "" {
			r.Header.Set("Referer", referer)
		}
		return r.WithContext(context.WithValue(r.Context(), clientKey{}, s.clientOf(r)))
	}
	tests := []struct {
		https           bool
		origin, referer string
		ws, form        bool
	}{
		{false, "", "", true, false},
		{false, "http://" + host, "", true, true},
		{false, "HTTP://LABS.EXAMPLE.COM", "", true, true},
		// An untrusted proxy may have served the page over TLS.
		{false, "https://" + host, "", true, true},
		{true, "https://" + host, "", true, true},
		{true, "http://" + host, "", false, false},
		{false, "https://other.example", "", true, true},
		{false, "http://other.example", "", false, false},
		{false, "https://third.example:8443", "", true, true},
		{false, "https://evil.example", "", false, false},
		{false, "http://" + host + ".evil.example", "", false, false},
		{false, "http://" + host + ":444", "", false, false},
		{false, "null", "", false, false},
		{false, "ftp://" + host, "", false, false},
		{false, "", "http://" + host + "/labs/hello-shell", true, true},
		{false, "", "http://evil.example/labs/hello-shell", true, false},
		{true, "", "http://" + host + "/labs/hello-shell", true, false},
		{false, "https://evil.example", "http://" + host + "/", false, false},
	}
	for _, tt := range tests {
		r := req(tt.https, tt.origin, tt.referer)
		if got := s.sameOrigin(r, originWebsocket); got != tt.ws {
			t.Errorf("https %v, Origin %q, Referer %q: websocket %v, want %v", tt.https, tt.origin, tt.referer, got, tt.ws)
		}
		if got := s.sameOrigin(r, originForm); got != tt.form {
			t.Errorf("https %v, Origin %q, Referer %q: form %v, want %v", tt.https, tt.origin, tt.referer, got, tt.form)
		}
		if !s.sameOrigin(r, originAny) {
			t.Errorf("https %v, Origin %q: originAny refused", tt.https, tt.origin)
		}
	}
}

// accessServer is a labd with every route that asks access: grading,
// instructor, registry accounts, previews both ways.
func newAccessServer(t *testing.T) *proxyServer {
	t.Helper()
	store, err := accounts.Open(context.Background(), filepath.Join(t.TempDir(), "accounts.db"), accounts.Options{BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return newProxyServer(t, func(o *Options) { o.Accounts = store })
}

// TestAccessRoutes asks every route as each persona over HTTP: the
// routes answer what decide says, in one shape.
func TestAccessRoutes(t *testing.T) {
	s := newAccessServer(t)
	labd := s.labdURL
	clients := [nPersonas]*http.Client{}
	for p := range clients {
		clients[p] = hostClient(t, s.Server, nil)
	}
	clients[pForeign] = clients[pOwner]
	sid := sandboxOf(t, clients[pOwner], labd)
	sandboxOf(t, clients[pOther], labd)
	sandboxOf(t, clients[pInstructor], labd)
	if resp, _ := get(t, clients[pInstructor], labd+"/instructor?token="+proxyToken); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("instructor token: %d", resp.StatusCode)
	}
	originOf := func(p int) string {
		if p == pForeign {
			return "http://evil.example"
		}
		return labd
	}
	send := func(p int, method, u string, body io.Reader, hdr ...string) (int, string, http.Header) {
		t.Helper()
		req, err := http.NewRequest(method, u, body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Origin", originOf(p))
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := clients[p].Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	dial := func(p int, path, proto string) int {
		t.Helper()
		d := websocket.Dialer{Jar: clients[p].Jar, Subprotocols: []string{proto}, HandshakeTimeout: waitTimeout}
		ws, resp, err := d.Dial("ws"+strings.TrimPrefix(labd, "http")+path, http.Header{"Origin": {originOf(p)}})
		if ws != nil {
			ws.Close()
		}
		if resp == nil {
			t.Fatalf("dial %s: %v", path, err)
		}
		return resp.StatusCode
	}
	upload := func(p int, sid string) (int, string, http.Header) {
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		w, _ := mw.CreateFormFile("file", "from-"+strings.ReplaceAll(personaNames[p], " ", "-")+".txt")
		w.Write([]byte("x"))
		mw.Close()
		return send(p, "POST", labd+"/sandboxes/"+sid+"/files?dir=.", &body, "Content-Type", mw.FormDataContentType())
	}
	// The owner's capability URL, which anyone may have copied.
	capped := capURL(t, clients[pOwner], labd, sid, 5001)
	previewHost := fmt.Sprintf("http://5001-%s.%s", sid, s.domain)

	type route struct {
		name string
		do   func(p int) int
		ok   int // status when allowed
	}
	routes := []route{
		{"terminal", func(p int) int { return dial(p, "/sandboxes/"+sid+"/terminal", terminal.Subprotocol) }, http.StatusSwitchingProtocols},
		{"status", func(p int) int { return dial(p, "/sandboxes/"+sid+"/status", StatusSubprotocol) }, http.StatusSwitchingProtocols},
		{"ports box", func(p int) int {
			code, _, _ := send(p, "GET", labd+"/sandboxes/"+sid+"/ports?port=5001", nil)
			return code
		}, http.StatusSeeOther},
		{"path preview entry", func(p int) int {
			code, _, _ := send(p, "GET", labd+"/sandboxes/"+sid+"/ports/5001/", nil, "Sec-Fetch-Mode", "navigate")
			return code
		}, http.StatusFound},
		{"path preview entry POST", func(p int) int {
			code, _, _ := send(p, "POST", labd+"/sandboxes/"+sid+"/ports/5001/", nil)
			return code
		}, http.StatusOK},
		{"path preview page load", func(p int) int {
			code, _, _ := send(p, "GET", capped+"/", nil, "Sec-Fetch-Mode", "navigate")
			return code
		}, http.StatusOK},
		{"host preview", func(p int) int {
			// The persona's own way in: the Ports box's link.
			_, _, h := send(p, "GET", labd+"/sandboxes/"+sid+"/ports?port=5001", nil)
			if loc := h.Get("Location"); loc != "" {
				send(p, "GET", loc, nil)
			}
			code, _, _ := send(p, "GET", previewHost+"/", nil)
			return code
		}, http.StatusOK},
		{"host preview token", func(p int) int {
			_, _, h := send(p, "GET", labd+"/sandboxes/"+sid+"/ports?port=5001", nil)
			tok := ""
			if u, err := url.Parse(h.Get("Location")); err == nil {
				tok = u.Query().Get("token")
			}
			code, _, _ := send(p, "GET", previewHost+authPath+"?token="+tok, nil)
			return code
		}, http.StatusSeeOther},
		{"files list", func(p int) int {
			code, _, _ := send(p, "GET", labd+"/sandboxes/"+sid+"/files?path=.", nil)
			return code
		}, http.StatusOK},
		{"files download", func(p int) int {
			code, _, _ := send(p, "GET", labd+"/sandboxes/"+sid+"/files/archive?path=.", nil)
			return code
		}, http.StatusOK},
		{"files upload", func(p int) int {
			code, _, _ := upload(p, sid)
			return code
		}, http.StatusOK},
		{"registry password", func(p int) int {
			code, _, _ := send(p, "POST", labd+"/registry/password", strings.NewReader("lab=hello-shell"), "Content-Type", "application/x-www-form-urlencoded")
			return code
		}, http.StatusSeeOther},
	}
	const (
		y = true
		n = false
	)
	allowedFor := map[string][nPersonas]bool{ // owner, other, instructor, no cookie, foreign origin
		"terminal":                {y, n, n, n, n},
		"status":                  {y, n, n, n, n},
		"ports box":               {y, n, y, n, y},
		"path preview entry":      {y, n, y, n, y},
		"path preview entry POST": {y, n, y, n, y},
		"path preview page load":  {y, n, y, n, y},
		"host preview":            {y, n, y, n, y},
		"host preview token":      {y, n, y, n, y},
		"files list":              {y, n, y, n, y},
		"files download":          {y, n, y, n, y},
		"files upload":            {y, n, y, n, n},
		"registry password":       {y, y, y, n, n},
	}
	for _, rt := range routes {
		for p := range nPersonas {
			t.Run(rt.name+"/"+personaNames[p], func(t *testing.T) {
				want := http.StatusForbidden
				if allowedFor[rt.name][p] {
					want = rt.ok
				}
				if got := rt.do(p); got != want {
					t.Errorf("%s as %s: %d, want %d", rt.name, personaNames[p], got, want)
				}
			})
		}
	}

	// Refusals have one shape: JSON for scripts, labd's page for page
	// loads, the preview host's own page there.
	code, body, h := send(pOther, "GET", labd+"/sandboxes/"+sid+"/files?path=.", nil)
	var ref refusal
	if err := json.Unmarshal([]byte(body), &ref); err != nil || code != 403 || ref.Status != 403 || ref.Title != "Not your sandbox" ||
		!strings.Contains(ref.Message, "or the instructor") || h.Get("Content-Type") != "application/json" || h.Get("Cache-Control") != "no-store" {
		t.Errorf("script refused: %d %s %q %v, want JSON 403 Not your sandbox", code, h.Get("Content-Type"), body, err)
	}
	code, body, h = send(pOther, "GET", labd+"/sandboxes/"+sid+"/ports/5001/", nil, "Sec-Fetch-Mode", "navigate")
	if code != 403 || !strings.Contains(body, `<main class="error-page"`) || !strings.Contains(body, "Not your sandbox") || h.Get("Content-Security-Policy") != csp {
		t.Errorf("page load refused: %d %q, want labd's error page", code, body)
	}
	code, body, h = send(pOther, "GET", labd+"/sandboxes/"+sid+"/files/download?path=x", nil, "Accept", "text/html,*/*")
	if code != 403 || !strings.Contains(body, `<main class="error-page"`) {
		t.Errorf("page load without Fetch Metadata refused: %d %q, want labd's error page", code, body)
	}
	code, body, h = send(pOther, "GET", previewHost+"/", nil, "Sec-Fetch-Mode", "navigate")
	if code != 403 || !strings.Contains(body, "Ports box of your lab page") || h.Get("Content-Security-Policy") != hostErrorCSP {
		t.Errorf("preview host refused: %d %q, want its own page", code, body)
	}
	code, body, _ = send(pOwner, "GET", labd+"/sandboxes/sb-0000000000000000/terminal", nil)
	if err := json.Unmarshal([]byte(body), &ref); err != nil || code != 404 || ref.Status != 404 || ref.Title != "No such sandbox" {
		t.Errorf("unknown sandbox: %d %q, want JSON 404 No such sandbox", code, body)
	}

	// The sandbox ends: nothing is left of it but the workspace, which
	// only the instructor reaches.
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := s.mgr.Destroy(ctx, sid, sandbox.ReasonAdmin); err != nil {
		t.Fatal(err)
	}
	for _, rt := range routes {
		if rt.name == "registry password" {
			continue
		}
		for p := range nPersonas {
			want := http.StatusNotFound
			if strings.HasPrefix(rt.name, "files") && p == pInstructor {
				want = rt.ok
			}
			if got := rt.do(p); got != want {
				t.Errorf("ended sandbox, %s as %s: %d, want %d", rt.name, personaNames[p], got, want)
			}
		}
	}
}
