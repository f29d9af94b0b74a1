package enginetest

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Device nodes and FIFOs in build contexts and images, against the
// reference. dockerd extracts them from the context as they are (mknod,
// mkfifo) and copies them as nodes wherever it never opens them (a
// directory COPY); where it opens one (the Dockerfile, .dockerignore, a
// single-file COPY or ADD, --user against /etc/passwd) it reads the
// host's device or waits forever on the FIFO. labd never opens them:
// the Dockerfile and .dockerignore must be regular files, a single node
// is copied as a node, /etc/passwd and /etc/group must be regular files.
// docs/engine.md lists these differences.

// special is one context tar entry: kind "file", "dir", "chr" (body
// "major,minor") or "fifo".
type special struct{ name, kind, body string }

func specialTar(t *testing.T, entries []special) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o644, ModTime: time.Unix(1e9, 0)}
		switch e.kind {
		case "file":
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.body))
		case "dir":
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		case "chr":
			h.Typeflag = tar.TypeChar
			fmt.Sscanf(e.body, "%d,%d", &h.Devmajor, &h.Devminor)
		case "fifo":
			h.Typeflag = tar.TypeFifo
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.kind == "file" {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	return buf.Bytes()
}

// buildResult is a build request's answer: the HTTP status and, for an
// error answer, its message; for a stream, what RUN printed and the
// stream's error.
type buildResult struct {
	status  int
	message string // an error answer's message, or the stream's error
	stream  string
}

func (r buildResult) String() string {
	return fmt.Sprintf("status %d, message %q, stream %q", r.status, r.message, r.stream)
}

// postBuild sends ctx as a build context; a request that has not
// answered within a minute fails the test (a blocked engine).
func postBuild(t *testing.T, e *Engine, ctxTar []byte, tag string) buildResult {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", e.Socket)
	}}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	q := url.Values{"t": {tag}, "rm": {"1"}}
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://engine/v1.41/build?"+q.Encode(), bytes.NewReader(ctxTar))
	req.Header.Set("Content-Type", "application/x-tar")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s: build %s: %v", e.Name, tag, err)
	}
	defer resp.Body.Close()
	r := buildResult{status: resp.StatusCode}
	if resp.StatusCode != http.StatusOK {
		var m struct{ Message string }
		b, _ := io.ReadAll(resp.Body)
		json.Unmarshal(b, &m)
		r.message = m.Message
		return r
	}
	var stream strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var m struct {
			Stream string
			Error  string
		}
		json.Unmarshal(sc.Bytes(), &m)
		stream.WriteString(m.Stream)
		if m.Error != "" {
			r.message = m.Error
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("%s: build %s: %v", e.Name, tag, err)
	}
	// What RUN printed: lines from the container, not the builder's.
	for _, l := range strings.Split(stream.String(), "\n") {
		if strings.HasPrefix(l, "Step ") || strings.HasPrefix(l, " ---> ") || strings.HasPrefix(l, "Removing ") ||
			strings.HasPrefix(l, "Successfully ") || strings.TrimSpace(l) == "" {
			continue
		}
		r.stream += l + "\n"
	}
	return r
}

func TestSpecialFilesInBuildContext(t *testing.T) {
	const lsDir = "FROM busybox\nCOPY d /d\nRUN ls -l /d | sed 's/  *[A-Z][a-z][a-z] .*:..//; s/  *[A-Z][a-z][a-z]  *[0-9]*  *[0-9]* / /'\n"
	const lsOne = "RUN ls -l /copy | sed 's/  *[A-Z][a-z][a-z] .*//'\n"
	dir := []special{{"d/dev", "chr", "1,5"}, {"d/fifo", "fifo", ""}, {"d/f", "file", "x"}}
	for i, tc := range []struct {
		name    string
		entries []special
		// both: what both engines answer; else labd and dockerd.
		both, labd, dockerd *buildResult
		// dockerdBlocks: dockerd waits forever here (a FIFO it opens);
		// only labd is asked.
		dockerdBlocks bool
	}{
		{
			name:    "unused device and FIFO",
			entries: []special{{"Dockerfile", "file", "FROM busybox\nRUN echo built\n"}, {"dev", "chr", "1,5"}, {"fifo", "fifo", ""}},
			both:    &buildResult{status: 200, stream: "built\n"},
		},
		{
			name:    "COPY a directory with a device and a FIFO",
			entries: append([]special{{"Dockerfile", "file", lsDir}}, dir...),
			both: &buildResult{status: 200, stream: "total 4\n" +
				"crw-r--r--    1 root     root        1,   5 dev\n" +
				"-rw-r--r--    1 root     root             1 f\n" +
				"prw-r--r--    1 root     root             0 fifo\n"},
		},
		{
			// COPY --from keeps owners, and copies nodes as nodes.
			name: "COPY --from a stage with nodes",
			// The node comes from the context: labd's build steps run in a
			// user namespace, where mknod is refused (as under dockerd
			// with userns-remap).
			entries: []special{{"null", "chr", "1,3"}, {"Dockerfile", "file", "FROM busybox AS src\n" +
				"COPY null /out/null\n" +
				"RUN echo x > /out/f && chown 1000:1000 /out/f && mkfifo /out/fifo && chown 7:7 /out/fifo\n" +
				"FROM busybox\nCOPY --from=src /out /out\n" +
				"RUN ls -ln /out | sed 's/  *[A-Z][a-z][a-z] .*:..//; s/  *[A-Z][a-z][a-z]  *[0-9]*  *[0-9]* / /'\n"}},
			both: &buildResult{status: 200, stream: "total 4\n" +
				"-rw-r--r--    1 1000     1000             2 f\n" +
				"prw-r--r--    1 7        7                0 fifo\n" +
				"crw-r--r--    1 0        0           1,   3 null\n"},
		},
		{
			name:    "COPY /dev/null's node",
			entries: []special{{"Dockerfile", "file", "FROM busybox\nCOPY dev /copy\n" + lsOne}, {"dev", "chr", "1,3"}},
			both:    &buildResult{status: 200, stream: "crw-r--r--    1 root     root        1,   3\n"},
		},
		{
			// dockerd reads the device to copy it and fails on its
			// bytes; labd copies the node it never reads.
			name:    "COPY /dev/zero's node",
			entries: []special{{"Dockerfile", "file", "FROM busybox\nCOPY dev /copy\n" + lsOne}, {"dev", "chr", "1,5"}},
			labd:    &buildResult{status: 200, stream: "crw-r--r--    1 root     root        1,   5\n"},
			dockerd: &buildResult{status: 200, message: "failed to copy files: failed to copy file: archive/tar: write too long"},
		},
		{
			name:    "ADD /dev/zero's node",
			entries: []special{{"Dockerfile", "file", "FROM busybox\nADD dev /copy\n" + lsOne}, {"dev", "chr", "1,5"}},
			labd:    &buildResult{status: 200, stream: "crw-r--r--    1 root     root        1,   5\n"},
			dockerd: &buildResult{status: 200, message: "failed to copy files: failed to copy file: archive/tar: write too long"},
		},
		{
			name:          "COPY a FIFO",
			entries:       []special{{"Dockerfile", "file", "FROM busybox\nCOPY fifo /copy\n" + lsOne}, {"fifo", "fifo", ""}},
			labd:          &buildResult{status: 200, stream: "prw-r--r--    1 root     root             0\n"},
			dockerdBlocks: true,
		},
		{
			name:          "ADD a FIFO",
			entries:       []special{{"Dockerfile", "file", "FROM busybox\nADD fifo /copy\n" + lsOne}, {"fifo", "fifo", ""}},
			labd:          &buildResult{status: 200, stream: "prw-r--r--    1 root     root             0\n"},
			dockerdBlocks: true,
		},
		{
			// dockerd reads /dev/null's node: empty.
			name:    "Dockerfile is /dev/null's node",
			entries: []special{{"Dockerfile", "chr", "1,3"}},
			labd:    &buildResult{status: 500, message: "unexpected error reading Dockerfile: open Dockerfile: not a regular file (character device)"},
			dockerd: &buildResult{status: 400, message: "the Dockerfile (Dockerfile) cannot be empty"},
		},
		{
			// dockerd reads /dev/zero's until its parser gives up.
			name:    "Dockerfile is /dev/zero's node",
			entries: []special{{"Dockerfile", "chr", "1,5"}},
			labd:    &buildResult{status: 500, message: "unexpected error reading Dockerfile: open Dockerfile: not a regular file (character device)"},
			dockerd: &buildResult{status: 400, message: "failed to parse Dockerfile: file with no instructions"},
		},
		{
			name:          "Dockerfile is a FIFO",
			entries:       []special{{"Dockerfile", "fifo", ""}},
			labd:          &buildResult{status: 500, message: "unexpected error reading Dockerfile: open Dockerfile: not a regular file (FIFO)"},
			dockerdBlocks: true,
		},
		{
			name:    ".dockerignore is /dev/zero's node",
			entries: []special{{"Dockerfile", "file", "FROM busybox\n"}, {".dockerignore", "chr", "1,5"}},
			labd:    &buildResult{status: 500, message: "Error reading .dockerignore: open .dockerignore: not a regular file (character device)"},
			dockerd: &buildResult{status: 500, message: "Error reading .dockerignore: bufio.Scanner: token too long"},
		},
		{
			name:          ".dockerignore is a FIFO",
			entries:       []special{{"Dockerfile", "file", "FROM busybox\n"}, {".dockerignore", "fifo", ""}},
			labd:          &buildResult{status: 500, message: "Error reading .dockerignore: open .dockerignore: not a regular file (FIFO)"},
			dockerdBlocks: true,
		},
	} {
		tag := fmt.Sprintf("special-%d", i)
		t.Run(tc.name, func(t *testing.T) {
			engines := both(t)
			if tc.dockerdBlocks {
				engines = engines[:1]
			}
			ctxTar := specialTar(t, tc.entries)
			for _, e := range engines {
				want := tc.both
				if want == nil {
					want = map[string]*buildResult{"labd": tc.labd, "dockerd": tc.dockerd}[e.Name]
				}
				got := postBuild(t, e, ctxTar, tag)
				if got.String() != want.String() {
					t.Errorf("%s:\n got %s\nwant %s", e.Name, got, want)
				}
			}
		})
	}
}

// TestSpecialUserFiles: `docker run -u` on an image whose /etc/passwd is
// a device node. dockerd reads it (/dev/zero until its scanner gives up;
// /dev/null as an empty file, or forever on a FIFO); labd refuses it
// unread in the same words.
func TestSpecialUserFiles(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// The nodes come from the build context (COPY, which the engine does
	// on the host): labd's RUN steps are in a user namespace, where mknod
	// is refused.
	images := map[string][]special{
		// A directory COPY: dockerd reads a single-file COPY's node.
		"special-passwd-zero": {{"etc", "dir", ""}, {"etc/passwd", "chr", "1,5"}, {"Dockerfile", "file", "FROM busybox\nCOPY etc/ /etc/\n"}},
		"special-passwd-null": {{"etc", "dir", ""}, {"etc/passwd", "chr", "1,3"}, {"Dockerfile", "file", "FROM busybox\nCOPY etc/ /etc/\n"}},
		"special-passwd-fifo": {{"Dockerfile", "file", "FROM busybox\nRUN rm /etc/passwd && mkfifo /etc/passwd\n"}},
		"special-group-fifo":  {{"Dockerfile", "file", "FROM busybox\nRUN rm /etc/group && mkfifo /etc/group\n"}},
	}
	engines := both(t)
	for _, e := range engines {
		for tag, entries := range images {
			if r := postBuild(t, e, specialTar(t, entries), tag); r.status != 200 || r.message != "" {
				t.Fatalf("%s: build %s: %s", e.Name, tag, r)
			}
		}
	}
	for _, tc := range []struct {
		image, user   string
		labd, dockerd string // stdout+stderr and exit code
		dockerdBlocks bool
	}{
		{"special-passwd-zero", "nobody",
			"docker: Error response from daemon: unable to find user nobody: open /etc/passwd: not a regular file (character device).\nexit 125",
			"docker: Error response from daemon: unable to find user nobody: bufio.Scanner: token too long.\nexit 125", false},
		{"special-passwd-zero", "",
			"docker: Error response from daemon: unable to find user 0: open /etc/passwd: not a regular file (character device).\nexit 125",
			"docker: Error response from daemon: unable to find user 0: bufio.Scanner: token too long.\nexit 125", false},
		{"special-passwd-null", "0",
			"docker: Error response from daemon: unable to find user 0: open /etc/passwd: not a regular file (character device).\nexit 125",
			"uid=0 gid=0(root) groups=0(root)\nexit 0", false},
		{"special-passwd-fifo", "nobody",
			"docker: Error response from daemon: unable to find user nobody: open /etc/passwd: not a regular file (FIFO).\nexit 125", "", true},
		{"special-group-fifo", "nobody",
			"docker: Error response from daemon: unable to find groups for spec nobody: open /etc/group: not a regular file (FIFO).\nexit 125", "", true},
	} {
		for _, e := range engines {
			want := map[string]string{"labd": tc.labd, "dockerd": tc.dockerd}[e.Name]
			if e.Name == "dockerd" && tc.dockerdBlocks {
				continue
			}
			args := []string{"run", "--rm"}
			if tc.user != "" {
				args = append(args, "-u", tc.user)
			}
			rctx, rcancel := context.WithTimeout(ctx, time.Minute)
			r := e.Docker(rctx, DockerCLI20, "", nil, append(args, tc.image, "id")...)
			rcancel()
			// The CLI may log that its wait for the container that never
			// started ended: not the engine's answer.
			stderr := regexp.MustCompile(`(?m)^time=".*level=error msg="error waiting for container.*\n`).ReplaceAllString(r.Stderr, "")
			got := fmt.Sprintf("%s%sexit %d", r.Stdout, stderr, r.Code)
			if got != want {
				t.Errorf("%s: docker run -u %q %s:\n got %q\nwant %q", e.Name, tc.user, tc.image, got, want)
			}
		}
	}
}
