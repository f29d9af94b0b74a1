package enginetest

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var (
	idAfter   = regexp.MustCompile(`( ---> |Running in |Removing intermediate container |Successfully built )[0-9a-f]{12}`)
	auxID     = regexp.MustCompile(`sha256:[0-9a-f]{64}`)
	sendingRE = regexp.MustCompile(`(?m)^Sending build context to Docker daemon.*\n`)
)

// NormalizeBuild replaces the IDs in legacy build output (they differ
// between engines because of timestamps) with placeholders.
func NormalizeBuild(out string) string {
	out = idAfter.ReplaceAllString(out, "${1}<id>")
	out = auxID.ReplaceAllString(out, "sha256:<id>")
	return out
}

// WriteContext creates a build context from files (name → content); a
// name ending in "|0755" sets the mode, "@link" entries make symlinks
// (content is the target).
func WriteContext(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		mode := os.FileMode(0o644)
		if n, m, ok := strings.Cut(name, "|"); ok {
			var v uint32
			fmt.Sscanf(m, "%o", &v)
			name, mode = n, os.FileMode(v)
		}
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(name, "@link") {
			if err := os.Symlink(content, strings.TrimSuffix(p, "@link")); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if strings.HasSuffix(name, "/") {
			if err := os.MkdirAll(p, mode|0o700); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// Entry is one layer tar entry without its times.
type Entry struct {
	Name     string
	Mode     int64
	Uid, Gid int
	Size     int64
	Type     byte
	Linkname string
	Sum      string
}

func (e Entry) String() string {
	return fmt.Sprintf("%s mode=%o uid=%d gid=%d size=%d type=%c link=%q sum=%.12s", e.Name, e.Mode, e.Uid, e.Gid, e.Size, e.Type, e.Linkname, e.Sum)
}

// Layers saves image from the engine and returns each layer's entries,
// bottom layer first.
func (e *Engine) Layers(t testing.TB, image string) [][]Entry {
	t.Helper()
	dir := t.TempDir()
	tarPath := filepath.Join(dir, "img.tar")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if r := e.Docker(ctx, DockerCLI20, "", nil, "save", "-o", tarPath, image); r.Code != 0 {
		t.Fatalf("%s: save %s: %s", e.Name, image, r.Stderr)
	}
	files := readTar(t, tarPath)
	var manifest []struct{ Layers []string }
	if err := json.Unmarshal(files["manifest.json"], &manifest); err != nil || len(manifest) != 1 {
		t.Fatalf("%s: manifest.json: %v", e.Name, err)
	}
	var out [][]Entry
	for _, l := range manifest[0].Layers {
		out = append(out, tarEntries(t, files[l]))
	}
	return out
}

func readTar(t testing.TB, p string) map[string][]byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = b
	}
}

func tarEntries(t testing.TB, b []byte) []Entry {
	t.Helper()
	var out []Entry
	tr := tar.NewReader(strings.NewReader(string(b)))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.New()
		if _, err := io.Copy(sum, tr); err != nil {
			t.Fatal(err)
		}
		out = append(out, Entry{Name: h.Name, Mode: h.Mode, Uid: h.Uid, Gid: h.Gid, Size: h.Size, Type: h.Typeflag, Linkname: h.Linkname, Sum: hex.EncodeToString(sum.Sum(nil))})
	}
}

// History returns `docker history` rows as "created-by | size".
func (e *Engine) History(t testing.TB, image string) []string {
	t.Helper()
	out := e.Must(t, DockerCLI20, "", "history", "--no-trunc", "--format", "{{.CreatedBy}} | {{.Size}}", image)
	return strings.Split(strings.TrimSpace(out), "\n")
}
