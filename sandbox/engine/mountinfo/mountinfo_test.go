package mountinfo

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{
		`/a\040b`:   "/a b",
		`/a\011b`:   "/a\tb",
		`/a\134b`:   `/a\b`,
		`/plain/x`:  "/plain/x",
		`/n\012ewl`: "/n\newl",
	} {
		if got := unescape(in); got != want {
			t.Errorf("unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestUnderAndUnmount(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("needs root to mount; CI runs as root")
	}
	dir := t.TempDir()
	outer := filepath.Join(dir, "with space")
	inner := filepath.Join(outer, "in")
	if err := os.MkdirAll(outer, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", outer, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(inner, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", inner, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	if got, want := Under(dir), []string{inner, outer}; !slices.Equal(got, want) {
		t.Fatalf("Under = %q, want %q (deepest first)", got, want)
	}
	UnmountUnder(dir)
	if got := Under(dir); len(got) != 0 {
		t.Fatalf("after UnmountUnder, Under = %q", got)
	}
}
