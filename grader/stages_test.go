package grader_test

import (
	"testing"

	"github.com/labd/labd/grader"
)

// learner is an engine with a workspace, driven as a learner's shell: labd's
// (box) or Docker's (ref).
type learner interface {
	sh(script string) string
	want(y string, st grader.State, msgPart string)
}

const multiStageDockerfile = `FROM busybox:latest AS builder
RUN echo one > /one
FROM busybox
ARG V=1
COPY --from=builder /one /one
CMD ["cat", "/one"]
`

// multiStage drives the stage-aware dockerfile and image checks: the same
// answers on labd's engine and on dockerd.
func multiStage(l learner) {
	l.sh("cat > Dockerfile <<'END'\n" + multiStageDockerfile + "END")
	l.want("kind: dockerfile\nstage: builder\nfrom: busybox\nlast: RUN echo one", grader.StatePassed, "")
	l.want("kind: dockerfile\nstage: 1\ninstructions: [COPY --from=builder, CMD]\nlast: CMD", grader.StatePassed, "")
	l.want("kind: dockerfile\nstage: builder\nlast: CMD", grader.StateFailed, "The last instruction of stage builder of Dockerfile is RUN echo one > /one; CMD should come last")
	l.want("kind: dockerfile\nstage: 1\ninstructions: [RUN echo]", grader.StateFailed, "Stage 1 of Dockerfile has no RUN echo instruction")
	l.want("kind: dockerfile\nstage: tester", grader.StateFailed, "Dockerfile has no stage tester yet")
	// Words in order, an image with any tag: the author's pattern names the
	// base without the tag the learner chose.
	l.want("kind: dockerfile\ninstructions: [FROM busybox AS builder]", grader.StatePassed, "")
	l.want("kind: dockerfile\ninstructions: [FROM python AS builder]", grader.StateFailed, "has no FROM python AS builder instruction")
	l.want(`kind: dockerfile
instructions: ['/^COPY --from=builder \S+ /one$/']`, grader.StatePassed, "")
	l.want("kind: dockerfile\ninstructions: ['/^COPY --from=tester/']", grader.StateFailed, "has no /^COPY --from=tester/ instruction")

	// A --target build is built from this Dockerfile too.
	l.sh("docker build --target builder -t stage-one .")
	l.want("kind: image\nimage: stage-one\nbuilt: true\ndockerfile: Dockerfile", grader.StatePassed, "")
	l.sh("docker build -t multi .")
	l.want("kind: image\nimage: multi\nbuilt: true\ndockerfile: Dockerfile", grader.StatePassed, "")
	// And a changed Dockerfile is not.
	l.sh("echo 'LABEL x=y' >> Dockerfile")
	l.want("kind: image\nimage: stage-one\nbuilt: true\ndockerfile: Dockerfile", grader.StatePassed, "")
	l.want("kind: image\nimage: multi\nbuilt: true\ndockerfile: Dockerfile", grader.StateFailed, "built from a different Dockerfile")
}

func TestMultiStageChecks(t *testing.T) {
	b := newBox(t)
	multiStage(b)

	// A rebuilt step in the first stage, and the cache used again in the
	// second: each stage starts its cache chain from its own base.
	b.sh("cat > Dockerfile <<'END'\n" + multiStageDockerfile + "END\ndocker build -t multi .")
	b.sh("sed -i 's|RUN echo one > /one|RUN echo one > /one \\&\\& true|' Dockerfile && docker build -t multi .")
	b.want("kind: build\nimage: multi\ncache_reused: true\nchanged: true\ncached_min: 1", grader.StatePassed, "")
	// Within one stage a hit after a rebuilt step still cannot happen, so
	// a --no-cache build still fails.
	b.sh("docker build --no-cache -t multi .")
	b.want("kind: build\nimage: multi\ncache_reused: true", grader.StateFailed, "--no-cache")
}

func TestMultiStageChecksOnDockerd(t *testing.T) {
	multiStage(startRef(t))
}

// The command check matches what the learner asked for, decoded: a
// percent-encoded 2 (%22 is a quote) in another value does not count, and
// a miss says what was asked and what was seen.
func TestCommandQueryChecks(t *testing.T) {
	b := newBox(t)
	b.sh("cat > Dockerfile <<'END'\n" + multiStageDockerfile + "END")
	byQuery := "kind: command\ncommand: build\nquery: {buildargs.V: '^2$', t: '^multi'}"
	byMatch := "kind: command\ncommand: build\nmatch: '\"V\":\"2\"'"
	b.want(byQuery, grader.StateFailed, "You have not run docker build yet")
	b.sh("docker build --build-arg V=7 -t multi .")
	b.want(byQuery, grader.StateFailed, "You ran docker build, but not with buildargs.V matching ^2$: your latest had buildargs.V=7")
	b.want(byMatch, grader.StateFailed, `You ran docker build, but not as "V":"2" asks: your latest was POST /build?`)
	b.want("kind: command\ncommand: build\nmatch: 'V.*2'", grader.StateFailed, "not as V.*2 asks")
	b.sh("docker build -t other .")
	b.want(byQuery, grader.StateFailed, "your latest had no buildargs.V")
	b.sh("docker build --build-arg V=2 -t multi:2 .")
	b.want(byQuery, grader.StatePassed, "")
	b.want(byMatch, grader.StatePassed, "")
}

// A file's matches pattern looks at one line at a time, as the guide
// says: \s does not reach into the next line.
func TestFileMatchesPerLine(t *testing.T) {
	b := newBox(t)
	b.sh("printf 'FROM\\npython\\n' > notes.txt")
	b.want(`kind: file
path: notes.txt
matches: 'FROM\s+python'`, grader.StateFailed, "has no line matching")
	b.want("kind: file\npath: notes.txt\nmatches: '^python$'", grader.StatePassed, "")
}
