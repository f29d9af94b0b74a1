package enginetest

import (
	"archive/tar"
	"os"
	"testing"
	"time"
)

// writeTestTar writes a small archive for ADD's auto-extraction.
func writeTestTar(t *testing.T, p string) {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	mt := time.Unix(1700000000, 0)
	for _, e := range []struct {
		name string
		mode int64
		uid  int
		body string
		typ  byte
	}{
		{"top/", 0o755, 0, "", tar.TypeDir},
		{"top/file.txt", 0o640, 1234, "inside\n", tar.TypeReg},
		{"top/exec", 0o755, 0, "#!/bin/sh\n", tar.TypeReg},
	} {
		h := &tar.Header{Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.uid, Size: int64(len(e.body)), Typeflag: e.typ, ModTime: mt}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}
