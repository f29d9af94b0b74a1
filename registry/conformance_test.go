package registry

import (
	"encoding/json"
	"encoding/xml"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/labd/labd/internal/testenv"
)

// conformanceModule is the OCI distribution-spec conformance suite, pinned.
// It is built in a temporary copy with its own go.mod, never in labd's.
const conformanceModule = "github.com/opencontainers/distribution-spec/conformance@v0.0.0-20260831232431-97274622c111"

// documentedSkips are the suite's tests labd skips on purpose, sorted
// (docs/registry.md, "Conformance"): the optional monolithic
// POST ?digest= upload, which distribution answers the other allowed way,
// and anonymous cross-repository mounts, which would let a learner probe
// other namespaces.
var documentedSkips = []string{
	"OCI Conformance Test/sha256 blobs/bad digest post only/blob-post-only",
	"OCI Conformance Test/sha256 blobs/mount anonymous/blob-mount-anonymous",
	"OCI Conformance Test/sha256 blobs/post only/blob-post-only",
	"OCI Conformance Test/sha512 blobs/bad digest post only/blob-post-only",
	"OCI Conformance Test/sha512 blobs/mount anonymous/blob-mount-anonymous",
	"OCI Conformance Test/sha512 blobs/post only/blob-post-only",
}

// TestConformance runs the OCI distribution-spec conformance suite against
// the embedded registry as a learner pushing under her own namespace (so
// the token flow, the policy and the quota are all on the path) and fails
// on any failed test. The reports go to $LABD_ARTIFACTS/registry-conformance.
func TestConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the conformance suite")
	}
	goBin := testenv.Command(t, "go", "golang (or Go from go.dev)")
	bin := buildConformance(t, goBin)

	e := newEnv(t, nil)
	results := filepath.Join(t.TempDir(), "results")
	cmd := exec.Command(bin)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(),
		"OCI_REGISTRY="+e.opts.Addr,
		"OCI_TLS=disabled",
		"OCI_REPO1=alice/conformance",
		"OCI_REPO2=alice/other",
		"OCI_USERNAME=alice",
		"OCI_PASSWORD="+alicePW,
		"OCI_RESULTS_DIR="+results,
		"OCI_LOG=error",
		// The suite's defaults, sha512 content included, plus every
		// optional API it has that labd supports (they default off):
		// upload cancel, digest headers required, tag parameters on a
		// manifest PUT by digest. Not sparse manifests (OCI_DATA_SPARSE):
		// the registry refuses manifests that reference missing blobs.
		"OCI_API_BLOBS_UPLOAD_CANCEL=true",
		"OCI_API_BLOBS_DIGEST_HEADER=true",
		"OCI_API_MANIFESTS_DIGEST_HEADER=true",
		"OCI_API_MANIFESTS_TAG_PARAM=true",
	)
	cmd.Env = append(cmd.Env, conformanceEnv()...)
	out, runErr := cmd.CombinedOutput()

	if dir := os.Getenv("LABD_ARTIFACTS"); dir != "" {
		dst := filepath.Join(dir, "registry-conformance")
		if err := copyTree(results, dst); err != nil {
			t.Logf("copy reports to %s: %v", dst, err)
		}
		os.WriteFile(filepath.Join(dst, "output.txt"), out, 0o644)
	}

	var suites struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Errors   int `xml:"errors,attr"`
		Skipped  int `xml:"skipped,attr"`
		Suites   []struct {
			Tests    int `xml:"tests,attr"`
			Failures int `xml:"failures,attr"`
			Errors   int `xml:"errors,attr"`
			Skipped  int `xml:"skipped,attr"`
			Cases    []struct {
				Name   string `xml:"name,attr"`
				Status string `xml:"status,attr"` // passed, failure, error, skipped
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	b, err := os.ReadFile(filepath.Join(results, "junit.xml"))
	if err != nil {
		t.Fatalf("no junit report (%v); suite output:\n%s", err, out)
	}
	if err := xml.Unmarshal(b, &suites); err != nil {
		t.Fatalf("junit report: %v", err)
	}
	tests, failed, skipped := suites.Tests, suites.Failures+suites.Errors, suites.Skipped
	if tests == 0 {
		for _, s := range suites.Suites {
			tests += s.Tests
			failed += s.Failures + s.Errors
			skipped += s.Skipped
		}
	}
	t.Logf("conformance: %d tests, %d passed, %d failed, %d skipped", tests, tests-failed-skipped, failed, skipped)
	if tests == 0 {
		t.Fatalf("no tests in the report; suite output:\n%s", out)
	}
	// Every data set and API group ran (a toggle the suite ignored, or a
	// renamed group, would otherwise pass unnoticed).
	ran := map[string]int{}
	for _, s := range suites.Suites {
		for _, c := range s.Cases {
			if parts := strings.Split(c.Name, "/"); len(parts) > 1 && c.Status == "passed" {
				ran[parts[1]]++
			}
		}
	}
	for _, group := range []string{"sha256 blobs", "sha512 blobs", "sha512", "image", "index", "nested-index",
		"artifacts-with-subject", "index-with-subject", "tag-param-sha256", "tag-param-sha512"} {
		if ran[group] == 0 {
			t.Errorf("no passed test in group %q (groups: %v)", group, ran)
		}
	}
	// Exactly the documented skips (docs/registry.md): a new skip is an
	// API the suite stopped checking, which must not pass unnoticed.
	// LABD_CONFORMANCE_ENV tries other settings, whose skips differ.
	if len(conformanceEnv()) == 0 {
		var got []string
		for _, s := range suites.Suites {
			for _, c := range s.Cases {
				if c.Status == "skipped" {
					got = append(got, c.Name)
				}
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, documentedSkips) {
			t.Errorf("skipped conformance tests differ from the documented ones\ngot:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(documentedSkips, "\n  "))
		}
	}
	if failed > 0 {
		var names []string
		for _, s := range suites.Suites {
			for _, c := range s.Cases {
				if c.Status == "failure" || c.Status == "error" {
					names = append(names, c.Name)
				}
			}
		}
		t.Errorf("%d conformance failures:\n  %s\nsuite output (tail):\n%s", failed, strings.Join(names, "\n  "), tail(out, 4000))
	} else if runErr != nil {
		t.Errorf("suite exited with %v:\n%s", runErr, tail(out, 4000))
	}
}

// buildConformance downloads the pinned suite through the module proxy
// (or the module cache) and builds it in a temporary copy.
func buildConformance(t *testing.T, goBin string) string {
	t.Helper()
	work := t.TempDir()
	env := append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	dl := exec.Command(goBin, "mod", "download", "-json", conformanceModule)
	dl.Dir, dl.Env = work, env
	raw, err := dl.Output()
	if err != nil {
		t.Fatalf("go mod download %s: %v\n%s", conformanceModule, err, raw)
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(raw, &mod); err != nil || mod.Dir == "" {
		t.Fatalf("go mod download %s: %s %v", conformanceModule, mod.Error, err)
	}
	src := filepath.Join(work, "src")
	if err := copyTree(mod.Dir, src); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(work, "conformance")
	build := exec.Command(goBin, "build", "-o", bin, ".")
	build.Dir, build.Env = src, env
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build conformance suite: %v\n%s", err, out)
	}
	return bin
}

// copyTree copies regular files (made writable: the module cache is read-only).
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
}

// conformanceEnv adds LABD_CONFORMANCE_ENV (space-separated KEY=VALUE)
// to the suite's environment, to try its optional settings.
func conformanceEnv() []string { return strings.Fields(os.Getenv("LABD_CONFORMANCE_ENV")) }

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
