package enginetest

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/jsonmessage"
)

func tarOf(t *testing.T, files map[string]string) io.Reader {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	tw.Close()
	return &buf
}

// TestSDK drives labd through github.com/docker/docker/client, with and
// without version negotiation.
func TestSDK(t *testing.T) {
	for _, negotiate := range []bool{true, false} {
		name := "fixed-1.51"
		opts := []client.Opt{client.WithHost(pair.Labd.Host())}
		if negotiate {
			name = "negotiated"
			opts = append(opts, client.WithAPIVersionNegotiation())
		}
		t.Run(name, func(t *testing.T) {
			c, err := client.NewClientWithOpts(opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()

			ping, err := c.Ping(ctx)
			if err != nil || ping.APIVersion != "1.51" || ping.OSType != "linux" || ping.BuilderVersion != build.BuilderV1 {
				t.Fatalf("ping: %+v %v", ping, err)
			}
			v, err := c.ServerVersion(ctx)
			if err != nil || v.APIVersion != "1.51" || v.MinAPIVersion != "1.24" {
				t.Fatalf("version: %+v %v", v, err)
			}

			evctx, evcancel := context.WithCancel(ctx)
			defer evcancel()
			evs, everrs := c.Events(evctx, events.ListOptions{Filters: filters.NewArgs(filters.Arg("type", "image"))})

			resp, err := c.ImageBuild(ctx, tarOf(t, map[string]string{
				"Dockerfile": "FROM busybox\nARG X\nRUN echo sdk-$X > /f\n",
			}), build.ImageBuildOptions{Tags: []string{"sdk:" + name}, Remove: true, Version: build.BuilderV1, BuildArgs: map[string]*string{"X": ptr("y")}})
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			err = jsonmessage.DisplayJSONMessagesStream(resp.Body, io.Discard, 0, false, func(m jsonmessage.JSONMessage) {
				var r build.Result
				if json.Unmarshal(*m.Aux, &r) == nil {
					ids = append(ids, r.ID)
				}
			})
			resp.Body.Close()
			if err != nil || len(ids) != 1 {
				t.Fatalf("build: %v, aux IDs %v", err, ids)
			}
			insp, err := c.ImageInspect(ctx, "sdk:"+name)
			if err != nil || insp.ID != ids[0] {
				t.Fatalf("inspect: %v (%s vs %v)", err, insp.ID, ids)
			}
			hist, err := c.ImageHistory(ctx, "sdk:"+name)
			if err != nil || len(hist) != 4 || hist[0].CreatedBy != "|1 X=y /bin/sh -c echo sdk-$X > /f" || hist[0].Size != 6 || hist[len(hist)-1].ID != "<missing>" {
				t.Fatalf("history: %v %+v", err, hist)
			}
			list, err := c.ImageList(ctx, image.ListOptions{})
			if err != nil || !hasTag(list, "sdk:"+name) {
				t.Fatalf("list: %v %+v", err, list)
			}
			if err := c.ImageTag(ctx, "sdk:"+name, "docker.io/other/sdk:"+name); err != nil {
				t.Fatal(err)
			}
			select {
			case ev := <-evs:
				if ev.Action != events.ActionTag || ev.Actor.ID != ids[0] {
					t.Errorf("event: %+v", ev)
				}
			case err := <-everrs:
				t.Fatalf("events: %v", err)
			case <-time.After(20 * time.Second):
				t.Fatal("no tag event")
			}
			del, err := c.ImageRemove(ctx, "other/sdk:"+name, image.RemoveOptions{})
			if err != nil || len(del) != 1 || del[0].Untagged != "other/sdk:"+name {
				t.Fatalf("remove: %v %+v", err, del)
			}
			_, err = c.ImageInspect(ctx, "nosuch:"+name)
			if !client.IsErrNotFound(err) || !strings.Contains(err.Error(), "No such image: nosuch:"+name) {
				t.Fatalf("inspect missing: %v", err)
			}
			if _, err := c.BuildCachePrune(ctx, build.CachePruneOptions{}); err != nil {
				t.Fatal(err)
			}
			if _, err := c.ImagesPrune(ctx, filters.NewArgs()); err != nil {
				t.Fatal(err)
			}
			rc, err := c.ImageSave(ctx, []string{"sdk:" + name})
			if err != nil {
				t.Fatal(err)
			}
			n, _ := io.Copy(io.Discard, rc)
			rc.Close()
			if n < 1024 {
				t.Fatalf("save wrote %d bytes", n)
			}
			// Wrong requests get Docker's errors.
			_, err = c.ImageBuild(ctx, tarOf(t, map[string]string{"Dockerfile": "FROM busybox\nRUN exit 7\n"}), build.ImageBuildOptions{Version: build.BuilderV1})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

func ptr(s string) *string { return &s }

func hasTag(list []image.Summary, tag string) bool {
	for _, s := range list {
		for _, t := range s.RepoTags {
			if t == tag {
				return true
			}
		}
	}
	return false
}

var _ = errors.New
