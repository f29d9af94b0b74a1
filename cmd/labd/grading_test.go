package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWebhookFlags(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, bad := range []string{"ftp://example.invalid/x", "not a url", "http://"} {
		if _, _, _, err := startGrading(context.Background(), t.TempDir(), gradingFlags{instructorToken: "t", webhook: bad}, quiet, nil); err == nil || !strings.Contains(err.Error(), "want an http or https URL") {
			t.Errorf("--webhook %q: %v", bad, err)
		}
	}
	data := t.TempDir()
	live, _, stop, err := startGrading(context.Background(), data, gradingFlags{instructorToken: "t", webhook: "http://127.0.0.1:9/hook"}, quiet, nil)
	if err != nil || live == nil {
		t.Fatal(err)
	}
	stop()
	fi, err := os.Stat(filepath.Join(data, "webhook-secret"))
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() < 32 {
		t.Errorf("webhook secret file: %v %v", fi, err)
	}
	// Given a secret, labd writes none.
	data = t.TempDir()
	_, _, stop, err = startGrading(context.Background(), data, gradingFlags{instructorToken: "t", webhook: "https://127.0.0.1:9/hook", webhookSecret: "k"}, quiet, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop()
	if _, err := os.Stat(filepath.Join(data, "webhook-secret")); !os.IsNotExist(err) {
		t.Errorf("a secret file was written beside --webhook-secret: %v", err)
	}
}
