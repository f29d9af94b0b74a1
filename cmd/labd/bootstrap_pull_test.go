package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/labd/labd/sandbox/engine/image"
)

// upstreamRegistry is Debian's docker-registry on loopback standing in
// for Docker Hub (or a mirror), behind a proxy that counts requests.
type upstreamRegistry struct {
	Addr     string
	requests atomic.Int64
}

func startUpstreamRegistry(t *testing.T) *upstreamRegistry {
	t.Helper()
	const bin = "/usr/bin/docker-registry"
	if _, err := os.Stat(bin); err != nil {
		t.Fatal("docker-registry is missing: apt-get install docker-registry (deploy/deps.sh test)")
	}
	dir := t.TempDir()
	backend := closedLoopbackAddr(t)
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n", filepath.Join(dir, "root"), backend)
	if err := os.WriteFile(filepath.Join(dir, "config.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", filepath.Join(dir, "config.yml"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &upstreamRegistry{}
	target := &url.URL{Scheme: "http", Host: backend}
	proxy := httputil.NewSingleHostReverseProxy(target)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.Addr = ln.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.requests.Add(1)
		proxy.ServeHTTP(w, req)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() {
		srv.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + backend + "/v2/")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "registry.log"))
			t.Fatalf("docker-registry did not come up: %v\n%s", err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return r
}

// closedLoopbackAddr is a loopback address nothing listens on (just now).
func closedLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// pushedImage is what pushTinyImage put on the upstream.
type pushedImage struct {
	Manifest, Config, DiffID digest.Digest
}

// pushTinyImage pushes an image of one layer holding etc/upstream-marker
// and a label of its own to repo:tag on the registry at addr, with plain
// HTTP as any client would: nothing of labd makes it.
func pushTinyImage(t *testing.T, addr, repo, tag string) pushedImage {
	t.Helper()
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	mtime := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	marker := []byte("pulled from the upstream, not built here\n")
	for _, h := range []*tar.Header{
		{Typeflag: tar.TypeDir, Name: "etc/", Mode: 0o755, ModTime: mtime},
		{Typeflag: tar.TypeReg, Name: "etc/upstream-marker", Mode: 0o644, Size: int64(len(marker)), ModTime: mtime},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
	}
	tw.Write(marker)
	tw.Close()
	diffID := digest.FromBytes(raw.Bytes())
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(raw.Bytes())
	zw.Close()
	config, _ := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"created":      mtime,
		"config":       map[string]any{"Cmd": []string{"sh"}, "Labels": map[string]string{"org.example.origin": "test upstream"}},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []digest.Digest{diffID}},
		"history":      []map[string]any{{"created": mtime, "created_by": "test: ADD upstream-marker"}},
	})
	cd := digest.FromBytes(config)
	ld := digest.FromBytes(gz.Bytes())
	base := "http://" + addr + "/v2/" + repo
	for _, blob := range [][]byte{config, gz.Bytes()} {
		resp, err := http.Post(base+"/blobs/uploads/", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, err := resp.Location()
		if err != nil || resp.StatusCode != http.StatusAccepted {
			t.Fatalf("start upload: %s %v", resp.Status, err)
		}
		q := loc.Query()
		q.Set("digest", digest.FromBytes(blob).String())
		loc.RawQuery = q.Encode()
		req, _ := http.NewRequest(http.MethodPut, loc.String(), bytes.NewReader(blob))
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("upload blob: %s %s", resp.Status, b)
		}
	}
	manifest, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.docker.distribution.manifest.v2+json",
		"config":        map[string]any{"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config), "digest": cd},
		"layers":        []map[string]any{{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": gz.Len(), "digest": ld}},
	})
	req, _ := http.NewRequest(http.MethodPut, base+"/manifests/"+tag, bytes.NewReader(manifest))
	req.Header.Set("Content-Type", "application/vnd.docker.distribution.manifest.v2+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("put manifest: %s %s", resp.Status, b)
	}
	return pushedImage{Manifest: digest.FromBytes(manifest), Config: cd, DiffID: diffID}
}

// baseImage resolves ref in the base view of data and returns its ID and
// labels (the store is reopened: the CLI's is gone).
func baseImage(t *testing.T, data, ref string) (digest.Digest, image.ImageInfo) {
	t.Helper()
	s, err := image.Open(filepath.Join(data, "engine"))
	if err != nil {
		t.Fatal(err)
	}
	base, err := s.View(image.BaseView)
	if err != nil {
		t.Fatal(err)
	}
	id, err := base.Resolve(ref)
	if err != nil {
		t.Fatalf("%s in the base view: %v", ref, err)
	}
	info, err := base.Image(id)
	if err != nil {
		t.Fatal(err)
	}
	return id, info
}

func labels(info image.ImageInfo) map[string]string {
	if info.Config == nil || info.Config.Config == nil {
		return nil
	}
	return info.Config.Config.Labels
}

// runImagesCLI runs `labd images ARGS` and returns its output.
func runImagesCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := runImages(context.Background(), args, &out, &out)
	return out.String(), err
}

// lsLine is the `labd images ls` line of tag.
func lsLine(t *testing.T, data, tag string) string {
	t.Helper()
	out, err := runImagesCLI(t, "ls", "--data", data)
	if err != nil {
		t.Fatalf("labd images ls: %v\n%s", err, out)
	}
	if !strings.Contains(out, "SOURCE") {
		t.Errorf("labd images ls has no SOURCE column:\n%s", out)
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, tag+" ") {
			return l
		}
	}
	t.Fatalf("labd images ls lacks %s:\n%s", tag, out)
	return ""
}

// `labd images bootstrap busybox --hub-upstream` pulls the official image
// from the upstream (a loopback registry here), keeps it on the next run
// without asking the upstream, and falls back to the stand-in with one
// clear line when the upstream lacks the image or does not answer.
func TestImagesBootstrapPull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the image store needs root (layer ownership)")
	}
	t.Setenv("LABD_HUB_UPSTREAM", "")
	t.Setenv("LABD_BOOTSTRAP_SOURCE", "")
	up := startUpstreamRegistry(t)

	// The upstream lacks busybox: the stand-in, said so.
	lacking := t.TempDir()
	out, err := runImagesCLI(t, "bootstrap", "busybox", "--data", lacking, "--hub-upstream", up.Addr)
	if err != nil {
		t.Fatalf("bootstrap with the image missing upstream: %v\n%s", err, out)
	}
	wantLine := regexp.MustCompile(`(?m)^busybox:latest: could not pull the official image from ` + regexp.QuoteMeta(up.Addr) + ` \(.*not found.*\): building the local stand-in instead$`)
	if !wantLine.MatchString(out) {
		t.Errorf("no fallback line for the missing image:\n%s", out)
	}
	if _, info := baseImage(t, lacking, "busybox:latest"); labels(info)[image.StandInLabel] != "true" {
		t.Errorf("fallback image labels = %v; want the stand-in's", labels(info))
	}
	if l := lsLine(t, lacking, "busybox:latest"); !strings.Contains(l, "local stand-in, not the official image") {
		t.Errorf("ls of the stand-in: %q", l)
	}

	img := pushTinyImage(t, up.Addr, "library/busybox", "latest")

	// Pulled: the image pushed, byte for byte, with its repo digest.
	data := t.TempDir()
	out, err = runImagesCLI(t, "bootstrap", "busybox", "--data", data, "--hub-upstream", up.Addr)
	if err != nil {
		t.Fatalf("bootstrap: %v\n%s", err, out)
	}
	for _, want := range []string{
		"busybox:latest: pulling the official image from " + up.Addr,
		"busybox:latest: Digest: " + img.Manifest.String(),
		"busybox:latest: done: " + img.Config.Encoded()[:12] + " (pulled official image busybox@" + img.Manifest.String() + ", from " + up.Addr + ")",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("bootstrap output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "stand-in") {
		t.Errorf("bootstrap built a stand-in:\n%s", out)
	}
	id, info := baseImage(t, data, "busybox:latest")
	if id != img.Config {
		t.Errorf("busybox:latest = %s; want the pushed config %s", id, img.Config)
	}
	if want := "busybox@" + img.Manifest.String(); len(info.RepoDigests) != 1 || info.RepoDigests[0] != want {
		t.Errorf("repo digests = %q; want [%s]", info.RepoDigests, want)
	}
	if l := labels(info); l[image.StandInLabel] != "" || l["org.example.origin"] != "test upstream" {
		t.Errorf("labels = %v; want the pushed image's", l)
	}
	if b, err := os.ReadFile(filepath.Join(data, "engine", "layers", img.DiffID.Encoded(), "etc", "upstream-marker")); err != nil || !strings.HasPrefix(string(b), "pulled from the upstream") {
		t.Errorf("the pulled layer's marker: %q, %v", b, err)
	}
	if l := lsLine(t, data, "busybox:latest"); !strings.Contains(l, img.Config.Encoded()[:12]) || !strings.Contains(l, "pulled official image busybox@"+img.Manifest.String()) {
		t.Errorf("ls of the pulled image: %q", l)
	}

	// Present: kept, the upstream not even asked.
	before := up.requests.Load()
	out, err = runImagesCLI(t, "bootstrap", "busybox", "--data", data, "--hub-upstream", up.Addr)
	if err != nil || strings.TrimSpace(out) != "busybox:latest: present (pulled official image busybox@"+img.Manifest.String()+")" {
		t.Errorf("second bootstrap: %v\n%s", err, out)
	}
	if n := up.requests.Load() - before; n != 0 {
		t.Errorf("second bootstrap sent %d requests to the upstream", n)
	}

	// --source pull replaces a stand-in; auto would keep it.
	out, err = runImagesCLI(t, "bootstrap", "busybox", "--data", lacking, "--hub-upstream", up.Addr)
	if err != nil || !strings.Contains(out, "busybox:latest: present (local stand-in") {
		t.Errorf("auto with a stand-in present: %v\n%s", err, out)
	}
	out, err = runImagesCLI(t, "bootstrap", "busybox", "--data", lacking, "--hub-upstream", up.Addr, "--source", "pull")
	if err != nil {
		t.Fatalf("--source pull: %v\n%s", err, out)
	}
	if id, _ := baseImage(t, lacking, "busybox:latest"); id != img.Config {
		t.Errorf("after --source pull busybox:latest = %s; want %s\n%s", id, img.Config, out)
	}

	// --source standin never asks the upstream.
	before = up.requests.Load()
	standin := t.TempDir()
	out, err = runImagesCLI(t, "bootstrap", "busybox", "--data", standin, "--hub-upstream", up.Addr, "--source", "standin")
	if err != nil || !strings.Contains(out, "building the local stand-in") {
		t.Errorf("--source standin: %v\n%s", err, out)
	}
	if n := up.requests.Load() - before; n != 0 {
		t.Errorf("--source standin sent %d requests to the upstream", n)
	}

	// The upstream does not answer: the stand-in, said so; --source pull
	// fails instead.
	closed := closedLoopbackAddr(t)
	offline := t.TempDir()
	out, err = runImagesCLI(t, "bootstrap", "busybox", "--data", offline, "--hub-upstream", closed, "--source", "pull")
	if err == nil || !strings.Contains(err.Error(), "bootstrap busybox:latest: pull the official image from "+closed+": ") || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("--source pull with the upstream down: %v\n%s", err, out)
	}
	out, err = runImagesCLI(t, "bootstrap", "busybox", "--data", offline, "--hub-upstream", closed)
	if err != nil {
		t.Fatalf("bootstrap with the upstream down: %v\n%s", err, out)
	}
	wantLine = regexp.MustCompile(`(?m)^busybox:latest: could not pull the official image from ` + regexp.QuoteMeta(closed) + ` \(.*connection refused\): building the local stand-in instead$`)
	if !wantLine.MatchString(out) {
		t.Errorf("no fallback line for the upstream down:\n%s", out)
	}
	if _, info := baseImage(t, offline, "busybox:latest"); labels(info)[image.StandInLabel] != "true" {
		t.Errorf("fallback image labels = %v; want the stand-in's", labels(info))
	}

	// Bad flags.
	if out, err := runImagesCLI(t, "bootstrap", "busybox", "--data", offline, "--source", "mirror"); err == nil || !strings.Contains(out, `unknown image source "mirror" (known: auto, pull, standin)`) {
		t.Errorf("--source mirror: %v\n%s", err, out)
	}
	if out, err := runImagesCLI(t, "bootstrap", "busybox", "--data", t.TempDir(), "--source", "pull"); err == nil || !strings.Contains(err.Error(), "--source pull needs a registry for Docker Hub's names: set --hub-upstream") {
		t.Errorf("--source pull without an upstream: %v\n%s", err, out)
	}
}

// labd serve's background bootstrap pulls from --hub-upstream too: with
// the upstream down it logs one warning and builds the stand-in; with it
// up and --bootstrap-source pull, the stand-in is replaced by the pulled
// image, and the log says which each is.
func TestServeBootstrapPull(t *testing.T) {
	t.Setenv("LABD_HUB_UPSTREAM", "")
	t.Setenv("LABD_BOOTSTRAP_SOURCE", "")
	up := startUpstreamRegistry(t)
	img := pushTinyImage(t, up.Addr, "library/busybox", "latest")
	data := t.TempDir()

	waitBootstrap := func(url string, logs *syncBuffer) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for bootStatus(t, url+"/bootstrap/status").Poll {
			if time.Now().After(deadline) {
				t.Fatalf("bootstrap still running after 2 minutes:\n%s", logs)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	checkLog := func(logs *syncBuffer, res ...string) {
		t.Helper()
		for _, re := range res {
			if !regexp.MustCompile(re).MatchString(logs.String()) {
				t.Errorf("log lacks %s:\n%s", re, logs)
			}
		}
	}

	closed := closedLoopbackAddr(t)
	url, logs, stop := bootServe(t, data, "--bootstrap", "busybox", "--hub-upstream", closed)
	waitBootstrap(url, logs)
	if err := stop(); err != nil {
		t.Errorf("labd serve: %v", err)
	}
	checkLog(logs,
		`level=WARN msg="base image: official image not pulled, building the local stand-in instead" image=busybox upstream=`+regexp.QuoteMeta(closed)+` err=".*connection refused"`,
		`msg="base image: ready" image=busybox id=[0-9a-f]{12} elapsed=\S+ size=[0-9.]+MB source=stand-in\n`)

	md := regexp.QuoteMeta(img.Manifest.String())
	url, logs, stop = bootServe(t, data, "--bootstrap", "busybox", "--hub-upstream", up.Addr, "--bootstrap-source", "pull")
	waitBootstrap(url, logs)
	if err := stop(); err != nil {
		t.Errorf("labd serve: %v", err)
	}
	checkLog(logs,
		`msg="base image: present" image=busybox id=[0-9a-f]{12} source=stand-in\n`,
		`msg="base image: phase" image=busybox phase="pulling the official image from `+regexp.QuoteMeta(up.Addr)+`"`,
		`msg="base image: ready" image=busybox id=`+img.Config.Encoded()[:12]+` elapsed=\S+ size=[0-9.]+MB source=pulled digest=busybox@`+md+`\n`)
	if id, _ := baseImage(t, data, "busybox:latest"); id != img.Config {
		t.Errorf("busybox:latest = %s; want the pulled %s", id, img.Config)
	}

	// Next start: present, said where from, nothing asked upstream.
	before := up.requests.Load()
	url, logs, stop = bootServe(t, data, "--bootstrap", "busybox", "--hub-upstream", up.Addr)
	waitBootstrap(url, logs)
	if err := stop(); err != nil {
		t.Errorf("labd serve: %v", err)
	}
	checkLog(logs, `msg="base image: present" image=busybox id=`+img.Config.Encoded()[:12]+` source=pulled digest=busybox@`+md+`\n`)
	if strings.Contains(logs.String(), `msg="base image: preparing"`) {
		t.Errorf("a present image was prepared again:\n%s", logs)
	}
	if n := up.requests.Load() - before; n != 0 {
		t.Errorf("serve sent %d requests to the upstream for a present image", n)
	}
}
