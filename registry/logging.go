package registry

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"

	"github.com/sirupsen/logrus"
)

// distribution logs through logrus's standard logger (its context logger
// is internal, so there is no per-instance hook). routeLogrus sends that
// logger's warnings and errors to slog instead of stderr, once per
// process. Per-request error lines for ordinary client errors (401, 404,
// ...) become debug lines: a registry answers those all day.
var logrusOnce sync.Once

// logrusTarget is the slog logger the bridge writes to; the first
// registry's logger wins.
var logrusTarget struct {
	sync.Mutex
	log *slog.Logger
}

func routeLogrus(log *slog.Logger) {
	logrusTarget.Lock()
	if logrusTarget.log == nil {
		logrusTarget.log = log
	}
	logrusTarget.Unlock()
	logrusOnce.Do(func() {
		std := logrus.StandardLogger()
		std.SetOutput(io.Discard)
		std.SetLevel(logrus.WarnLevel)
		std.AddHook(slogHook{})
	})
}

type slogHook struct{}

func (slogHook) Levels() []logrus.Level {
	return []logrus.Level{logrus.PanicLevel, logrus.FatalLevel, logrus.ErrorLevel, logrus.WarnLevel}
}

func (slogHook) Fire(e *logrus.Entry) error {
	logrusTarget.Lock()
	log := logrusTarget.log
	logrusTarget.Unlock()
	if log == nil {
		return nil
	}
	level := slog.LevelWarn
	if e.Level <= logrus.ErrorLevel {
		level = slog.LevelError
	}
	switch {
	case e.Message == "response completed with error":
		if code := fmt.Sprint(e.Data["err.code"]); code != "unknown" || fmt.Sprint(e.Data["err.detail"]) == errQuota.Error() {
			level = slog.LevelDebug
		}
	case strings.HasPrefix(e.Message, "error authorizing context"), strings.HasSuffix(e.Message, errQuota.Error()):
		// The first request of every token flow, and uploads the quota cut off.
		level = slog.LevelDebug
	}
	attrs := make([]slog.Attr, 0, 6)
	for _, k := range []string{"err.code", "err.message", "err.detail", "http.request.method", "http.request.uri", "vars.name", "error"} {
		if v, ok := e.Data[k]; ok {
			attrs = append(attrs, slog.Any(k, v))
		}
	}
	log.LogAttrs(context.Background(), level, "registry: "+e.Message, attrs...)
	return nil
}
