package grader

import (
	"testing"

	"github.com/docker/docker/api/types/image"
)

// TestSameHistory holds Dockerfiles against the history entries Debian's
// dockerd 20.10 writes (copied from `docker history --no-trunc`), newest
// first as the Engine API lists them.
func TestSameHistory(t *testing.T) {
	const df = "FROM busybox\nRUN echo built > /built\nCMD [\"cat\", \"/app.txt\"]\nCOPY app.txt /app.txt\n"
	classic := []string{
		"/bin/sh -c #(nop) COPY file:e0034f136e597d7a53b95321b63dcc88ecbd42b41b9a0c6f3a5e1f3893d883da in /app.txt ",
		`/bin/sh -c #(nop)  CMD ["cat" "/app.txt"]`,
		"/bin/sh -c echo built > /built",
		"",
	}
	buildkit := []string{
		"COPY app.txt /app.txt # buildkit",
		`CMD ["cat" "/app.txt"]`,
		"RUN /bin/sh -c echo built > /built # buildkit",
		"",
	}
	for _, c := range []struct {
		name, dockerfile string
		hist             []string
		want             bool
	}{
		{"classic", df, classic, true},
		{"buildkit", df, buildkit, true},
		{"instruction added", df + "LABEL x=y\n", buildkit, false},
		{"instruction added classic", df + "LABEL x=y\n", classic, false},
		{"run changed", "FROM busybox\nRUN echo other > /built\nCMD [\"cat\", \"/app.txt\"]\nCOPY app.txt /app.txt\n", classic, false},
		{"order changed", "FROM busybox\nCOPY app.txt /app.txt\nRUN echo built > /built\nCMD [\"cat\", \"/app.txt\"]\n", buildkit, false},
		{"shorter history", df, buildkit[:2], false},
		{"build arg", "FROM busybox\nARG V=x\nRUN echo $V > /v\n", []string{"|1 V=x /bin/sh -c echo $V > /v", "/bin/sh -c #(nop)  ARG V=x", ""}, true},
		{"exec form run", "FROM busybox\nRUN [\"echo\", \"hi\"]\n", []string{"RUN echo hi # buildkit", ""}, true},
		{"run flags", "FROM busybox\nRUN --network=none echo hi\n", []string{"RUN /bin/sh -c echo hi # buildkit", ""}, true},
		{"last stage only", "FROM busybox AS b\nRUN echo x > /x\nFROM busybox\nCOPY --from=b /x /x\n", []string{"COPY /x /x # buildkit", ""}, true},
		{"a command named like a keyword is a RUN", "FROM busybox\nCOPY a /a\n", []string{"/bin/sh -c copy a /a", ""}, false},
	} {
		ins, err := parseDockerfile([]byte(c.dockerfile))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var hist []image.HistoryResponseItem
		for _, h := range c.hist {
			hist = append(hist, image.HistoryResponseItem{CreatedBy: h})
		}
		if got := sameHistory(ins, hist); got != c.want {
			t.Errorf("%s: sameHistory = %v, want %v", c.name, got, c.want)
		}
	}
}
