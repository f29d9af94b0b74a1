package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/labd/labd/grader"
	"github.com/labd/labd/grader/progress"
	"github.com/labd/labd/grader/webhook"
	"github.com/labd/labd/metrics"
)

// gradingFlags are labd serve's grader settings.
type gradingFlags struct {
	instructorToken string
	webhook         string
	webhookSecret   string
}

func (g *gradingFlags) add(fs *flag.FlagSet) {
	fs.StringVar(&g.instructorToken, "instructor-token", envDefault("LABD_INSTRUCTOR_TOKEN", ""),
		"token that opens /instructor (env LABD_INSTRUCTOR_TOKEN); default: DATA/instructor-token, made on first start and printed in the log")
	fs.StringVar(&g.webhook, "webhook", envDefault("LABD_WEBHOOK", ""),
		"URL that gets a signed POST for each step a learner completes (env LABD_WEBHOOK; README, section Webhook)")
	fs.StringVar(&g.webhookSecret, "webhook-secret", envDefault("LABD_WEBHOOK_SECRET", ""),
		"HMAC-SHA256 key of the webhook's X-Labd-Signature-256 header (env LABD_WEBHOOK_SECRET); default: DATA/webhook-secret, made on first start")
}

// startGrading opens the progress database (DATA/labd.db) and the live
// grader, and settles the instructor token.
func startGrading(ctx context.Context, data string, g gradingFlags, log *slog.Logger, m *metrics.Metrics) (*grader.Live, string, func(), error) {
	store, err := progress.Open(ctx, filepath.Join(data, "labd.db"))
	if err != nil {
		return nil, "", nil, err
	}
	tok := g.instructorToken
	if tok == "" {
		path := filepath.Join(data, "instructor-token")
		if tok, err = loadOrCreateToken(path); err != nil {
			store.Close()
			return nil, "", nil, err
		}
		log.Info("instructor view", "url", "/instructor?token="+tok, "token_file", path)
	}
	lo := grader.LiveOptions{Store: store, Logger: log}
	if m != nil {
		lo.OnEvaluate = m.Evaluated
		lo.OnStepDone = func(grader.StepDone) { m.StepDone() }
	}
	var hook *webhook.Sender
	if g.webhook != "" {
		u, err := url.Parse(g.webhook)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			store.Close()
			return nil, "", nil, fmt.Errorf("--webhook %q: want an http or https URL", g.webhook)
		}
		secret := g.webhookSecret
		if secret == "" {
			path := filepath.Join(data, "webhook-secret")
			if secret, err = loadOrCreateToken(path); err != nil {
				store.Close()
				return nil, "", nil, err
			}
			log.Info("webhook", "url", u.Redacted(), "secret_file", path)
		}
		hook = webhook.New(webhook.Options{URL: g.webhook, Secret: []byte(secret), Logger: log})
		counted := lo.OnStepDone
		lo.OnStepDone = func(d grader.StepDone) {
			if counted != nil {
				counted(d)
			}
			hook.StepCompleted(webhook.StepCompleted{Learner: d.Learner, Lab: d.Lab, Step: d.Step, Title: d.Title,
				CompletedAt: d.At, StepScore: d.StepScore, Score: d.Score, MaxScore: d.MaxScore})
		}
	}
	live := grader.NewLive(lo)
	return live, tok, func() {
		live.Close()
		if hook != nil {
			hook.Close()
		}
		store.Close()
	}, nil
}

func loadOrCreateToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		if t := strings.TrimSpace(string(b)); t != "" {
			return t, nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	var raw [16]byte
	rand.Read(raw[:])
	tok := hex.EncodeToString(raw[:])
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return tok, nil
}
