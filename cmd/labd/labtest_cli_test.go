package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/labd/labd/internal/testenv"
)

// The labs of testdata/labtest: cheat-demo and multi-stage pass (each
// step's checks fail before its section and pass after it, their cheats
// are caught);
// weak-check's cheat passes its step and early-pass's second step passes
// before its section, so both fail; notes/ is not a lab and only warned
// about.
const labtestContent = "testdata/labtest"

const notesWarning = "testdata/labtest/notes: warning: folder has no lab.md, so it is not a lab: labd ignores it\n"

func TestLabdTestCheatsAndSteps(t *testing.T) {
	testenv.Root(t, "labd test starts sandboxes (namespaces, overlay mounts)")
	data := t.TempDir()
	if out, err := runImagesCLI(t, "bootstrap", "busybox", "--data", data); err != nil {
		t.Fatalf("labd images bootstrap busybox: %v\n%s", err, out)
	}
	// The base images come from LABD_DATA, as for every other command.
	t.Setenv("LABD_DATA", data)
	tests := []struct {
		name    string
		args    []string
		wantErr bool
		want    []string // lines of the table, fields joined by single spaces
		reject  []string
	}{
		{"caught cheat, checks fail before their step",
			[]string{"--lab", "cheat-demo"}, false,
			[]string{
				"cheat-demo Greet the name greeting-names-the-name before ok",
				"cheat-demo Greet the name greeting-names-the-name after ok",
				"cheat-demo Greet the name cheats/greet-anyone.sh cheat ok",
				"caught by greeting-names-the-name",
				"8 cases, 0 failed",
			},
			[]string{"early-pass", "weak-check"}},
		{"a cheat that passes fails, naming it",
			[]string{"--lab", "weak-check"}, true,
			[]string{`weak-check Write a report cheats/empty-report.sh cheat FAIL`,
				`cheats/empty-report.sh passes every check of step "Write a report": the checks do not catch it`},
			nil},
		{"multi-stage: a --target build, stage-aware checks, a clean check paired with one that needs the work, two cheats caught",
			[]string{"--lab", "multi-stage"}, false,
			[]string{
				"multi-stage Run it and clean up run-it-and-clean-up-1 empty ok",
				"passes on an empty sandbox; its step does not (another of its checks needs the work)",
				"multi-stage Build the builder stage alone build-the-builder-stage-alone-2 after ok",
				"multi-stage Write a two-stage Dockerfile cheats/one-stage.sh cheat ok",
				"multi-stage Build the app cheats/tag-builder.sh cheat ok",
				"caught by build-the-app-1",
				"31 cases, 0 failed",
			},
			nil},
		{"a check that passes before its step's section fails",
			[]string{"--lab", "early-pass"}, true,
			[]string{"early-pass Fill the folder fill-the-folder-1 before FAIL",
				"passes before this step's section of solution.sh ran"},
			nil},
		{"every lab, the non-lab folder left out",
			nil, true,
			[]string{"cheat-demo Greet the name cheats/greet-anyone.sh cheat ok", "50 cases, 2 failed"},
			[]string{"notes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			args := append([]string{"--settle", "2s"}, tt.args...)
			err := runTest(context.Background(), append(args, labtestContent), &out, &errOut)
			var ee exitError
			if tt.wantErr != (err != nil) || (err != nil && !errors.As(err, &ee)) {
				t.Errorf("labd test %v = %v, want failure %v (exit 1)", tt.args, err, tt.wantErr)
			}
			table := strings.Join(strings.Fields(strings.ReplaceAll(out.String(), "\n", " \x00 ")), " ")
			for _, w := range tt.want {
				if !strings.Contains(table, w) {
					t.Errorf("labd test %v output lacks %q:\n%s", tt.args, w, out.String())
				}
			}
			for _, r := range tt.reject {
				if strings.Contains(out.String(), r) {
					t.Errorf("labd test %v output has %q:\n%s", tt.args, r, out.String())
				}
			}
			if n := strings.Count(errOut.String(), notesWarning); n != 1 {
				t.Errorf("labd test %v warned %d times about notes/, want once:\n%s", tt.args, n, errOut.String())
			}
			if !strings.Contains(errOut.String(), "labd test: warning: no labd/sandbox:latest among the base images: solution.sh runs in this machine's shell") {
				t.Errorf("labd test did not warn that busybox-only data runs the host's shell:\n%s", errOut.String())
			}
			if !strings.Contains(errOut.String(), "labd test: 1 base images from "+data) {
				t.Errorf("labd test did not take busybox from LABD_DATA=%s:\n%s", data, errOut.String())
			}
		})
	}
}

// A lab's front-matter images that the data dir lacks are named before
// anything runs, with the command that makes (or imports) each.
func TestLabdTestMissingImages(t *testing.T) {
	testenv.Root(t, "labd test opens an engine store (overlay mounts)")
	data := t.TempDir()
	if out, err := runImagesCLI(t, "bootstrap", "busybox", "--data", data); err != nil {
		t.Fatalf("labd images bootstrap busybox: %v\n%s", err, out)
	}
	content := t.TempDir()
	lab := filepath.Join(content, "flask")
	if err := os.Mkdir(lab, 0o755); err != nil {
		t.Fatal(err)
	}
	md := "---\ntitle: Flask\nsummary: S\nduration: 5 min\nlevel: beginner\nimages: [busybox, python:3.11-slim, example.com/tools/jq:1.7]\n---\nIntro.\n\n" +
		"## Build\n\n```check\nkind: file\npath: ran.txt\n```\n"
	sol := "#!/usr/bin/env bash\n# step: Build\ntouch ran.txt\n"
	if err := os.WriteFile(filepath.Join(lab, "lab.md"), []byte(md), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(lab, "solution.sh"), []byte(sol), 0o755); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	err := runTest(context.Background(), []string{"--data", data, content}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "2 images missing; nothing was run") {
		t.Errorf("labd test = %v, want 2 images missing", err)
	}
	for _, want := range []string{
		"labd test: lab flask needs the image python:3.11-slim, which " + data + " does not have: make it with: labd images bootstrap python --data " + data + "\n",
		"labd test: lab flask needs the image example.com/tools/jq:1.7, which " + data + " does not have: import it: docker save example.com/tools/jq:1.7 | labd images import - --data " + data + "\n",
	} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut.String())
		}
	}
	if strings.Contains(errOut.String(), "image busybox") {
		t.Errorf("busybox is there, yet named missing:\n%s", errOut.String())
	}
	if out.Len() != 0 {
		t.Errorf("labd test ran something (stdout):\n%s", out.String())
	}
}

// labd lint: a non-lab folder is one warning, not a problem.
func TestLintWarnsOnceForNonLab(t *testing.T) {
	var out, errOut bytes.Buffer
	err := runLint(context.Background(), []string{labtestContent}, &out, &errOut)
	if err != nil {
		t.Fatalf("labd lint %s = %v, want success:\n%s%s", labtestContent, err, out.String(), errOut.String())
	}
	if out.String() != notesWarning {
		t.Errorf("labd lint output:\n%s\nwant only:\n%s", out.String(), notesWarning)
	}
	if want := "4 labs, no problems\n"; errOut.String() != want {
		t.Errorf("labd lint stderr = %q, want %q", errOut.String(), want)
	}
}
