package enginetest

import (
	"context"
	"os"
	"path/filepath"
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
	// output is compared too.
	change map[string]string
}

var diffCases = []diffCase{
	{
		name:   "classic",
		files:  map[string]string{"Dockerfile": classicDockerfile, "app.py": "print('hello world!')\n"},
		change: map[string]string{"app.py": "print('hello again!')\n"},
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
				// Only the changed COPY (the last step) misses.
				if got := strings.Count(out, "Using cache"); got != 2 {
					t.Errorf("rebuild after change: %d cache hits, want 2:\n%s", got, out)
				}
			}
		})
	}
}

// compareBuild runs the same build on both engines and compares output,
// exit code, history and layer contents; it returns labd's output.
func compareBuild(t *testing.T, dir string, args []string, tag string) string {
	t.Helper()
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
	if l.Code != 0 || d.Code != 0 {
		// A failed build tags nothing.
		for _, e := range both(t) {
			r := e.Docker(ctx, DockerCLI20, "", nil, "image", "inspect", tag)
			if r.Code == 0 && !strings.Contains(l.Stdout+d.Stdout, "Successfully tagged") {
				// The tag may remain from an earlier successful build only.
				t.Logf("%s: %s exists after failed build", e.Name, tag)
			}
		}
		return l.Stdout
	}
	lh, dh := pair.Labd.History(t, tag), pair.Dockerd.History(t, tag)
	if strings.Join(lh, "\n") != strings.Join(dh, "\n") {
		t.Errorf("history differs\n--- labd\n%s\n--- dockerd\n%s", strings.Join(lh, "\n"), strings.Join(dh, "\n"))
	}
	ll, dl := pair.Labd.Layers(t, tag), pair.Dockerd.Layers(t, tag)
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
	return l.Stdout
}

func entriesString(es []Entry) string {
	var b strings.Builder
	for _, e := range es {
		b.WriteString(e.String())
		b.WriteByte('\n')
	}
	return b.String()
}
