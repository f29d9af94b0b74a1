package enginetest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

const classicDockerfile = `FROM busybox
RUN echo flask > /requirements.txt
CMD ["sh","-c","httpd -f -p 5000"]
COPY app.py /app.py
`

type diffCase struct {
	name  string
	files map[string]string
	args  []string
	// change, when set, edits the context before a second build whose
	// output is compared too; rebuildHits is how many of its steps the
	// cache must answer.
	change      map[string]string
	rebuildHits int
}

var diffCases = []diffCase{
	{
		name:   "classic",
		files:  map[string]string{"Dockerfile": classicDockerfile, "app.py": "print('hello world!')\n"},
		change: map[string]string{"app.py": "print('hello again!')\n"},
		// Only the changed COPY (the last step) misses.
		rebuildHits: 2,
	},
	{
		// The second build fails on a tag the first one set: the tag
		// must stay on the first image.
		name: "failing-rebuild",
		files: map[string]string{
			"Dockerfile": "FROM busybox\nRUN echo prepared > /prepared\nCOPY check.sh /check.sh\nRUN sh /check.sh\n",
			"check.sh":   "exit 0\n",
		},
		change:      map[string]string{"check.sh": "echo broken >&2; exit 4\n"},
		rebuildHits: 1,
	},
	{
		name: "multistage",
		files: map[string]string{
			"Dockerfile": `FROM busybox AS builder
WORKDIR /src
COPY . .
RUN mkdir -p /out && cat hello.txt sub/a.txt > /out/result && chmod 640 /out/result
FROM busybox
COPY --from=builder /out/result /result
COPY --from=0 /src/sub /sub
COPY --from=busybox /bin/true /copied-true
`,
			"hello.txt":     "hello\n",
			"sub/a.txt":     "a\n",
			"sub/b.sh|0755": "#!/bin/sh\necho b\n",
		},
	},
	{
		name: "args-env",
		files: map[string]string{"Dockerfile": `ARG BASE=busybox
FROM $BASE
ARG GREETING=hi
ENV NAME=world OTHER="two words"
RUN echo "$GREETING $NAME" > /greet
LABEL a=b "c d"=e
EXPOSE 80/tcp 5000
VOLUME /data
STOPSIGNAL SIGINT
USER nobody
WORKDIR /work/dir
USER root
SHELL ["/bin/sh", "-c"]
HEALTHCHECK --interval=5s CMD true
ONBUILD RUN echo triggered
ENTRYPOINT ["sh","-c"]
CMD echo $NAME
`},
		args: []string{"--build-arg", "GREETING=hello", "--build-arg", "UNUSED=1"},
	},
	{
		// Every instruction that sets image config, in the forms whose
		// results are easy to get subtly wrong: expansion, overrides,
		// ranges, resets.
		name: "config-forms",
		files: map[string]string{"Dockerfile": `FROM busybox
MAINTAINER Lab Author <author@example.com>
ARG PORT=8080
ARG FLAVOR
ENV APP_PORT=$PORT APP_HOME=/srv/app
LABEL version="1.0" description="a \"quoted\" label" port=$APP_PORT
LABEL version="1.1"
EXPOSE $APP_PORT 9000-9002/udp 53/udp 53/tcp
VOLUME ["/var/lib/app", "/var/log/app"]
WORKDIR $APP_HOME
WORKDIR sub
USER 1000:1000
RUN echo "flavor=$FLAVOR port=$PORT" > /tmp/flavor
USER nobody
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=4 CMD wget -q -O- http://localhost:$APP_PORT/ || exit 1
STOPSIGNAL 9
ENTRYPOINT exec httpd -f -p $APP_PORT
CMD ["--verbose"]
`},
		args: []string{"--build-arg", "FLAVOR=mint", "--label", "from.cli=yes"},
		// A context change no step uses: the configs the first build
		// committed must still be hits for every step.
		change:      map[string]string{"unused.txt": "rebuild\n"},
		rebuildHits: 18,
	},
	{
		// dockerd's container create fills the zero intervals of NONE
		// from the previous health check, in the config the stage
		// shares, so they stay in every later image. No rebuild here:
		// dockerd 20.10's cache ignores health checks, labd's compares
		// them as moby 25 and later do (../shared/reference/
		// docker-engine-api.md), so from HEALTHCHECK NONE on a rebuild
		// hits on dockerd and misses on labd.
		name: "healthcheck-none",
		files: map[string]string{"Dockerfile": `FROM busybox
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=4 CMD true
HEALTHCHECK NONE
LABEL after=none
`},
	},
	{
		// RUN after VOLUME sees the image's files there, but what it
		// writes goes to an anonymous volume, not the layer.
		name: "volume-run",
		files: map[string]string{"Dockerfile": `FROM busybox
RUN mkdir /data && echo kept > /data/a
VOLUME /data
RUN echo lost > /data/b && cat /data/a && ls /data
RUN ls /data
`},
	},
	{
		// FROM a stage with ONBUILD runs its triggers; empty CMD and
		// ENTRYPOINT reset what the base set.
		name: "onbuild",
		files: map[string]string{"Dockerfile": `FROM busybox AS base
ONBUILD RUN echo onbuild > /onbuild.txt
ONBUILD LABEL triggered=yes
ENV STAGE=base
FROM base
RUN cat /onbuild.txt
ENTRYPOINT []
CMD []
`},
	},
	{
		name: "scratch",
		files: map[string]string{
			"Dockerfile": "FROM scratch\nCOPY hello /hello\nENV A=1\nCMD [\"/hello\"]\n",
			"hello":      "not a binary\n",
		},
	},
	{
		name: "dockerignore",
		files: map[string]string{
			"Dockerfile":    "FROM busybox\nCOPY . /app\nRUN ls -la /app | wc -l > /count\n",
			".dockerignore": "secret.txt\n*.log\n",
			"secret.txt":    "s3cr3t\n",
			"debug.log":     "log\n",
			"keep.txt":      "keep\n",
		},
	},
	{
		name: "copy-forms",
		files: map[string]string{
			"Dockerfile": `FROM busybox
COPY dir /dir
COPY dir/ /dir2/
COPY *.txt /texts/
COPY --chown=1000:1000 one.txt /owned/one.txt
COPY --chown=nobody one.txt two.txt /nobody/
COPY link.txt /link-followed
COPY script.sh /usr/local/bin/
ADD archive.tar /extracted/
ADD one.txt /added
WORKDIR /app
COPY one.txt .
RUN chmod 600 one.txt && ln -s one.txt alias && rm /etc/group
`,
			"dir/x|0600":     "x\n",
			"dir/sub/y":      "y\n",
			"dir/ln@link":    "x",
			"one.txt":        "one\n",
			"two.txt":        "two\n",
			"link.txt@link":  "one.txt",
			"script.sh|0755": "#!/bin/sh\n",
			"archive.tar":    "", // replaced by a real tar below
		},
	},
	{
		name:  "failing-run",
		files: map[string]string{"Dockerfile": "FROM busybox\nRUN echo before\nRUN echo err >&2; exit 3\nRUN echo never\n"},
	},
	{
		name:  "unknown-instruction",
		files: map[string]string{"Dockerfile": "FROM busybox\nFOO bar\n"},
	},
	{
		name:  "copy-outside",
		files: map[string]string{"Dockerfile": "FROM busybox\nCOPY ../x /x\n"},
	},
	{
		name:  "copy-missing",
		files: map[string]string{"Dockerfile": "FROM busybox\nCOPY nothere /x\n"},
	},
	{
		name:  "add-url",
		files: map[string]string{"Dockerfile": "FROM busybox\nCOPY http://example.com/x /x\n"},
	},
	{
		name:  "empty-dockerfile",
		files: map[string]string{"Dockerfile": ""},
	},
}

func TestDifferentialBuilds(t *testing.T) {
	if pair.Dockerd == nil {
		t.Skip("LABD_NO_DOCKERD=1: no reference engine")
	}
	for _, tc := range diffCases {
		t.Run(tc.name, func(t *testing.T) {
			dir := WriteContext(t, tc.files)
			if _, ok := tc.files["archive.tar"]; ok {
				writeTestTar(t, filepath.Join(dir, "archive.tar"))
			}
			tag := "diff-" + tc.name
			args := append([]string{"build", "-t", tag}, tc.args...)
			args = append(args, ".")
			compareBuild(t, dir, args, tag)
			if tc.change != nil {
				for name, content := range tc.change {
					if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				out := compareBuild(t, dir, args, tag)
				if got := strings.Count(out, "Using cache"); got != tc.rebuildHits {
					t.Errorf("rebuild after change: %d cache hits, want %d:\n%s", got, tc.rebuildHits, out)
				}
			}
		})
	}
}

var builtID = regexp.MustCompile(`(?m)^Successfully built ([0-9a-f]{12})$`)

// compareBuild runs the same build on both engines and compares output,
// exit code, where the tag points, history, layer contents and the image
// configs of every step; it returns labd's output.
func compareBuild(t *testing.T, dir string, args []string, tag string) string {
	t.Helper()
	engines := []*Engine{pair.Labd, pair.Dockerd}
	// The tag may already exist from an earlier build of the case: a
	// failed build must leave it where it was, not merely "tagged".
	before := map[*Engine]string{}
	for _, e := range engines {
		before[e] = e.TagTarget(t, tag)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l := pair.Labd.Docker(ctx, DockerCLI20, dir, nil, args...)
	d := pair.Dockerd.Docker(ctx, DockerCLI20, dir, nil, args...)
	if l.Code != d.Code {
		t.Errorf("exit code: labd %d, dockerd %d\nlabd stderr: %s\ndockerd stderr: %s", l.Code, d.Code, l.Stderr, d.Stderr)
	}
	if NormalizeBuild(l.Stdout) != NormalizeBuild(d.Stdout) {
		t.Errorf("build output differs\n--- labd\n%s\n--- dockerd\n%s", NormalizeBuild(l.Stdout), NormalizeBuild(d.Stdout))
	}
	if l.Stderr != d.Stderr {
		t.Errorf("build stderr differs\n--- labd\n%q\n--- dockerd\n%q", l.Stderr, d.Stderr)
	}
	for e, r := range map[*Engine]Result{pair.Labd: l, pair.Dockerd: d} {
		after := e.TagTarget(t, tag)
		if r.Code != 0 {
			if after != before[e] {
				t.Errorf("%s: failed build moved %s: it named %s before the build, %s after", e.Name, tag, imageOrNone(before[e]), imageOrNone(after))
			}
			continue
		}
		m := builtID.FindAllStringSubmatch(r.Stdout, -1)
		if len(m) == 0 || !strings.HasPrefix(after, "sha256:"+m[len(m)-1][1]) {
			t.Errorf("%s: after a successful build %s names %q, not the image the build reported:\n%s", e.Name, tag, after, r.Stdout)
		}
	}
	if l.Code != 0 || d.Code != 0 {
		return l.Stdout
	}
	lh, dh := pair.Labd.History(t, tag), pair.Dockerd.History(t, tag)
	if strings.Join(lh, "\n") != strings.Join(dh, "\n") {
		t.Errorf("history differs\n--- labd\n%s\n--- dockerd\n%s", strings.Join(lh, "\n"), strings.Join(dh, "\n"))
	}
	ls, ds := pair.Labd.Save(t, tag), pair.Dockerd.Save(t, tag)
	ll, dl := ls.Layers, ds.Layers
	if len(ll) != len(dl) {
		t.Errorf("layers: labd %d, dockerd %d", len(ll), len(dl))
		return l.Stdout
	}
	for i := range ll {
		le, de := entriesString(ll[i]), entriesString(dl[i])
		if le != de {
			t.Errorf("layer %d differs\n--- labd\n%s\n--- dockerd\n%s", i, le, de)
		}
	}
	compareImages(t, tag, lh, ls.Config, ds.Config)
	return l.Stdout
}

// imageSide is one engine's view of a built image for compareImages.
type imageSide struct {
	e    *Engine
	ids  []string         // history rows' image IDs, top first
	docs []map[string]any // inspect of each row with an ID, same order
	norm DocNormalizer
}

func inspectSide(t *testing.T, e *Engine, tag string) *imageSide {
	s := &imageSide{e: e, ids: e.HistoryIDs(t, tag)}
	var refs []string
	for _, id := range s.ids {
		if id != "<missing>" {
			refs = append(refs, id)
		}
	}
	if len(refs) > 0 {
		s.docs = e.InspectImages(t, refs...)
	}
	// IDs are named by their place in the image's history and layers:
	// a parent or a layer the two engines disagree on then shows up as a
	// difference, while the IDs themselves (hashes over build times)
	// never match.
	s.norm = DocNormalizer{Names: map[string]string{}, Version: e.ServerVersion(t)}
	for i, id := range s.ids {
		if id != "<missing>" {
			s.norm.Names[id] = fmt.Sprintf("<history %d>", i)
		}
	}
	if len(s.docs) > 0 {
		if fs, ok := s.docs[0]["RootFS"].(map[string]any); ok {
			layers, _ := fs["Layers"].([]any)
			for i, l := range layers {
				if id, ok := l.(string); ok {
					if _, seen := s.norm.Names[id]; !seen {
						s.norm.Names[id] = fmt.Sprintf("<layer %d>", i)
					}
				}
			}
		}
	}
	return s
}

// compareImages compares `docker image inspect` of the built image and of
// every intermediate image in its history, and its saved config, between
// the engines. rows are the history's created-by lines, for messages.
func compareImages(t *testing.T, tag string, rows []string, labdConfig, dockerdConfig []byte) {
	t.Helper()
	l, d := inspectSide(t, pair.Labd, tag), inspectSide(t, pair.Dockerd, tag)
	if len(l.ids) != len(d.ids) {
		t.Errorf("%s: history has %d rows on labd, %d on dockerd:\nlabd %v\ndockerd %v", tag, len(l.ids), len(d.ids), l.ids, d.ids)
		return
	}
	// Oldest step first: a difference stays in every later image, so
	// each one is reported at the step that made it, once.
	li, di := len(l.docs), len(d.docs)
	var below map[string]bool
	for i := len(l.ids) - 1; i >= 0; i-- {
		lm, dm := l.ids[i] == "<missing>", d.ids[i] == "<missing>"
		if !lm {
			li--
		}
		if !dm {
			di--
		}
		if lm != dm {
			t.Errorf("%s: history row %d: labd ID %s, dockerd ID %s", tag, i, l.ids[i], d.ids[i])
		}
		if lm || dm {
			continue
		}
		diff := DiffDocs(l.norm.Normalize(l.docs[li]), d.norm.Normalize(d.docs[di]))
		var fresh []string
		for _, line := range diff {
			if !below[line] {
				fresh = append(fresh, line)
			}
		}
		if len(fresh) > 0 {
			row := ""
			if i < len(rows) {
				row = rows[i]
			}
			more := ""
			if n := len(diff) - len(fresh); n > 0 {
				more = fmt.Sprintf("\n  (and %d differences already in the image below)", n)
			}
			t.Errorf("%s: image inspect of history row %d (%s) differs:\n%s%s", tag, i, row, strings.Join(fresh, "\n"), more)
		}
		below = map[string]bool{}
		for _, line := range diff {
			below[line] = true
		}
	}
	var lc, dc map[string]any
	if err := decodeJSON(labdConfig, &lc); err != nil {
		t.Fatalf("labd: saved config of %s: %v", tag, err)
	}
	if err := decodeJSON(dockerdConfig, &dc); err != nil {
		t.Fatalf("dockerd: saved config of %s: %v", tag, err)
	}
	if diff := DiffDocs(l.norm.Normalize(lc), d.norm.Normalize(dc)); len(diff) > 0 {
		t.Errorf("%s: saved image config differs:\n%s", tag, strings.Join(diff, "\n"))
	}
}

func imageOrNone(id string) string {
	if id == "" {
		return "no image"
	}
	return id
}

func entriesString(es []Entry) string {
	var b strings.Builder
	for _, e := range es {
		b.WriteString(e.String())
		b.WriteByte('\n')
	}
	return b.String()
}
