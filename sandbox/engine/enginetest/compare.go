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
	"sort"
	"strconv"
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
	return e.Save(t, image).Layers
}

// Saved is an image as `docker save` writes it.
type Saved struct {
	Config []byte    // the config blob, exact bytes
	Layers [][]Entry // each layer's entries, bottom layer first
}

// Save runs `docker save` of image and reads its config and layers.
func (e *Engine) Save(t testing.TB, image string) Saved {
	t.Helper()
	dir := t.TempDir()
	tarPath := filepath.Join(dir, "img.tar")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if r := e.Docker(ctx, DockerCLI20, "", nil, "save", "-o", tarPath, image); r.Code != 0 {
		t.Fatalf("%s: save %s: %s", e.Name, image, r.Stderr)
	}
	files := readTar(t, tarPath)
	var manifest []struct {
		Config string
		Layers []string
	}
	if err := json.Unmarshal(files["manifest.json"], &manifest); err != nil || len(manifest) != 1 {
		t.Fatalf("%s: manifest.json of %s: %v (%d entries)", e.Name, image, err, len(manifest))
	}
	cfg, ok := files[manifest[0].Config]
	if !ok {
		t.Fatalf("%s: save %s: config %q missing from the archive", e.Name, image, manifest[0].Config)
	}
	out := Saved{Config: cfg}
	for _, l := range manifest[0].Layers {
		out.Layers = append(out.Layers, tarEntries(t, files[l]))
	}
	return out
}

// InspectImages runs one `docker image inspect` for refs and returns the
// API's documents, decoded without a schema: a field one engine sends and
// the other omits must show up in a comparison, which typed structs would
// hide.
func (e *Engine) InspectImages(t testing.TB, refs ...string) []map[string]any {
	t.Helper()
	out := e.Must(t, DockerCLI20, "", append([]string{"image", "inspect"}, refs...)...)
	var docs []map[string]any
	if err := decodeJSON([]byte(out), &docs); err != nil {
		t.Fatalf("%s: image inspect %v: %v\n%s", e.Name, refs, err, out)
	}
	if len(docs) != len(refs) {
		t.Fatalf("%s: image inspect %v: %d documents", e.Name, refs, len(docs))
	}
	return docs
}

// HistoryIDs returns the image ID of each `docker history` row, top row
// first ("<missing>" where the engine has no image for the step).
func (e *Engine) HistoryIDs(t testing.TB, image string) []string {
	t.Helper()
	out := e.Must(t, DockerCLI20, "", "history", "--no-trunc", "--format", "{{.ID}}", image)
	return strings.Split(strings.TrimSpace(out), "\n")
}

// ServerVersion is the engine's version as `docker version` reports it.
func (e *Engine) ServerVersion(t testing.TB) string {
	t.Helper()
	return strings.TrimSpace(e.Must(t, DockerCLI20, "", "version", "--format", "{{.Server.Version}}"))
}

// TagTarget returns the image ID ref points at, "" when it names no image.
func (e *Engine) TagTarget(t testing.TB, ref string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := e.Docker(ctx, DockerCLI20, "", nil, "image", "inspect", "--format", "{{.Id}}", ref)
	if r.Code != 0 {
		if strings.Contains(r.Stderr, "No such image") {
			return ""
		}
		t.Fatalf("%s: image inspect %s: exit %d: %s", e.Name, ref, r.Code, r.Stderr)
	}
	return strings.TrimSpace(r.Stdout)
}

// decodeJSON keeps numbers as json.Number: sizes and durations must
// compare exactly, not as float64.
func decodeJSON(b []byte, v any) error {
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.UseNumber()
	return d.Decode(v)
}

// DocNormalizer rewrites an image document (inspect output or config
// JSON) so that two engines' documents for the same build compare equal
// exactly when they agree on everything that is not per run or per host.
type DocNormalizer struct {
	// Names maps IDs that must differ between engines (image IDs, which
	// hash creation times; diff IDs of layers holding files with build-time
	// mtimes) to names both engines share, such as "<history 1>".
	Names map[string]string
	// Version is the engine's own version: what it records as the
	// config's docker_version.
	Version string
}

var hex64 = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Normalize returns a normalized copy of doc.
func (n DocNormalizer) Normalize(doc map[string]any) map[string]any {
	// The build step's container: a fresh random ID per step and engine.
	ctr, _ := doc["Container"].(string)
	if c, ok := doc["container"].(string); ok {
		ctr = c
	}
	return n.walk("", doc, ctr).(map[string]any)
}

func (n DocNormalizer) walk(path string, v any, ctr string) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			p := k
			if path != "" {
				p = path + "." + k
			}
			// Paths of the engine's own storage on the host.
			if p == "GraphDriver.Data" {
				continue
			}
			out[k] = n.walk(p, x, ctr)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = n.walk(path+"[]", x, ctr)
		}
		return out
	case string:
		if name, ok := n.Names[v]; ok {
			return name
		}
		switch path {
		case "Created", "Metadata.LastTagTime", "created", "history[].created":
			// Build times. The zero time (an image never tagged) is
			// the same on both and stays.
			if tm, err := time.Parse(time.RFC3339Nano, v); err == nil && !tm.IsZero() {
				return "<time>"
			}
		case "Container", "container":
			if hex64.MatchString(v) {
				return "<build container>"
			}
		case "ContainerConfig.Hostname", "container_config.Hostname":
			// dockerd names the step's container host after its ID.
			if len(ctr) >= 12 && v == ctr[:12] {
				return "<build container[:12]>"
			}
		case "DockerVersion", "docker_version":
			if v == n.Version {
				return "<engine version>"
			}
		}
		return v
	}
	return v
}

// DiffDocs compares two decoded JSON documents and returns one line per
// path where they differ (none when equal), sorted:
// "path: labd X, dockerd Y", where X or Y may be <absent>.
func DiffDocs(labd, dockerd any) []string {
	l, d := map[string]string{}, map[string]string{}
	flatten("", labd, l)
	flatten("", dockerd, d)
	keys := map[string]bool{}
	for k := range l {
		keys[k] = true
	}
	for k := range d {
		keys[k] = true
	}
	var lines []string
	for k := range keys {
		lv, lok := l[k]
		dv, dok := d[k]
		if lok && dok && lv == dv {
			continue
		}
		if !lok {
			lv = "<absent>"
		}
		if !dok {
			dv = "<absent>"
		}
		lines = append(lines, fmt.Sprintf("  %s: labd %s, dockerd %s", k, lv, dv))
	}
	sort.Strings(lines)
	return lines
}

// flatten records every leaf (and every empty object or array, and null)
// of v under its path, with its JSON encoding as the value.
func flatten(path string, v any, out map[string]string) {
	switch v := v.(type) {
	case map[string]any:
		if len(v) == 0 {
			out[path] = "{}"
			return
		}
		for k, x := range v {
			p := k
			if strings.ContainsAny(k, ". ") {
				p = strconv.Quote(k)
			}
			if path != "" {
				p = path + "." + p
			}
			flatten(p, x, out)
		}
	case []any:
		if len(v) == 0 {
			out[path] = "[]"
			return
		}
		for i, x := range v {
			flatten(fmt.Sprintf("%s[%d]", path, i), x, out)
		}
	default:
		// Unescaped: the normalizer's "<history 1>" stays readable.
		var b strings.Builder
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			out[path] = fmt.Sprintf("<%v>", err)
			return
		}
		out[path] = strings.TrimSuffix(b.String(), "\n")
	}
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
