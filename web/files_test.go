package web

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/labd/labd/sandbox"
)

const filesToken = "instructor-token-for-files"

// filesServer is a test server with a small upload limit and an
// instructor token, and learner a's sandbox.
type filesServer struct {
	*testServer
	a   *http.Client
	sid string
	ws  string // host path of a's workspace
	sb  sandbox.Sandbox
}

func newFilesServer(t testing.TB, maxUpload int64) *filesServer {
	t.Helper()
	s := newTestServerIdle(t, "", 0, 0, func(o *Options) {
		o.MaxUpload = maxUpload
		o.InstructorToken = filesToken
	})
	a := s.client(t)
	sid := sandboxOf(t, a, s.URL)
	sb, _, ok := waitSandbox(t, s.mgr, sid)
	if !ok {
		t.Fatalf("sandbox %s not running after the lab page", sid)
	}
	return &filesServer{testServer: s, a: a, sid: sid, ws: sb.Workspace(), sb: sb}
}

func (f *filesServer) url(op string, q ...string) string {
	u := f.URL + "/sandboxes/" + f.sid + "/files"
	if op != "" {
		u += "/" + op
	}
	v := url.Values{}
	for i := 0; i+1 < len(q); i += 2 {
		v.Set(q[i], q[i+1])
	}
	if len(v) > 0 {
		u += "?" + v.Encode()
	}
	return u
}

// fetch GETs u with c and returns status and body.
func fetch(t testing.TB, c *http.Client, u string, hdr ...string) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil && resp.StatusCode == 200 {
		t.Fatalf("GET %s: read body: %v", u, err)
	}
	return resp.StatusCode, b, resp.Header
}

type upFile struct {
	name string
	data []byte
}

// upload POSTs files as multipart to dir, as the page does (same Origin).
func (f *filesServer) upload(t testing.TB, c *http.Client, dir string, files []upFile, hdr ...string) (int, string) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, uf := range files {
		w, err := mw.CreateFormFile("file", uf.name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(uf.data)
	}
	mw.Close()
	req, err := http.NewRequest("POST", f.url("", "dir", dir), &body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Origin", f.URL)
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestFilesUploadDownload(t *testing.T) {
	f := newFilesServer(t, 0)
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	code, body := f.upload(t, f.a, "~/sub/deeper", []upFile{
		{"app.py", []byte("print('hello world!')\n")},
		{"big.bin", big},
		{"név ünicode.txt", []byte("ü\n")},
	})
	if code != 200 {
		t.Fatalf("upload = %d %s, want 200", code, body)
	}
	var res uploadResult
	if err := json.Unmarshal([]byte(body), &res); err != nil {
		t.Fatalf("upload answer %q: %v", body, err)
	}
	if res.Dir != "sub/deeper" || len(res.Files) != 3 || res.Files[1].Size != int64(len(big)) {
		t.Errorf("upload answer = %+v, want 3 files in sub/deeper, big.bin of %d bytes", res, len(big))
	}

	// On disk: the bytes, a plain root-owned 0644 file, no temporary left.
	p := filepath.Join(f.ws, "sub/deeper/big.bin")
	got, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("workspace file %s: %d bytes, err %v; want the uploaded %d bytes", p, len(got), err, len(big))
	}
	st, _ := os.Stat(p)
	sys := st.Sys().(*syscall.Stat_t)
	if st.Mode() != 0o644 || sys.Uid != 0 || sys.Gid != 0 {
		t.Errorf("uploaded file mode %v uid %d gid %d, want -rw-r--r-- root root", st.Mode(), sys.Uid, sys.Gid)
	}
	if st, _ := os.Stat(filepath.Join(f.ws, "sub")); st == nil || st.Mode().Perm() != 0o755 {
		t.Errorf("made directory sub: %v, want mode 0755", st)
	}
	assertNoTemp(t, filepath.Join(f.ws, "sub/deeper"))

	// The shell sees it where the learner looks.
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if code, err := f.sb.Exec(ctx, sandbox.ExecSpec{Cmd: []string{"cat", "sub/deeper/app.py"}, Stdout: &out, Stderr: &out}); err != nil || code != 0 {
		t.Errorf("cat in the sandbox: exit %d, err %v: %s", code, err, &out)
	} else if out.String() != "print('hello world!')\n" {
		t.Errorf("cat in the sandbox = %q", &out)
	}

	// Download: same bytes, as an attachment that is never rendered.
	code, dl, h := fetch(t, f.a, f.url("download", "path", "sub/deeper/big.bin"))
	if code != 200 || !bytes.Equal(dl, big) {
		t.Errorf("download big.bin = %d, %d bytes; want 200 and the %d uploaded bytes", code, len(dl), len(big))
	}
	if cd := h.Get("Content-Disposition"); cd != `attachment; filename=big.bin` {
		t.Errorf("Content-Disposition = %q", cd)
	}
	if ct := h.Get("Content-Type"); ct != "application/octet-stream" {
		t.Errorf("Content-Type = %q, want application/octet-stream", ct)
	}
	code, dl, h = fetch(t, f.a, f.url("download", "path", "~/sub/deeper/név ünicode.txt"))
	if code != 200 || string(dl) != "ü\n" || !strings.Contains(h.Get("Content-Disposition"), "filename*=utf-8''n%C3%A9v%20%C3%BCnicode.txt") {
		t.Errorf("download of a non-ASCII name = %d %q, Content-Disposition %q", code, dl, h.Get("Content-Disposition"))
	}
	// Range requests work (resuming a download).
	code, dl, _ = fetch(t, f.a, f.url("download", "path", "sub/deeper/big.bin"), "Range", "bytes=16-31")
	if code != http.StatusPartialContent || string(dl) != "0123456789abcdef" {
		t.Errorf("range download = %d %q, want 206 and 16 bytes", code, dl)
	}

	// A second upload of the same name replaces the file.
	if code, body := f.upload(t, f.a, "sub/deeper", []upFile{{"app.py", []byte("v2\n")}}); code != 200 {
		t.Fatalf("second upload = %d %s", code, body)
	}
	if b, _ := os.ReadFile(filepath.Join(f.ws, "sub/deeper/app.py")); string(b) != "v2\n" {
		t.Errorf("after re-upload app.py = %q, want v2", b)
	}

	// Listing.
	code, lb, _ := fetch(t, f.a, f.url("", "path", "sub/deeper"))
	var list fileList
	if code != 200 || json.Unmarshal(lb, &list) != nil {
		t.Fatalf("list = %d %s", code, lb)
	}
	var names []string
	for _, e := range list.Entries {
		names = append(names, e.Name+":"+e.Type)
	}
	if want := []string{"app.py:file", "big.bin:file", "név ünicode.txt:file"}; !slices.Equal(names, want) || list.Display != "~/sub/deeper" {
		t.Errorf("list = %v (%s), want %v (~/sub/deeper)", names, list.Display, want)
	}

	// Bad requests say what is wrong.
	for _, tc := range []struct {
		u    string
		want int
		msg  string
	}{
		{f.url("download", "path", "sub"), 400, "is a directory"},
		{f.url("download", "path", "nope.txt"), 404, "no such file"},
		{f.url("download", "path", "/etc/passwd"), 400, "absolute"},
		{f.url("download", "path", "sub/../../etc/passwd"), 400, "“..”"},
		{f.url("archive", "path", ".", "format", "rar"), 400, "unknown archive format"},
		{f.url("", "path", "sub/deeper/app.py"), 400, "not a directory"},
	} {
		code, b, _ := fetch(t, f.a, tc.u)
		if code != tc.want || !strings.Contains(string(b), tc.msg) {
			t.Errorf("GET %s = %d %q, want %d mentioning %q", tc.u, code, b, tc.want, tc.msg)
		}
	}
}

func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), uploadTempPrefix) {
			t.Errorf("temporary upload file %s left in %s", e.Name(), dir)
		}
	}
}

// plantWorkspace fills ws with a tree holding every kind of file, and
// returns a secret file outside the workspace.
func plantWorkspace(t *testing.T, ws string) (secret string) {
	t.Helper()
	outside := t.TempDir()
	secret = filepath.Join(outside, "secret.txt")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(secret, []byte("SECRET-OUTSIDE"), 0o600))
	must(os.MkdirAll(filepath.Join(ws, "proj/src"), 0o755))
	must(os.WriteFile(filepath.Join(ws, "proj/Dockerfile"), []byte("FROM python:3\n"), 0o644))
	must(os.WriteFile(filepath.Join(ws, "proj/src/run.sh"), []byte("#!/bin/sh\necho hi\n"), 0o755))
	must(os.Symlink("src/run.sh", filepath.Join(ws, "proj/inside-link")))
	must(os.Symlink("/etc/passwd", filepath.Join(ws, "proj/passwd-link")))
	must(os.Symlink(outside, filepath.Join(ws, "proj/outside-dir")))
	must(os.Symlink("../../../../../../../../../../..", filepath.Join(ws, "proj/up")))
	must(os.Symlink("/proc/self/root/etc", filepath.Join(ws, "proj/magic")))
	must(unix.Mkfifo(filepath.Join(ws, "proj/fifo"), 0o644))
	// What the learner can make in the container: a node of a host disk
	// (opening it is denied there, not here).
	must(unix.Mknod(filepath.Join(ws, "proj/disk"), unix.S_IFBLK|0o600, int(unix.Mkdev(7, 0))))
	return secret
}

func TestFilesArchive(t *testing.T) {
	f := newFilesServer(t, 0)
	plantWorkspace(t, f.ws)
	want := []string{
		"proj/", "proj/Dockerfile", "proj/inside-link -> src/run.sh", "proj/magic -> /proc/self/root/etc",
		"proj/outside-dir -> " + "OUTSIDE", "proj/passwd-link -> /etc/passwd", "proj/src/", "proj/src/run.sh",
		"proj/up -> ../../../../../../../../../../..",
	}

	code, tgz, h := fetch(t, f.a, f.url("archive", "path", "proj"))
	if code != 200 || h.Get("Content-Type") != "application/gzip" || h.Get("Content-Disposition") != "attachment; filename=proj.tar.gz" {
		t.Fatalf("archive = %d %s %q %q", code, tgz, h.Get("Content-Type"), h.Get("Content-Disposition"))
	}
	zr, err := gzip.NewReader(bytes.NewReader(tgz))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var got []string
	contents := map[string]string{}
	for {
		hd, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("tar: %v", err)
		}
		e := hd.Name
		switch hd.Typeflag {
		case tar.TypeSymlink:
			e += " -> " + outsideName(hd.Linkname)
		case tar.TypeReg:
			b, _ := io.ReadAll(tr)
			contents[hd.Name] = string(b)
			if hd.Name == "proj/src/run.sh" && hd.Mode != 0o755 {
				t.Errorf("run.sh mode in tar = %o, want 755", hd.Mode)
			}
		case tar.TypeDir:
		default:
			t.Errorf("tar entry %s of type %c: devices and FIFOs must stay out", hd.Name, hd.Typeflag)
		}
		got = append(got, e)
	}
	if !slices.Equal(got, want) {
		t.Errorf("tar listing:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if contents["proj/src/run.sh"] != "#!/bin/sh\necho hi\n" || contents["proj/Dockerfile"] != "FROM python:3\n" {
		t.Errorf("tar contents = %q", contents)
	}

	// The same as zip.
	code, zb, h := fetch(t, f.a, f.url("archive", "path", "proj", "format", "zip"))
	if code != 200 || h.Get("Content-Type") != "application/zip" {
		t.Fatalf("zip archive = %d %q", code, h.Get("Content-Type"))
	}
	zrd, err := zip.NewReader(bytes.NewReader(zb), int64(len(zb)))
	if err != nil {
		t.Fatalf("zip: %v", err)
	}
	got = nil
	for _, zf := range zrd.File {
		e := zf.Name
		if zf.Mode()&os.ModeSymlink != 0 {
			rc, _ := zf.Open()
			b, _ := io.ReadAll(rc)
			rc.Close()
			e += " -> " + outsideName(string(b))
		}
		got = append(got, e)
	}
	if !slices.Equal(got, want) {
		t.Errorf("zip listing:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// The whole workspace is named after it.
	code, _, h = fetch(t, f.a, f.url("archive"))
	if code != 200 || h.Get("Content-Disposition") != "attachment; filename=workspace.tar.gz" {
		t.Errorf("whole workspace archive = %d %q", code, h.Get("Content-Disposition"))
	}
}

// outsideName hides the test's temporary directory in a symlink target.
func outsideName(target string) string {
	if strings.HasPrefix(target, os.TempDir()) {
		return "OUTSIDE"
	}
	return target
}

func TestFilesNoEscape(t *testing.T) {
	f := newFilesServer(t, 0)
	secret := plantWorkspace(t, f.ws)
	outside := filepath.Dir(secret)
	for _, tc := range []struct {
		op, path string
		want     int
	}{
		{"download", "proj/passwd-link", 403},
		{"download", "proj/outside-dir/secret.txt", 403},
		{"download", "proj/up/etc/passwd", 403},
		{"download", "proj/magic/passwd", 403},
		{"download", "proj/disk", 400},
		{"download", "proj/fifo", 400}, // must not hang waiting for a writer
		{"", "proj/outside-dir", 403},
		{"", "proj/up", 403},
		{"archive", "proj/outside-dir", 403},
		{"archive", "proj/up", 403},
	} {
		code, b, _ := fetch(t, f.a, f.url(tc.op, "path", tc.path))
		if code != tc.want || bytes.Contains(b, []byte("SECRET")) || bytes.Contains(b, []byte("root:x:0")) {
			t.Errorf("GET %s?path=%s = %d %q, want %d and nothing from outside", tc.op, tc.path, code, b, tc.want)
		}
	}
	// A link that stays inside is followed.
	if code, b, _ := fetch(t, f.a, f.url("download", "path", "proj/inside-link")); code != 200 || string(b) != "#!/bin/sh\necho hi\n" {
		t.Errorf("download through an inside link = %d %q", code, b)
	}

	// Uploads through a symlinked directory stay in.
	for _, dir := range []string{"proj/outside-dir", "proj/up/tmp", "proj/outside-dir/new"} {
		code, body := f.upload(t, f.a, dir, []upFile{{"planted.txt", []byte("x")}})
		if code != 403 {
			t.Errorf("upload into %s = %d %s, want 403", dir, code, body)
		}
	}
	// A file name with a path in it is refused, not resolved (Go's
	// multipart keeps only the base name, so send the part by hand).
	var body bytes.Buffer
	body.WriteString("--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"..\"\r\n\r\nx\r\n--b--\r\n")
	req, _ := http.NewRequest("POST", f.url(""), &body)
	req.Header.Set("Content-Type", "multipart/form-data; boundary=b")
	req.Header.Set("Origin", f.URL)
	resp, err := f.a.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("upload named .. = %d, want 400", resp.StatusCode)
	}
	ents, _ := os.ReadDir(outside)
	if len(ents) != 1 {
		t.Errorf("directory outside the workspace now holds %d entries, want only secret.txt", len(ents))
	}
	// Uploading over a symlink replaces the link, not its target.
	if code, body := f.upload(t, f.a, "proj", []upFile{{"passwd-link", []byte("mine\n")}}); code != 200 {
		t.Errorf("upload over a symlink = %d %s", code, body)
	}
	if st, err := os.Lstat(filepath.Join(f.ws, "proj/passwd-link")); err != nil || !st.Mode().IsRegular() {
		t.Errorf("after upload over the link: %v %v, want a regular file", st, err)
	}
	if b, _ := os.ReadFile("/etc/passwd"); bytes.Equal(b, []byte("mine\n")) {
		t.Fatal("upload wrote through a symlink to /etc/passwd")
	}
}

// TestFilesSwapRace swaps a file and a directory between real ones and
// symlinks leading out while downloads, archives and uploads run: none
// may ever reach outside.
func TestFilesSwapRace(t *testing.T) {
	f := newFilesServer(t, 0)
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "f"), []byte("SECRET-OUTSIDE"), 0o600); err != nil {
		t.Fatal(err)
	}
	real := filepath.Join(f.ws, "real")
	os.MkdirAll(real, 0o755)
	os.WriteFile(filepath.Join(real, "f"), []byte("inside"), 0o644)
	os.WriteFile(filepath.Join(f.ws, "file"), []byte("inside"), 0o644)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var swaps atomic.Int64
	stopped := false
	halt := func() {
		if !stopped {
			stopped = true
			close(stop)
			wg.Wait()
		}
	}
	defer halt()
	wg.Add(1)
	go func() {
		defer wg.Done()
		runtime.LockOSThread() // a thread of its own: swaps keep coming
		d, fl := filepath.Join(f.ws, "d"), filepath.Join(f.ws, "file")
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			tmpD, tmpF := d+".new", fl+".new"
			os.Remove(tmpD)
			os.Remove(tmpF)
			if i%2 == 0 {
				os.Symlink(outside, tmpD)
				os.Symlink(filepath.Join(outside, "f"), tmpF)
			} else {
				os.Symlink("real", tmpD)
				os.WriteFile(tmpF, []byte("inside"), 0o644)
			}
			os.Rename(tmpD, d) // atomic: the name is always there
			os.Rename(tmpF, fl)
			swaps.Add(1)
		}
	}()
	var ok200, refused atomic.Int64
	// Enough rounds that both states were seen many times, bounded.
	deadline := time.Now().Add(waitTimeout)
	for n := 0; (n < 300 || ok200.Load() < 30 || refused.Load() < 30) && time.Now().Before(deadline); n++ {
		for _, u := range []string{
			f.url("download", "path", "d/f"),
			f.url("download", "path", "file"),
			f.url("archive", "path", "d"),
		} {
			code, b, _ := fetch(t, f.a, u)
			if bytes.Contains(b, []byte("SECRET")) {
				t.Fatalf("GET %s returned the outside file's content (status %d)", u, code)
			}
			if u == f.url("archive", "path", "d") && code == 200 {
				zr, err := gzip.NewReader(bytes.NewReader(b))
				if err != nil {
					t.Fatalf("archive of d: %v", err)
				}
				raw, _ := io.ReadAll(zr)
				if bytes.Contains(raw, []byte("SECRET")) {
					t.Fatal("archive of d holds the outside file's content")
				}
			}
			switch code {
			case 200:
				ok200.Add(1)
			case 403:
				refused.Add(1)
			}
		}
		f.upload(t, f.a, "d", []upFile{{"planted.txt", []byte("x")}})
	}
	halt()
	if _, err := os.Stat(filepath.Join(outside, "planted.txt")); err == nil {
		t.Fatal("an upload into d landed outside the workspace")
	}
	t.Logf("%d swaps, %d reads inside, %d refused, none reached outside", swaps.Load(), ok200.Load(), refused.Load())
	if ok200.Load() == 0 || refused.Load() == 0 {
		t.Error("the requests did not see both states of the swapped names: the race proves nothing")
	}
}

func TestFilesAccess(t *testing.T) {
	f := newFilesServer(t, 0)
	os.WriteFile(filepath.Join(f.ws, "a.txt"), []byte("mine"), 0o644)
	b := f.client(t)
	sandboxOf(t, b, f.URL) // b is a learner with a sandbox of their own
	anon := &http.Client{Timeout: waitTimeout}
	for _, c := range []struct {
		name string
		c    *http.Client
	}{{"another learner", b}, {"no cookie", anon}} {
		for _, u := range []string{f.url("", "path", "."), f.url("download", "path", "a.txt"), f.url("archive")} {
			if code, body, _ := fetch(t, c.c, u); code != 403 || bytes.Contains(body, []byte("mine")) {
				t.Errorf("%s: GET %s = %d %q, want 403", c.name, u, code, body)
			}
		}
		if code, body := f.upload(t, c.c, ".", []upFile{{"x.txt", []byte("x")}}); code != 403 {
			t.Errorf("%s: upload = %d %s, want 403", c.name, code, body)
		}
	}
	if _, err := os.Stat(filepath.Join(f.ws, "x.txt")); err == nil {
		t.Error("a refused upload wrote x.txt")
	}
	// Unknown sandbox.
	if code, _, _ := fetch(t, f.a, f.URL+"/sandboxes/sb-0000000000000000/files/download?path=a.txt"); code != 404 {
		t.Errorf("unknown sandbox = %d, want 404", code)
	}
	// The owner's cookie, but from another site or with no origin at all.
	for _, origin := range []string{"http://evil.example", ""} {
		if code, body := f.upload(t, f.a, ".", []upFile{{"x.txt", []byte("x")}}, "Origin", origin); code != 403 {
			t.Errorf("upload with Origin %q = %d %s, want 403", origin, code, body)
		}
	}
	// The instructor's token: reads and uploads (no Origin: a script).
	if code, body, _ := fetch(t, anon, f.url("download", "path", "a.txt"), "Authorization", "Bearer "+filesToken); code != 200 || string(body) != "mine" {
		t.Errorf("instructor download = %d %q", code, body)
	}
	if code, _, _ := fetch(t, anon, f.url("download", "path", "a.txt"), "Authorization", "Bearer wrong"); code != 403 {
		t.Errorf("wrong token download = %d, want 403", code)
	}
	if code, body := f.upload(t, anon, "from-teacher", []upFile{{"hint.txt", []byte("h")}}, "Authorization", "Bearer "+filesToken, "Origin", ""); code != 200 {
		t.Errorf("instructor upload = %d %s", code, body)
	}
	// The instructor reaches the kept workspace of an ended sandbox.
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := f.mgr.Destroy(ctx, f.sid, sandbox.ReasonAdmin); err != nil {
		t.Fatal(err)
	}
	if code, body, _ := fetch(t, anon, f.url("download", "path", "from-teacher/hint.txt"), "Authorization", "Bearer "+filesToken); code != 200 || string(body) != "h" {
		t.Errorf("instructor download after the sandbox ended = %d %q", code, body)
	}
	if code, _, _ := fetch(t, f.a, f.url("download", "path", "a.txt")); code != 404 {
		t.Errorf("learner download after the sandbox ended = %d, want 404", code)
	}
}

func TestFilesUploadTooLarge(t *testing.T) {
	const limit = 64 << 10
	f := newFilesServer(t, limit)
	small := upFile{"small.txt", []byte("small")}
	for _, tc := range []struct {
		name  string
		files []upFile
	}{
		{"one file over the limit", []upFile{{"big.bin", make([]byte, limit+1)}}},
		// The first file fits, the second goes over: neither stays.
		{"second file over the limit", []upFile{small, {"big.bin", make([]byte, limit)}}},
		// Refused from Content-Length alone, before reading.
		{"body far over the limit", []upFile{small, {"huge.bin", make([]byte, 3<<20)}}},
	} {
		code, body := f.upload(t, f.a, "up", tc.files)
		if code != http.StatusRequestEntityTooLarge || !strings.Contains(body, "upload too large") || !strings.Contains(body, "0.1 MiB") {
			t.Errorf("%s: upload = %d %q, want 413 naming the limit", tc.name, code, body)
		}
		ents, _ := os.ReadDir(filepath.Join(f.ws, "up"))
		var left []string
		for _, e := range ents {
			left = append(left, e.Name())
		}
		sort.Strings(left)
		if len(left) != 0 {
			t.Errorf("%s: left in the workspace: %v, want nothing", tc.name, left)
		}
	}
	// Exactly the limit is fine.
	if code, body := f.upload(t, f.a, "up", []upFile{{"fits.bin", make([]byte, limit)}}); code != 200 {
		t.Errorf("upload of exactly the limit = %d %s, want 200", code, body)
	}
}

// BenchmarkFiles measures a 16 MiB upload and the tar.gz of a workspace
// of 256 files of 64 KiB over real HTTP.
func BenchmarkFiles(b *testing.B) {
	f := newFilesServer(b, 0)
	data := make([]byte, 64<<10)
	for i := range data {
		data[i] = byte(i * 7)
	}
	for i := range 256 {
		os.MkdirAll(filepath.Join(f.ws, "tree", fmt.Sprint(i%16)), 0o755)
		os.WriteFile(filepath.Join(f.ws, "tree", fmt.Sprint(i%16), fmt.Sprint(i)), data, 0o644)
	}
	b.Run("upload-16MiB", func(b *testing.B) {
		big := []upFile{{"big.bin", bytes.Repeat(data, 256)}}
		b.SetBytes(16 << 20)
		for b.Loop() {
			if code, body := f.upload(b, f.a, "bench", big); code != 200 {
				b.Fatalf("upload = %d %s", code, body)
			}
		}
	})
	b.Run("archive-tar.gz-16MiB", func(b *testing.B) {
		b.SetBytes(16 << 20)
		for b.Loop() {
			if code, body, _ := fetch(b, f.a, f.url("archive", "path", "tree")); code != 200 || len(body) == 0 {
				b.Fatalf("archive = %d", code)
			}
		}
	})
}
