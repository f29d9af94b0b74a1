package web

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestReadyz(t *testing.T) {
	failing := errors.New("database is locked")
	for _, tc := range []struct {
		name   string
		checks []ReadyCheck
		status int
		body   []string
	}{
		{"no checks", nil, http.StatusOK, nil},
		{"all ready", []ReadyCheck{{"progress store", func(context.Context) error { return nil }}}, http.StatusOK, []string{"progress store: ok\n"}},
		{"one not ready", []ReadyCheck{
			{"progress store", func(context.Context) error { return failing }},
			{"registry", func(context.Context) error { return nil }},
		}, http.StatusServiceUnavailable, []string{"progress store: database is locked\n", "registry: ok\n"}},
		{"a check that hangs is cut off", []ReadyCheck{{"registry", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }}},
			http.StatusServiceUnavailable, []string{"registry: context deadline exceeded\n"}},
	} {
		s := &server{opts: Options{ReadyChecks: tc.checks}}
		rec := httptest.NewRecorder()
		s.readyz(rec, httptest.NewRequest("GET", "/readyz", nil))
		if rec.Code != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, rec.Code, tc.status)
		}
		for _, want := range tc.body {
			if !strings.Contains(rec.Body.String(), want) {
				t.Errorf("%s: body %q lacks %q", tc.name, rec.Body.String(), want)
			}
		}
	}
}
