package enginetest

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"
	"github.com/docker/docker/pkg/stdcopy"
)

// TestSDKContainers runs a container's life through the Go SDK (API 1.51,
// no negotiation) on labd.
func TestSDKContainers(t *testing.T) {
	cli, err := client.NewClientWithOpts(client.WithHost(pair.Labd.Host()))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	created, err := cli.ContainerCreate(ctx, &container.Config{
		Image: "busybox", Cmd: []string{"sh", "-c", "echo out; echo err >&2; exit 6"},
	}, nil, nil, nil, "sdk-c")
	if err != nil {
		t.Fatal(err)
	}
	defer cli.ContainerRemove(context.Background(), created.ID, container.RemoveOptions{Force: true})
	if _, err := cli.ContainerCreate(ctx, &container.Config{Image: "busybox"}, nil, nil, nil, "sdk-c"); !errdefs.IsConflict(err) {
		t.Errorf("duplicate name: %v, want a conflict", err)
	}
	if _, err := cli.ContainerCreate(ctx, &container.Config{Image: "nosuchimage"}, nil, nil, nil, ""); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "No such image: nosuchimage:latest") {
		t.Errorf("missing image: %v", err)
	}
	waitC, errC := cli.ContainerWait(ctx, created.ID, container.WaitConditionNextExit)
	if err := cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-waitC:
		if res.StatusCode != 6 {
			t.Errorf("exit %d, want 6", res.StatusCode)
		}
	case err := <-errC:
		t.Fatal(err)
	}
	info, err := cli.ContainerInspect(ctx, created.ID[:10])
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "/sdk-c" || info.State.Status != "exited" || info.State.ExitCode != 6 || info.Path != "sh" {
		t.Errorf("inspect: name %q state %+v path %q", info.Name, info.State, info.Path)
	}
	rc, err := cli.ContainerLogs(ctx, "sdk-c", container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if _, err := stdcopy.StdCopy(&stdout, &stderr, rc); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if stdout.String() != "out\n" || stderr.String() != "err\n" {
		t.Errorf("logs: %q %q", stdout.String(), stderr.String())
	}
	if err := cli.ContainerStop(ctx, "sdk-c", container.StopOptions{}); err != nil {
		t.Errorf("stop of a stopped container: %v (the SDK takes 304 as success)", err)
	}
	list, err := cli.ContainerList(ctx, container.ListOptions{All: true})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range list {
		if c.ID == created.ID {
			found = c.State == "exited" && strings.HasPrefix(c.Status, "Exited (6)") && c.Names[0] == "/sdk-c"
		}
	}
	if !found {
		t.Errorf("container not listed as exited: %+v", list)
	}
	if _, err := cli.ContainerInspect(ctx, "nosuch"); !errdefs.IsNotFound(err) {
		t.Errorf("inspect unknown: %v", err)
	}
	var nf interface{ NotFound() }
	if err := cli.ContainerRemove(ctx, "sdk-c", container.RemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.ContainerInspect(ctx, created.ID); !errors.As(err, &nf) && !errdefs.IsNotFound(err) {
		t.Errorf("after rm: %v", err)
	}
}
