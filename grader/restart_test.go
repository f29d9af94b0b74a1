package grader_test

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/labd/labd/grader"
	"github.com/labd/labd/sandbox"
	"github.com/labd/labd/sandbox/engine"
	"github.com/labd/labd/sandbox/engine/distribution"
	"github.com/labd/labd/sandbox/engine/image"
	"github.com/labd/labd/sandbox/enginebox"
	"github.com/labd/labd/sandbox/nsbox"
)

// startLabd opens the engine and sandbox manager on data as labd serve
// does, and returns the sandbox sid with a grader Env on it.
func startLabd(t *testing.T, data, regHost, sid string) (*box, *sandbox.Manager) {
	t.Helper()
	ctx := context.Background()
	shared, err := engine.OpenShared(data, engine.SharedOptions{Registry: distribution.Options{HubStandIn: regHost}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := image.BootstrapBusybox(ctx, shared.Store); err != nil {
		t.Fatal(err)
	}
	mgr := sandbox.NewManager(&enginebox.Provider{Inner: nsbox.New(nsbox.Options{}), Shared: shared}, sandbox.ManagerOptions{DataDir: data, IdleTimeout: -1})
	sb, err := mgr.GetOrCreate(ctx, sid, "alice")
	if err != nil {
		mgr.Close(ctx)
		t.Fatal(err)
	}
	c, err := grader.NewClient(filepath.Join(filepath.Dir(sb.Workspace()), enginebox.GraderSocketName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &box{t: t, sb: sb, env: &grader.Env{Docker: c, Workspace: sb.Workspace(), Sandbox: sb}, reg: regHost}, mgr
}

// records reads GET /labd/v1/records as any client of the socket would.
func records(t *testing.T, b *box) grader.Records {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://docker/labd/v1/records", nil)
	resp, err := b.env.Docker.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /labd/v1/records: %s", resp.Status)
	}
	var r grader.Records
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestRecordsSurviveRestart: what the engine recorded (builds with cached
// steps, API calls, container lifecycle, pushes) is still served after
// labd's engine and sandboxes are closed and opened again on the same data
// directory, so build, image, command and push checks that passed still
// pass when re-verified.
func TestRecordsSurviveRestart(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("needs root (namespaces, containers); CI runs as root")
	}
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(reg.Close)
	regHost := strings.TrimPrefix(reg.URL, "http://")
	data, err := os.MkdirTemp("", "grader-restart-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(data) })

	checks := map[string]string{
		"build":   "kind: build\nimage: hello-app\ncache_reused: true\ncached_min: 1\nchanged: true",
		"image":   "kind: image\nimage: hello-app\nbuilt: true\ndockerfile: Dockerfile",
		"command": "kind: command\ncommand: history",
		"push":    "kind: push\nrepository: '{{user}}/hello-app'\nimage: hello-app\nexisting_min: 1",
	}
	b, mgr := startLabd(t, data, regHost, "sb-restart")
	b.sh("printf '" + strings.ReplaceAll(dockerfile, "\n", `\n`) + "' > Dockerfile && echo one > app.txt && docker build -t hello-app .")
	b.sh("docker tag hello-app alice/hello-app && docker push alice/hello-app")
	b.sh("echo two > app.txt && docker build -t hello-app . && docker tag hello-app alice/hello-app && docker push alice/hello-app")
	b.sh("docker image history hello-app && docker run --name once busybox true")
	for name, y := range checks {
		b.want(y, grader.StatePassed, "")
		t.Logf("%s check passed before the restart", name)
	}
	before := records(t, b)
	if len(before.Builds) != 2 || len(before.Containers) == 0 {
		t.Fatalf("before the restart: %d builds, %d container records", len(before.Builds), len(before.Containers))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := mgr.Close(ctx); err != nil {
		t.Fatalf("close sandboxes: %v", err)
	}
	if _, err := os.Stat(filepath.Join(data, "engine", "records", "sb-restart.jsonl")); err != nil {
		t.Fatalf("no record log on disk: %v", err)
	}

	b2, mgr2 := startLabd(t, data, regHost, "sb-restart")
	defer mgr2.Close(context.Background())
	after := records(t, b2)
	if len(after.Builds) != len(before.Builds) || len(after.Transfers) != len(before.Transfers) {
		t.Fatalf("after the restart: %d builds, %d transfers; before: %d, %d", len(after.Builds), len(after.Transfers), len(before.Builds), len(before.Transfers))
	}
	second := after.Builds[1]
	cached := 0
	for _, s := range second.Steps {
		if s.Cached {
			cached++
		}
	}
	if second.ImageID != before.Builds[1].ImageID || cached == 0 || len(second.Steps) != len(before.Builds[1].Steps) {
		t.Fatalf("second build after the restart = %+v, want it as before with cached steps", second)
	}
	var history, died bool
	for _, c := range after.Calls {
		history = history || strings.HasSuffix(c.Path, "/history")
	}
	for _, c := range after.Containers {
		died = died || c.Name == "once" && c.Action == "die"
	}
	if !history || !died {
		t.Fatalf("after the restart: history call recorded %v, container 'once' died recorded %v\ncalls %+v\ncontainers %+v", history, died, after.Calls, after.Containers)
	}
	for name, y := range checks {
		b2.want(y, grader.StatePassed, "")
		t.Logf("%s check still passes after the restart", name)
	}
}
