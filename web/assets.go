package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

// The whole static directory is embedded, so the package builds while
// static/vendor holds only its README (before `make assets`).
//
//go:embed templates static
var embedded embed.FS

// staticFiles serves the embedded static directory plus generated files
// (the code highlighting stylesheet). Every URL the pages emit carries
// ?v=<content hash>, so such requests are cached for a year; a request
// without the current version revalidates with the ETag.
type staticFiles struct {
	files map[string]staticFile
}

type staticFile struct {
	data    []byte
	version string // content hash prefix
}

func newStaticFiles(generated map[string][]byte) (*staticFiles, error) {
	s := &staticFiles{files: map[string]staticFile{}}
	sub, err := fs.Sub(embedded, "static")
	if err != nil {
		return nil, err
	}
	err = fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(sub, p)
		if err != nil {
			return err
		}
		s.add(p, b)
		return nil
	})
	if err != nil {
		return nil, err
	}
	for name, b := range generated {
		s.add(name, b)
	}
	return s, nil
}

func (s *staticFiles) add(name string, b []byte) {
	sum := sha256.Sum256(b)
	s.files[name] = staticFile{data: b, version: hex.EncodeToString(sum[:])[:12]}
}

// has reports whether name is served.
func (s *staticFiles) has(name string) bool {
	_, ok := s.files[name]
	return ok
}

// url is the template function "asset": a versioned URL for a static file.
func (s *staticFiles) url(name string) string {
	f, ok := s.files[name]
	if !ok {
		return "/static/" + name
	}
	return "/static/" + name + "?v=" + f.version
}

func (s *staticFiles) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(path.Clean("/"+r.PathValue("path")), "/")
	f, ok := s.files[name]
	if !ok {
		http.NotFound(w, r)
		return
	}
	if r.URL.Query().Get("v") == f.version {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		w.Header().Set("Cache-Control", "no-cache")
	}
	w.Header().Set("ETag", `"`+f.version+`"`)
	// Embedded files have no modification time; ServeContent picks the
	// content type from the extension and answers If-None-Match.
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(f.data))
}
