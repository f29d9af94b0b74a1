package labs

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestWriteStarter(t *testing.T) {
	lab, problems := Load("testdata/labs/starter")
	if len(problems) > 0 || lab.Starter == "" {
		t.Fatalf("Load = starter %q, %v", lab.Starter, problems)
	}
	var buf bytes.Buffer
	if err := lab.WriteStarter(&buf); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s owned by %d:%d, want root", h.Name, h.Uid, h.Gid)
		}
		b, _ := io.ReadAll(tr)
		got[h.Name] = string(b) + "|" + h.Linkname + "|" + os.FileMode(h.Mode).Perm().String()
	}
	want := map[string]string{
		"README.txt": "Start here.\n||-rw-r--r--",
		"app/":       "||-rwxr-xr-x",
		"app/app.py": "print(\"hello\")\n||-rwxr-xr-x",
		"main.py":    "|app/app.py|-rwxrwxrwx",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("tar holds %d entries, want %d: %v", len(got), len(want), got)
	}
	// Without starter files nothing is written.
	buf.Reset()
	if err := (&Lab{}).WriteStarter(&buf); err != nil || buf.Len() != 0 {
		t.Errorf("no starter: %d bytes, %v", buf.Len(), err)
	}
}

// Device nodes, FIFOs and sockets cannot start a workspace: labd would
// copy them into every learner's sandbox.
func TestStarterRefusesSpecialFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "fifo-lab")
	ws := filepath.Join(dir, StarterDir)
	if err := os.MkdirAll(ws, 0o755); err != nil {
		t.Fatal(err)
	}
	src, _ := os.ReadFile("testdata/labs/starter/lab.md")
	if err := os.WriteFile(filepath.Join(dir, "lab.md"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(ws, "pipe"), 0o644); err != nil {
		t.Fatal(err)
	}
	lab, problems := Load(dir)
	if lab.Starter != "" || len(problems) != 1 || !strings.Contains(problems[0].String(), "pipe: starter files: only folders, files and symlinks") {
		t.Errorf("Load = starter %q, %v", lab.Starter, problems)
	}
}
