package web

import (
	"io/fs"
	"testing"
)

// The terminal's files are embedded whatever built the binary (a plain go
// build included): a lab page without them has no terminal.
func TestVendoredAssetsEmbedded(t *testing.T) {
	for _, f := range []string{"static/vendor/xterm.js", "static/vendor/xterm.css", "static/vendor/addon-fit.js", "static/vendor/addon-web-links.js"} {
		if fi, err := fs.Stat(embedded, f); err != nil || fi.Size() == 0 {
			t.Errorf("web/%s is not embedded (%v): run make assets and commit it", f, err)
		}
	}
}
