package grader_test

import (
	"testing"

	"github.com/labd/labd/grader"
)

const attrsDockerfile = `FROM busybox
LABEL org.opencontainers.image.title=demo version=2
ENV APP_ENV=production
RUN echo hi > /hi
CMD ["sleep", "300"]
`

// attributes drives the checks that read what an engine shows of images,
// containers and volumes: the same answers on labd's engine and on dockerd.
func attributes(l learner) {
	l.sh("cat > Dockerfile <<'END'\n" + attrsDockerfile + "END\ndocker build -t attrs .")
	l.want("kind: image\nimage: attrs\nlabels: {version: '^2$', org.opencontainers.image.title: demo}\nenv: {APP_ENV: '^prod'}\nbase: busybox\nmax_size: 1GB", grader.StatePassed, "")
	l.want("kind: image\nimage: attrs\nlabels: {version: '^3$'}", grader.StateFailed, `The label version of attrs is "2"; it should match ^3$`)
	l.want("kind: image\nimage: attrs\nlabels: {maintainer: .}", grader.StateFailed, "attrs has no label maintainer: add LABEL maintainer=")
	l.want("kind: image\nimage: attrs\nenv: {DEBUG: .}", grader.StateFailed, "attrs does not set DEBUG: add ENV DEBUG=")
	l.want("kind: image\nimage: attrs\nenv: {APP_ENV: '^dev'}", grader.StateFailed, "attrs sets APP_ENV=production; it should match ^dev")
	l.want("kind: image\nimage: attrs\nmax_size: 1kB", grader.StateFailed, "more than 1kB")
	l.want("kind: image\nimage: busybox\nbase: attrs", grader.StateFailed, "busybox is not built FROM attrs")
	l.want("kind: image\nimage: attrs\nbase: nothing-here", grader.StateFailed, "There is no image nothing-here")

	l.want("kind: volume\nname: appdata", grader.StateFailed, "There is no volume appdata yet")
	l.sh("docker volume create appdata && mkdir -p src && docker run -d --name web -v appdata:/data -v \"$PWD/src\":/src attrs")
	l.want("kind: volume\nname: appdata", grader.StatePassed, "")
	l.want("kind: volume\nname: appdata\ncontainer: web\npath: /data", grader.StatePassed, "")
	l.want("kind: volume\nname: appdata\npath: /other", grader.StateFailed, "No container mounts the volume appdata at /other")
	l.want("kind: volume\nname: appdata\ncontainer: db", grader.StateFailed, "Container db does not mount the volume appdata")
	l.want("kind: container\nname: web\nmounts: [appdata:/data, bind:/src, /data]", grader.StatePassed, "")
	l.want("kind: container\nname: web\nmounts: [other:/data]", grader.StateFailed, "No container named web mounts other:/data: run it with -v other:/data")
	l.want("kind: container\nname: web\nmounts: [tmpfs:/src]", grader.StateFailed, "No container named web mounts tmpfs:/src")

	l.sh("docker rm -f web")
	l.want("kind: clean\nvolumes: [appdata]", grader.StateFailed, "The volume appdata is still there: remove it with docker volume rm appdata")
	l.sh("docker volume rm appdata")
	l.want("kind: clean\nvolumes: [appdata]", grader.StatePassed, "")
}

func TestAttributeChecks(t *testing.T) {
	attributes(newBox(t))
}

func TestAttributeChecksOnDockerd(t *testing.T) {
	attributes(startRef(t))
}

// What a build was asked (labd's build records): --build-arg, --target and
// the size of the context sent.
func TestBuildFieldChecks(t *testing.T) {
	b := newBox(t)
	b.sh("cat > Dockerfile <<'END'\n" + multiStageDockerfile + "END\ndocker build --build-arg V=7 --target builder -t multi .")
	b.want("kind: build\nimage: multi\ntarget: builder\nbuild_args: {V: '^7$'}\ncontext_max: 10MB", grader.StatePassed, "")
	b.want("kind: build\nimage: multi\ntarget: final", grader.StateFailed, "The latest build of multi stopped at stage builder; this step builds --target final")
	b.want("kind: build\nimage: multi\nbuild_args: {V: '^2$'}", grader.StateFailed, "had --build-arg V=7; it should match ^2$")
	b.want("kind: build\nimage: multi\nbuild_args: {W: .}", grader.StateFailed, "had no --build-arg W")
	b.sh("docker build -t multi .")
	b.want("kind: build\nimage: multi\ntarget: builder", grader.StateFailed, "built every stage; build only up to builder with docker build --target builder")

	b.sh("dd if=/dev/zero of=big.bin bs=1M count=3 2>/dev/null && docker build -t multi .")
	b.want("kind: build\nimage: multi\ncontext_max: 1MB", grader.StateFailed, "sent a build context of 3.148MB, more than 1MB: leave out what the image does not need with a .dockerignore file")
	b.sh("echo big.bin > .dockerignore && docker build -t multi .")
	b.want("kind: build\nimage: multi\ncontext_max: 1MB", grader.StatePassed, "")
}
