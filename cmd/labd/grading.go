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
	"os"
	"path/filepath"
	"strings"

	"github.com/labd/labd/grader"
	"github.com/labd/labd/grader/progress"
)

// gradingFlags are labd serve's grader settings.
type gradingFlags struct {
	instructorToken string
}

func (g *gradingFlags) add(fs *flag.FlagSet) {
	fs.StringVar(&g.instructorToken, "instructor-token", envDefault("LABD_INSTRUCTOR_TOKEN", ""),
		"token that opens /instructor (env LABD_INSTRUCTOR_TOKEN); default: DATA/instructor-token, made on first start and printed in the log")
}

// startGrading opens the progress database (DATA/labd.db) and the live
// grader, and settles the instructor token.
func startGrading(ctx context.Context, data string, g gradingFlags, log *slog.Logger) (*grader.Live, string, func(), error) {
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
	live := grader.NewLive(grader.LiveOptions{Store: store, Logger: log})
	return live, tok, func() {
		live.Close()
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
		return "", fmt.Errorf("read instructor token: %w", err)
	}
	var raw [16]byte
	rand.Read(raw[:])
	tok := hex.EncodeToString(raw[:])
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write instructor token: %w", err)
	}
	return tok, nil
}
