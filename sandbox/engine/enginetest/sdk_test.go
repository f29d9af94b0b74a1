package enginetest

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
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
	// The reference answers the same wrong requests. dockerd 20.10 speaks
	// API 1.41 at most, so its client always negotiates; the errors do not
	// depend on the version.
	var ref *client.Client
	if pair.Dockerd != nil {
		var err error
		ref, err = client.NewClientWithOpts(client.WithHost(pair.Dockerd.Host()), client.WithAPIVersionNegotiation())
		if err != nil {
			t.Fatal(err)
		}
		defer ref.Close()
	}
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
			// Wrong requests get Docker's errors: the class the SDK
			// derives from the status, and dockerd's words.
			got := sdkWrongRequests(t, ctx, c, name)
			if want := wantWrongRequests(name); got != want {
				t.Errorf("wrong requests on labd:\n%s\nwant (dockerd 20.10's answers):\n%s", got, want)
			}
			if ref != nil {
				if dgot := sdkWrongRequests(t, ctx, ref, name); dgot != got {
					t.Errorf("wrong requests differ:\nlabd:\n%s\ndockerd:\n%s", got, dgot)
				}
			}
		})
	}
}

// wantWrongRequests is what dockerd 20.10 answers in sdkWrongRequests:
// written out so that labd is held to it even without the reference
// engine, and so that a dockerd of another version shows up as a
// difference here rather than silently moving the goalposts.
func wantWrongRequests(name string) string {
	return strings.ReplaceAll(`build RUN exit 7: stream error 7: The command '/bin/sh -c exit 7' returned a non-zero code: 7
build unknown instruction: invalid argument: Error response from daemon: dockerfile parse error line 2: unknown instruction: NOSUCH
build missing Dockerfile: internal: Error response from daemon: Cannot locate specified Dockerfile: nope
build empty Dockerfile: invalid argument: Error response from daemon: the Dockerfile (Dockerfile) cannot be empty
build bad tag: internal: Error response from daemon: invalid reference format: repository name must be lowercase
build digest tag: internal: Error response from daemon: build tag cannot contain a digest
inspect missing: not found: Error response from daemon: no such image: nosuch:NAME: No such image: nosuch:NAME
history missing: not found: Error response from daemon: No such image: nosuch:NAME
tag missing: not found: Error response from daemon: No such image: nosuch:NAME
remove missing: not found: Error response from daemon: No such image: nosuch:NAME
save nosuch:NAME: not found: Error response from daemon: reference does not exist
save nosuch: not found: Error response from daemon: No such image: nosuch
inspect missing, no tag: not found: Error response from daemon: no such image: nosuch: No such image: nosuch:latest
remove ID with two repositories: conflict: Error response from daemon: conflict: unable to delete <id12> (must be forced) - image is referenced in multiple repositories
remove reference in use: conflict: Error response from daemon: conflict: unable to remove repository reference "sdkerr:NAME" (must force) - container <id12> is using its referenced image <id12>
list unknown filter: invalid argument: Error response from daemon: Invalid filter 'nosuch'
prune unknown filter: invalid argument: Error response from daemon: Invalid filter 'nosuch'
`, "NAME", name)
}

var sha256ID = regexp.MustCompile(`sha256:[0-9a-f]{64}`)

// errLine is one wrong request's outcome: the errdefs class the SDK
// derived from the HTTP status (or, for a build, the error in the JSON
// stream with its code) and the message. Image and container IDs are
// replaced: they hash creation times, so they differ between engines.
func errLine(what string, err error) string {
	var kind string
	var je *jsonmessage.JSONError
	switch {
	case err == nil:
		kind = "no error"
	case errors.As(err, &je):
		kind = fmt.Sprintf("stream error %d", je.Code)
	case cerrdefs.IsNotFound(err):
		kind = "not found"
	case cerrdefs.IsInvalidArgument(err):
		kind = "invalid argument"
	case cerrdefs.IsConflict(err):
		kind = "conflict"
	case cerrdefs.IsPermissionDenied(err):
		kind = "forbidden"
	case cerrdefs.IsNotImplemented(err):
		kind = "not implemented"
	case cerrdefs.IsInternal(err):
		kind = "internal"
	default:
		kind = "unclassified"
	}
	msg := ""
	if err != nil {
		msg = sha256ID.ReplaceAllString(err.Error(), "sha256:<id>")
		msg = shortID.ReplaceAllString(msg, "<id12>")
	}
	return fmt.Sprintf("%s: %s: %s\n", what, kind, msg)
}

// sdkWrongRequests makes wrong requests through the SDK client c and
// returns their errors, one errLine each. It builds and removes its own
// image and container, so it runs the same on labd and on dockerd.
func sdkWrongRequests(t *testing.T, ctx context.Context, c *client.Client, name string) string {
	t.Helper()
	var b strings.Builder
	buildErr := func(files map[string]string, opts build.ImageBuildOptions) error {
		opts.Version, opts.Remove, opts.ForceRemove = build.BuilderV1, true, true
		resp, err := c.ImageBuild(ctx, tarOf(t, files), opts)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		return jsonmessage.DisplayJSONMessagesStream(resp.Body, io.Discard, 0, false, nil)
	}
	b.WriteString(errLine("build RUN exit 7", buildErr(map[string]string{"Dockerfile": "FROM busybox\nRUN exit 7\n"}, build.ImageBuildOptions{})))
	b.WriteString(errLine("build unknown instruction", buildErr(map[string]string{"Dockerfile": "FROM busybox\nNOSUCH x\n"}, build.ImageBuildOptions{})))
	b.WriteString(errLine("build missing Dockerfile", buildErr(map[string]string{"Dockerfile": "FROM busybox\n"}, build.ImageBuildOptions{Dockerfile: "nope"})))
	b.WriteString(errLine("build empty Dockerfile", buildErr(map[string]string{"Dockerfile": ""}, build.ImageBuildOptions{})))
	b.WriteString(errLine("build bad tag", buildErr(map[string]string{"Dockerfile": "FROM busybox\n"}, build.ImageBuildOptions{Tags: []string{"Bad:" + name}})))
	b.WriteString(errLine("build digest tag", buildErr(map[string]string{"Dockerfile": "FROM busybox\n"}, build.ImageBuildOptions{Tags: []string{"x@sha256:" + strings.Repeat("0", 64)}})))

	missing := "nosuch:" + name
	_, err := c.ImageInspect(ctx, missing)
	b.WriteString(errLine("inspect missing", err))
	_, err = c.ImageHistory(ctx, missing)
	b.WriteString(errLine("history missing", err))
	b.WriteString(errLine("tag missing", c.ImageTag(ctx, missing, "other:"+name)))
	_, err = c.ImageRemove(ctx, missing, image.RemoveOptions{})
	b.WriteString(errLine("remove missing", err))
	for _, ref := range []string{missing, "nosuch"} {
		rc, err := c.ImageSave(ctx, []string{ref})
		if err == nil {
			// An engine that starts the stream before it knows the image
			// can only report the error by cutting the archive short.
			_, err = io.Copy(io.Discard, rc)
			rc.Close()
		}
		b.WriteString(errLine("save "+ref, err))
	}
	_, err = c.ImageInspect(ctx, "nosuch")
	b.WriteString(errLine("inspect missing, no tag", err))

	tag1, tag2 := "sdkerr:"+name, "sdkerr2:"+name
	if err := buildErr(map[string]string{"Dockerfile": "FROM busybox\nRUN echo " + name + " > /f\n"}, build.ImageBuildOptions{Tags: []string{tag1, tag2}}); err != nil {
		t.Fatalf("build %s: %v", tag1, err)
	}
	insp, err := c.ImageInspect(ctx, tag1)
	if err != nil {
		t.Fatal(err)
	}
	defer c.ImageRemove(context.Background(), insp.ID, image.RemoveOptions{Force: true})
	_, err = c.ImageRemove(ctx, insp.ID, image.RemoveOptions{})
	b.WriteString(errLine("remove ID with two repositories", err))
	if _, err := c.ImageRemove(ctx, tag2, image.RemoveOptions{}); err != nil {
		t.Fatalf("untag %s: %v", tag2, err)
	}
	ctr, err := c.ContainerCreate(ctx, &container.Config{Image: tag1, Cmd: []string{"true"}}, nil, nil, nil, "sdkerr-"+strings.ReplaceAll(name, ".", "-"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.ContainerRemove(context.Background(), ctr.ID, container.RemoveOptions{Force: true})
	_, err = c.ImageRemove(ctx, tag1, image.RemoveOptions{})
	b.WriteString(errLine("remove reference in use", err))

	_, err = c.ImageList(ctx, image.ListOptions{Filters: filters.NewArgs(filters.Arg("nosuch", "x"))})
	b.WriteString(errLine("list unknown filter", err))
	_, err = c.ImagesPrune(ctx, filters.NewArgs(filters.Arg("nosuch", "x")))
	b.WriteString(errLine("prune unknown filter", err))
	return b.String()
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
