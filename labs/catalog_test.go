package labs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func labText(title, stepBody string) string {
	return fmt.Sprintf("---\ntitle: %s\nsummary: s\nduration: 5 min\nlevel: beginner\n---\nIntro.\n\n## Step one\n\n%s\n", title, stepBody)
}

func writeLab(t testing.TB, root, id, text string) string {
	t.Helper()
	dir := filepath.Join(root, id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "lab.md"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestCatalogReloadsEditedLab(t *testing.T) {
	root := t.TempDir()
	dir := writeLab(t, root, "a", labText("First", "Old body."))
	c := NewCatalog(root)
	lab, err := c.Get("a")
	if err != nil {
		t.Fatalf("Get(a) error = %v", err)
	}
	if lab.Title != "First" || !strings.Contains(string(lab.Steps[0].HTML), "Old body.") {
		t.Fatalf("Get(a) = %q %q, want the first version", lab.Title, lab.Steps[0].HTML)
	}
	again, _ := c.Get("a")
	if again != lab {
		t.Error("Get(a) on an unchanged lab rendered it again, want the cached *Lab")
	}

	// Same size, so only the mtime tells the edit apart; set it explicitly
	// because a fast edit can land in the same filesystem tick.
	path := filepath.Join(dir, "lab.md")
	if err := os.WriteFile(path, []byte(labText("Second", "New body.")), 0o644); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
	lab, err = c.Get("a")
	if err != nil {
		t.Fatalf("Get(a) after edit error = %v", err)
	}
	if lab.Title != "Second" || !strings.Contains(string(lab.Steps[0].HTML), "New body.") {
		t.Errorf("Get(a) after edit = %q %q, want the edited version", lab.Title, lab.Steps[0].HTML)
	}

	// Breaking the lab makes Get report it; fixing it brings it back.
	if err := os.WriteFile(path, []byte("no front matter\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var be *BrokenError
	if _, err := c.Get("a"); !errors.As(err, &be) || len(be.Problems) == 0 {
		t.Fatalf("Get(broken a) error = %v, want *BrokenError with problems", err)
	}
	if !strings.Contains(be.Error(), "missing front matter") {
		t.Errorf("BrokenError.Error() = %q, want it to name the first problem", be.Error())
	}
}

// A folder without lab.md, a plain file and a badly named folder sit
// beside the labs: none of them is listed or fails the labs; Lint warns
// once about each non-lab and reports the bad name of a folder with lab.md.
func TestCatalogListAndBroken(t *testing.T) {
	root := t.TempDir()
	writeLab(t, root, "good", labText("Good", "Fine."))
	writeLab(t, root, "broken", "---\ntitle: x\n---\n")
	writeLab(t, root, "Bad_Name", labText("Bad", "Fine."))
	for _, d := range []string{"empty", "Not_An_ID"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "README.md"), []byte("not a lab"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := NewCatalog(root)
	list := c.List()
	var ids []string
	for _, e := range list {
		ids = append(ids, e.ID)
	}
	if got, want := strings.Join(ids, ","), "broken,good"; got != want {
		t.Fatalf("List() IDs = %s, want %s", got, want)
	}
	if list[0].Lab != nil || len(list[0].Problems) == 0 {
		t.Errorf("List() broken entry = %+v, want problems and no Lab", list[0])
	}
	if list[1].Lab == nil || list[1].Lab.Title != "Good" {
		t.Errorf("List() good entry = %+v, want the rendered lab", list[1])
	}
	if _, err := c.Get("good"); err != nil {
		t.Errorf("Get(good) error = %v, want the lab despite a broken neighbour", err)
	}
	if _, err := c.Get("empty"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(empty) error = %v, want ErrNotFound: a folder without lab.md is not a lab", err)
	}

	// New folders appear and deleted ones disappear; a folder that gets
	// a lab.md becomes a lab.
	writeLab(t, root, "new", labText("New", "Hi."))
	writeLab(t, root, "empty", labText("Empty", "Now a lab."))
	if err := os.RemoveAll(filepath.Join(root, "good")); err != nil {
		t.Fatal(err)
	}
	ids = ids[:0]
	for _, e := range c.List() {
		ids = append(ids, e.ID)
	}
	if got, want := strings.Join(ids, ","), "broken,empty,new"; got != want {
		t.Errorf("List() after changes = %s, want %s", got, want)
	}
	if _, err := c.Get("good"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(deleted good) error = %v, want ErrNotFound", err)
	}
	if err := os.Remove(filepath.Join(root, "empty", "lab.md")); err != nil {
		t.Fatal(err)
	}

	problems, warnings := Lint(root)
	var text []string
	for _, p := range problems {
		text = append(text, p.String())
	}
	joined := strings.Join(text, "\n")
	for _, want := range []string{
		filepath.Join(root, "Bad_Name") + ": folder name",
		filepath.Join(root, "broken", "lab.md") + ":1: front matter is missing required field \"summary\"",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("Lint() problems lack %q:\n%s", want, joined)
		}
	}
	for _, notLab := range []string{"empty", "Not_An_ID", "README.md"} {
		if strings.Contains(joined, filepath.Join(root, notLab)) {
			t.Errorf("Lint() reports a problem in the non-lab %s:\n%s", notLab, joined)
		}
	}
	var wtext []string
	for _, w := range warnings {
		wtext = append(wtext, w.String())
	}
	want := []string{
		filepath.Join(root, "Not_An_ID") + ": warning: folder has no lab.md, so it is not a lab: labd ignores it",
		filepath.Join(root, "README.md") + ": warning: not a folder, so not a lab: labd ignores it",
		filepath.Join(root, "empty") + ": warning: folder has no lab.md, so it is not a lab: labd ignores it",
	}
	if got := strings.Join(wtext, "\n"); got != strings.Join(want, "\n") {
		t.Errorf("Lint() warnings:\n%s\nwant one per non-lab:\n%s", got, strings.Join(want, "\n"))
	}
}

func TestCatalogGetNotFound(t *testing.T) {
	root := t.TempDir()
	writeLab(t, root, "a", labText("A", "x"))
	c := NewCatalog(root)
	for _, id := range []string{"missing", "", "..", "../a", "A", "a/b", "a b"} {
		if _, err := c.Get(id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%q) error = %v, want ErrNotFound", id, err)
		}
	}
}

func TestCatalogFile(t *testing.T) {
	root := t.TempDir()
	dir := writeLab(t, root, "a", labText("A", "x"))
	outside := filepath.Join(t.TempDir(), "secret.txt")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(outside, []byte("secret"), 0o644))
	must(os.MkdirAll(filepath.Join(dir, "img"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "img", "x.svg"), []byte("<svg/>"), 0o644))
	must(os.WriteFile(filepath.Join(dir, ".hidden"), []byte("h"), 0o644))
	must(os.Symlink(outside, filepath.Join(dir, "escape.txt")))
	must(os.Symlink(filepath.Dir(outside), filepath.Join(dir, "escapedir")))
	must(os.Symlink("img/x.svg", filepath.Join(dir, "inside.svg")))
	writeLab(t, root, "b", labText("B", "x"))

	c := NewCatalog(root)
	got, err := c.File("a", "img/x.svg")
	if err != nil {
		t.Fatalf("File(a, img/x.svg) error = %v", err)
	}
	if b, err := os.ReadFile(got); err != nil || string(b) != "<svg/>" {
		t.Errorf("File(a, img/x.svg) = %s, reading gives %q, %v", got, b, err)
	}
	if !filepath.IsAbs(got) {
		t.Errorf("File(a, img/x.svg) = %s, want an absolute path", got)
	}
	if _, err := c.File("a", "inside.svg"); err != nil {
		t.Errorf("File(a, inside.svg) error = %v, want a symlink inside the folder to work", err)
	}
	for _, rel := range []string{
		"../b/lab.md", "img/../../b/lab.md", "/etc/passwd", "escape.txt", "escapedir/secret.txt",
		"missing.png", "img", "", ".hidden", "img//x.svg", `img\x.svg`,
	} {
		if p, err := c.File("a", rel); !errors.Is(err, ErrNotFound) {
			t.Errorf("File(a, %q) = %q, %v; want ErrNotFound", rel, p, err)
		}
	}
	if _, err := c.File("../a", "lab.md"); !errors.Is(err, ErrNotFound) {
		t.Errorf("File(../a, lab.md) error = %v, want ErrNotFound", err)
	}
}

func TestCatalogConcurrent(t *testing.T) {
	root := t.TempDir()
	writeLab(t, root, "a", labText("A", "x"))
	writeLab(t, root, "b", labText("B", "y"))
	c := NewCatalog(root)
	var wg sync.WaitGroup
	errs := make(chan error, 80)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 10 {
				id := []string{"a", "b"}[(i+j)%2]
				if _, err := c.Get(id); err != nil {
					errs <- err
				}
				if n := len(c.List()); n != 2 {
					errs <- fmt.Errorf("List() has %d entries, want 2", n)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func BenchmarkCatalogGetCached(b *testing.B) {
	root := b.TempDir()
	body, err := os.ReadFile("testdata/labs/full/lab.md")
	if err != nil {
		b.Fatal(err)
	}
	writeLab(b, root, "full", string(body))
	for _, f := range []string{"notes.txt", "img/layers.svg"} {
		data, err := os.ReadFile(filepath.Join("testdata/labs/full", f))
		if err != nil {
			b.Fatal(err)
		}
		_ = os.MkdirAll(filepath.Dir(filepath.Join(root, "full", f)), 0o755)
		if err := os.WriteFile(filepath.Join(root, "full", f), data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	c := NewCatalog(root)
	if _, err := c.Get("full"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Get("full"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLoad(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, problems := Load("testdata/labs/full"); len(problems) > 0 {
			b.Fatal(problems)
		}
	}
}
