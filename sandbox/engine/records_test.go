package engine

import (
	"bufio"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/labd/labd/sandbox/engine/api"
)

func countLines(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		n++
	}
	return n
}

// TestRecordLog: records written by one engine are read back by the next
// one on the same directory, in order, bounded per kind, and a torn last
// line (labd killed mid-write) loses only that record.
func TestRecordLog(t *testing.T) {
	dir := t.TempDir()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	r, err := openRecords(dir, "sb-1", quiet)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	r.add(kindBuild, BuildRecord{Time: t0, Dockerfile: "Dockerfile", Tags: []string{"app:latest"}, ImageID: "sha256:abc",
		Steps: []BuildStep{{Step: 1, Instruction: "FROM busybox"}, {Step: 2, Instruction: "COPY . /", Cached: true, ImageID: "sha256:def"}}})
	r.add(kindContainer, ContainerRecord{Time: t0, Action: "start", ID: "c1", Name: "web", Image: "app", Attrs: map[string]string{"exitCode": "0"}})
	for i := range 3 {
		r.add(kindCall, api.Call{Time: t0.Add(time.Duration(i)), Method: "GET", Path: "/images/json", Query: "n=" + strconv.Itoa(i), Status: 200})
	}
	path := filepath.Join(dir, "sb-1.jsonl")
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("record log %s: %v, mode %v; want 0600", path, err, st.Mode())
	}

	r2, err := openRecords(dir, "sb-1", quiet)
	if err != nil {
		t.Fatal(err)
	}
	if len(r2.builds) != 1 || len(r2.builds[0].Steps) != 2 || !r2.builds[0].Steps[1].Cached || r2.builds[0].ImageID != "sha256:abc" || !r2.builds[0].Time.Equal(t0) {
		t.Fatalf("builds after reopen = %+v", r2.builds)
	}
	if len(r2.ctrs) != 1 || r2.ctrs[0].Name != "web" || r2.ctrs[0].Attrs["exitCode"] != "0" {
		t.Fatalf("containers after reopen = %+v", r2.ctrs)
	}
	if len(r2.calls) != 3 || r2.calls[2].Query != "n=2" {
		t.Fatalf("calls after reopen = %+v", r2.calls)
	}
	// Another view's log is another file.
	if r3, err := openRecords(dir, "sb-2", quiet); err != nil || r3.kept() != 0 {
		t.Fatalf("other view: %v, %d records", err, r3.kept())
	}

	// A torn line, then more records: the torn one is skipped.
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"call":{"time":"`) // no newline: torn mid-line
	f.Close()
	r4, err := openRecords(dir, "sb-1", quiet)
	if err != nil {
		t.Fatal(err)
	}
	if r4.kept() != 5 || countLines(t, path) != 5 {
		t.Fatalf("after a torn line: %d records, %d lines; want 5 and the file rewritten without it", r4.kept(), countLines(t, path))
	}

	// Bounded: many more calls than kept; the file stays within twice the
	// kept records and the newest are the ones kept.
	n := 3*maxCalls + 17
	for i := range n {
		r4.add(kindCall, api.Call{Time: t0.Add(time.Duration(i)), Method: "POST", Path: "/containers/create", Query: strconv.Itoa(i), Status: 201})
	}
	kept := maxCalls + 2
	if r4.kept() != kept {
		t.Fatalf("kept %d records, want %d", r4.kept(), kept)
	}
	if lines := countLines(t, path); lines > 2*kept {
		t.Fatalf("record log has %d lines for %d kept records", lines, kept)
	}
	r5, err := openRecords(dir, "sb-1", quiet)
	if err != nil {
		t.Fatal(err)
	}
	if len(r5.calls) != maxCalls || r5.calls[maxCalls-1].Query != strconv.Itoa(n-1) || len(r5.builds) != 1 || len(r5.ctrs) != 1 {
		t.Fatalf("after reopen: %d calls (last %+v), %d builds, %d containers", len(r5.calls), r5.calls[len(r5.calls)-1], len(r5.builds), len(r5.ctrs))
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Fatalf("compaction left %s.tmp: %v", path, err)
	}
}

// TestRecordEventKeepsContainers: container events of the bus become
// records; other events do not.
func TestRecordEventKeepsContainers(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	r, err := openRecords(t.TempDir(), "v", quiet)
	if err != nil {
		t.Fatal(err)
	}
	e := &Engine{events: newEventBus(), rec: r, name: "v", shared: &Shared{}}
	e.events.onPublish = e.recordEvent
	e.events.publish(events.ContainerEventType, events.ActionDie, "c1", map[string]string{"name": "web", "image": "app", "exitCode": "3", "com.example.label": "x"})
	e.events.publish(events.ImageEventType, events.ActionTag, "sha256:1", map[string]string{"name": "app:latest"})
	got := e.RecordsSince(time.Time{}).Containers
	if len(got) != 1 || got[0].Action != "die" || got[0].Name != "web" || got[0].Image != "app" || got[0].Attrs["exitCode"] != "3" || got[0].Attrs["com.example.label"] != "" {
		t.Fatalf("container records = %+v", got)
	}
}

// BenchmarkRecordCall is the cost the record log adds to every learner
// API call (one appended line; a rewrite now and then once full).
func BenchmarkRecordCall(b *testing.B) {
	r, err := openRecords(b.TempDir(), "bench", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	c := api.Call{Time: time.Now(), Method: "GET", Path: "/containers/json", Query: "all=1", Status: 200}
	b.ReportAllocs()
	for b.Loop() {
		r.add(kindCall, c)
	}
}

// TestRecordsLongPoll: GET /labd/v1/records?after=SEQ&wait= answers once
// the engine recorded something after SEQ (here the learner's call made
// while the poll waits), counts calls apart from other records, answers at
// once when the count is already past SEQ, and rejects bad parameters in
// Docker's wording.
func TestRecordsLongPoll(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	r, err := openRecords(t.TempDir(), "v", quiet)
	if err != nil {
		t.Fatal(err)
	}
	e := &Engine{events: newEventBus(), rec: r, name: "v", shared: &Shared{}}
	e.events.onPublish = e.recordEvent
	srv := httptest.NewServer(api.New(e, api.Options{Logger: quiet}))
	t.Cleanup(srv.Close)
	get := func(q string) (Records, int) {
		t.Helper()
		resp, err := http.Get(srv.URL + api.RecordsPath + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out Records
		if resp.StatusCode == http.StatusOK {
			if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
				t.Fatal(err)
			}
		}
		return out, resp.StatusCode
	}

	first, _ := get("")
	if first.Seq != 0 || first.CallSeq != 0 {
		t.Fatalf("fresh engine: seq %d, call_seq %d", first.Seq, first.CallSeq)
	}
	// A container event is a record but not a call.
	e.events.publish(events.ContainerEventType, events.ActionStart, "c1", nil)
	got, _ := get("?after=0&wait=1h")
	if got.Seq != 1 || got.CallSeq != 0 {
		t.Fatalf("after a container event: seq %d, call_seq %d; want 1, 0", got.Seq, got.CallSeq)
	}

	e.rec.mu.Lock()
	e.rec.grew = nil // set again when the next poll starts waiting
	e.rec.mu.Unlock()
	answered := make(chan Records, 1)
	go func() {
		out, _ := get("?after=1&wait=10m")
		answered <- out
	}()
	// The poll must still be waiting: nothing new was recorded. Wait until
	// the handler is blocked on the engine's channel, then record a
	// learner's call as the API server does.
	deadline := time.Now().Add(30 * time.Second)
	for {
		e.rec.mu.Lock()
		waiting := e.rec.grew != nil
		e.rec.mu.Unlock()
		if waiting {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the long poll never waited for records")
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case out := <-answered:
		t.Fatalf("answered with nothing new: %+v", out)
	default:
	}
	e.RecordCall(api.Call{Time: time.Now(), Method: "GET", Path: "/images/busybox/history", Status: 200})
	select {
	case out := <-answered:
		if out.Seq != 2 || out.CallSeq != 1 || len(out.Calls) != 1 || out.Calls[0].Path != "/images/busybox/history" {
			t.Fatalf("long poll answer: seq %d, call_seq %d, calls %+v", out.Seq, out.CallSeq, out.Calls)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the long poll did not answer after a recorded call")
	}

	for _, q := range []string{"?after=x&wait=1s", "?after=1&wait=soon", "?after=1&wait=-1s"} {
		if _, code := get(q); code != http.StatusBadRequest {
			t.Errorf("GET records%s: status %d, want 400", q, code)
		}
	}
}
