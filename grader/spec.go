package grader

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// spec reads a check's YAML mapping. labd lint has validated the field
// types (labs/checkfields.go); the accessors still tolerate anything.
type spec map[string]any

func (s spec) str(k string) string {
	switch v := s[k].(type) {
	case string:
		return strings.TrimSpace(v)
	case int, int64, float64, bool:
		return fmt.Sprint(v)
	}
	return ""
}

func (s spec) has(k string) bool { _, ok := s[k]; return ok }

func (s spec) boolean(k string, def bool) bool {
	if v, ok := s[k].(bool); ok {
		return v
	}
	return def
}

func (s spec) integer(k string, def int) int {
	switch v := s[k].(type) {
	case int:
		return v
	case int64:
		return int(v)
	case float64:
		return int(v)
	case string:
		if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
			return n
		}
	}
	return def
}

func (s spec) strs(k string) []string {
	switch v := s[k].(type) {
	case string:
		return []string{v}
	case []any:
		out := make([]string, 0, len(v))
		for _, x := range v {
			out = append(out, fmt.Sprint(x))
		}
		return out
	}
	return nil
}

func (s spec) duration(k string, def time.Duration) time.Duration {
	switch v := s[k].(type) {
	case int:
		return time.Duration(v) * time.Second
	case float64:
		return time.Duration(v * float64(time.Second))
	case string:
		if d, err := time.ParseDuration(strings.TrimSpace(v)); err == nil {
			return d
		}
		if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
			return time.Duration(n) * time.Second
		}
	}
	return def
}
