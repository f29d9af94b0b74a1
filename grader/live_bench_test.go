package grader_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/labd/labd/grader"
	"github.com/labd/labd/labs"
	"github.com/labd/labd/sandbox"
	"github.com/labd/labd/sandbox/engine"
	engimage "github.com/labd/labd/sandbox/engine/image"
	"github.com/labd/labd/sandbox/enginebox"
	"github.com/labd/labd/sandbox/nsbox"
	"go.yaml.in/yaml/v3"
)

// Load of BenchmarkLive50: liveSandboxes real sandboxes (nsbox + an engine
// view each, one Shared store, one Live), each tagging or untagging an image
// every liveOpEvery, for liveRun.
const (
	liveSandboxes = 50
	liveOpEvery   = time.Second
	liveRun       = 10 * time.Second
)

// BenchmarkLive50 measures the live grader with 50 sandboxes producing
// engine events: every sandbox alternately runs `docker tag busybox flip`
// and `docker rmi flip` through its engine socket, and its watcher must
// flip a non-sticky image check. It reports the grader's CPU (process CPU
// with watchers minus the same load without them, per second of wall time)
// and the latency from the start of the API call to the watcher's
// subscriber seeing the new state (aim: p99 < 500 ms).
func BenchmarkLive50(b *testing.B) {
	if os.Getuid() != 0 {
		b.Fatal("needs root (namespaces, containers)")
	}
	ctx := context.Background()
	data, err := os.MkdirTemp("", "grader-live-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(data) })
	shared, err := engine.OpenShared(data, engine.SharedOptions{})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := engimage.BootstrapBusybox(ctx, shared.Store); err != nil {
		b.Fatal(err)
	}
	mgr := sandbox.NewManager(&enginebox.Provider{Inner: nsbox.New(nsbox.Options{}), Shared: shared}, sandbox.ManagerOptions{DataDir: data, IdleTimeout: -1})
	b.Cleanup(func() { mgr.Close(context.Background()) })

	lab := &labs.Lab{ID: "bench-live", Steps: []labs.Step{{Index: 1, ID: "s", Title: "s"}}}
	for i, y := range []string{
		"kind: image\nimage: flip\nsticky: false",
		"kind: file\npath: never.txt",
		"kind: container\nimage: flip\npublish: '5001:5000'",
	} {
		var spec map[string]any
		if err := yaml.Unmarshal([]byte(y), &spec); err != nil {
			b.Fatal(err)
		}
		lab.Steps[0].Checks = append(lab.Steps[0].Checks, checkOf(b, string(rune('a'+i)), spec))
	}

	type box struct {
		sb     sandbox.Sandbox
		socket string
		c      *client.Client
	}
	boxes := make([]box, liveSandboxes)
	for i := range boxes {
		sb, err := mgr.GetOrCreate(ctx, fmt.Sprintf("sb%02d", i), fmt.Sprintf("learner%02d", i))
		if err != nil {
			b.Fatal(err)
		}
		sock := filepath.Join(filepath.Dir(sb.Workspace()), enginebox.GraderSocketName)
		c, err := grader.NewClient(sock)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		boxes[i] = box{sb: sb, socket: sock, c: c}
	}

	// load runs every sandbox's op loop for liveRun; with watchers, it
	// records the latency of each op to the watcher's new state.
	load := func(ws []*grader.Watcher) (lat, opLat []time.Duration, cpu time.Duration, ops int) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		cpu0 := processCPU()
		deadline := time.Now().Add(liveRun)
		for i := range boxes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var sub <-chan grader.LabResult
				if ws != nil {
					ch, cancel := ws[i].Subscribe()
					defer cancel()
					sub = ch
				}
				// Spread the sandboxes over the period: a fixed rate, not bursts.
				time.Sleep(liveOpEvery * time.Duration(i) / liveSandboxes)
				tick := time.NewTicker(liveOpEvery)
				defer tick.Stop()
				tagged := false
				for time.Now().Before(deadline) {
					start := time.Now()
					var err error
					if tagged {
						_, err = boxes[i].c.ImageRemove(ctx, "flip", image.RemoveOptions{})
					} else {
						err = boxes[i].c.ImageTag(ctx, "busybox", "flip")
					}
					if err != nil {
						b.Errorf("sandbox %d: %v", i, err)
						return
					}
					opDone := time.Since(start)
					tagged = !tagged
					want := grader.StateFailed
					if tagged {
						want = grader.StatePassed
					}
					if sub != nil {
						if !waitState(sub, want, 10*time.Second) {
							b.Errorf("sandbox %d: no %s state within 10 s", i, want)
							return
						}
						mu.Lock()
						lat = append(lat, time.Since(start))
						mu.Unlock()
					}
					mu.Lock()
					ops++
					opLat = append(opLat, opDone)
					mu.Unlock()
					<-tick.C
				}
				if tagged {
					_, _ = boxes[i].c.ImageRemove(ctx, "flip", image.RemoveOptions{})
				}
			}()
		}
		wg.Wait()
		return lat, opLat, processCPU() - cpu0, ops
	}

	for range b.N {
		// The same load with nobody watching: what the engine and the load
		// generator cost in this process.
		_, baseOpLat, baseCPU, baseOps := load(nil)

		live := grader.NewLive(grader.LiveOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		ws := make([]*grader.Watcher, len(boxes))
		for i, bx := range boxes {
			ws[i] = live.Watch(grader.Target{SandboxID: bx.sb.ID(), Learner: "l", Lab: lab, Sandbox: bx.sb, Socket: bx.socket})
		}
		for _, w := range ws {
			for deadline := time.Now().Add(20 * time.Second); w.Evaluations() == 0; {
				if time.Now().After(deadline) {
					b.Fatal("a watcher never evaluated")
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		// Idle watchers: their cost with no events.
		idle0 := processCPU()
		time.Sleep(2 * time.Second)
		idleCPU := processCPU() - idle0

		lat, opLat, cpu, ops := load(ws)
		live.Close()
		if len(lat) == 0 {
			b.Fatal("no latencies")
		}
		pct := func(d []time.Duration, p float64) float64 {
			slices.Sort(d)
			return float64(d[min(len(d)-1, int(float64(len(d))*p))].Microseconds()) / 1000
		}
		secs := liveRun.Seconds()
		b.ReportMetric(float64(ops)/secs, "events/s")
		b.ReportMetric(pct(lat, 0.50), "p50-ms")
		b.ReportMetric(pct(lat, 0.99), "p99-ms")
		b.ReportMetric(pct(lat, 1), "max-ms")
		// The API call alone (inside the latency above), with and without
		// watchers.
		b.ReportMetric(pct(opLat, 0.99), "call-p99-ms")
		b.ReportMetric(pct(baseOpLat, 0.99), "base-call-p99-ms")
		b.ReportMetric(float64((cpu-baseCPU).Milliseconds())/secs, "grader-cpu-ms/s")
		b.ReportMetric(float64(baseCPU.Milliseconds())/secs, "base-cpu-ms/s")
		b.ReportMetric(float64(idleCPU.Milliseconds())/2, "idle-grader-cpu-ms/s")
		b.Logf("ops without watchers %d, with %d; evaluations %d", baseOps, ops, evals(ws))
	}
}

// waitState reads results until the first check has state want.
func waitState(sub <-chan grader.LabResult, want grader.State, timeout time.Duration) bool {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case r := <-sub:
			if len(r.Steps) > 0 && len(r.Steps[0].Checks) > 0 && r.Steps[0].Checks[0].State == want {
				return true
			}
		case <-t.C:
			return false
		}
	}
}

func evals(ws []*grader.Watcher) int {
	n := 0
	for _, w := range ws {
		n += w.Evaluations()
	}
	return n
}

// processCPU is the user + system CPU time of this process (every thread,
// not its children: the sandboxes' shells are not counted).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
