package grader

import (
	"context"
	"strings"

	"github.com/docker/docker/api/types/image"
	"github.com/labd/labd/labs/check"
)

// On a real Docker Engine there are no build records (GET /labd/v1/records
// answers 404), so "built here from this Dockerfile" is read from what
// dockerd keeps about an image:
//
//   - the classic builder sets Parent on every image it makes; pulled,
//     loaded, imported and merely tagged images have none;
//   - BuildKit sets no Parent, but writes one history entry per instruction
//     with the comment "buildkit.dockerfile.v0". A pulled image built with
//     BuildKit elsewhere has the same comments, so for a BuildKit image
//     only a match with the workspace's Dockerfile says it was built from
//     it; without one the grader cannot tell and says so.
//
// The Dockerfile is compared with the image's newest history entries:
// the keyword of every instruction after the last FROM (ARG left out:
// builders differ in recording it) and, for RUN, the command text.
// COPY and ADD sources are not compared: the classic builder records a
// content hash in place of the source.

const buildkitComment = "buildkit.dockerfile.v0"

// builtOnDocker answers the image check's built and dockerfile fields on
// an engine without labd's records.
func (p *probe) builtOnDocker(ctx context.Context, s *check.Image, name string, img image.InspectResponse) (outcome, error) {
	c, err := p.docker()
	if err != nil {
		return failed(err)
	}
	hist, err := c.ImageHistory(ctx, img.ID)
	if err != nil {
		return failed(engineErr(err))
	}
	classic := img.Parent != ""
	buildkit := len(hist) > 0 && hist[0].Comment == buildkitComment
	if !classic && !buildkit {
		return fail("%s was not built here from a Dockerfile (it is another image under that name): build it with docker build -t %s .", name, name)
	}
	df := s.Dockerfile
	if df == "" && classic {
		return pass()
	}
	rel := df
	if rel == "" {
		rel = "Dockerfile"
	}
	undecided := func(why string) (outcome, error) {
		return failed(cannot("%s was built with BuildKit, and this Docker Engine keeps no build records to tell a local build from a pulled image; %s", name, why))
	}
	b, err := readWorkspaceFile(p.env.Workspace, rel)
	if err != nil {
		if df == "" {
			return undecided("there is no Dockerfile in the workspace to compare it with")
		}
		if o, ok := unreadable(df, err); ok && !isFolder(err) {
			return o, nil
		}
		return fail("There is no %s in your workspace to compare %s with", df, name)
	}
	ins, err := parseDockerfile(b)
	if err != nil {
		if df == "" {
			return undecided("the workspace's Dockerfile cannot be read: " + err.Error())
		}
		return fail("%s cannot be read as a Dockerfile: %v", df, err)
	}
	if !sameHistory(ins, hist) {
		if df == "" {
			return undecided("its history does not match the workspace's Dockerfile")
		}
		return fail("%s was built from a different Dockerfile than your %s: build it again with docker build -t %s .", name, df, name)
	}
	return pass()
}

// sameHistory reports whether the newest history entries (hist is newest
// first, as the Engine API lists it) are a stage of ins: the last one, or
// with docker build --target an earlier one.
func sameHistory(ins []instruction, hist []image.HistoryResponseItem) bool {
	sts := stages(ins)
	for i, st := range sts {
		var want []instruction
		for _, in := range st.ins {
			if in.keyword != "FROM" && in.keyword != "ARG" {
				want = append(want, in)
			}
		}
		// An empty stage matches any image: only the last may say so
		// (a Dockerfile of one FROM), never an empty stage on the way.
		if (len(want) > 0 || i == len(sts)-1) && sameStageHistory(want, hist) {
			return true
		}
	}
	return false
}

// sameStageHistory: the newest entries of hist are want, in order.
func sameStageHistory(want []instruction, hist []image.HistoryResponseItem) bool {
	var got []string // oldest first, like want
	for i := len(hist) - 1; i >= 0; i-- {
		if kw, _ := historyInstruction(hist[i].CreatedBy); kw != "ARG" {
			got = append(got, hist[i].CreatedBy)
		}
	}
	if len(got) < len(want) {
		return false
	}
	got = got[len(got)-len(want):]
	for i, in := range want {
		kw, args := historyInstruction(got[i])
		if kw != in.keyword {
			return false
		}
		if kw == "RUN" && !sameRun(in.args, args) {
			return false
		}
	}
	return true
}

// historyInstruction splits a history entry's created_by into keyword and
// compacted arguments. BuildKit: `RUN /bin/sh -c echo hi # buildkit`,
// `COPY app.txt /app.txt # buildkit`, `CMD ["cat" "/app.txt"]`. Classic:
// `/bin/sh -c #(nop)  CMD ["cat" "/app.txt"]`, `/bin/sh -c echo hi`, and
// `|1 V=x /bin/sh -c echo hi` when build arguments were in effect.
func historyInstruction(createdBy string) (keyword, args string) {
	s := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(createdBy), "# buildkit"))
	if _, nop, ok := strings.Cut(s, "#(nop)"); ok {
		kw, rest, _ := strings.Cut(strings.TrimSpace(nop), " ")
		return strings.ToUpper(kw), compact(rest)
	}
	kw, rest, _ := strings.Cut(s, " ")
	switch up := strings.ToUpper(kw); up {
	case "RUN", "COPY", "ADD", "CMD", "ENTRYPOINT", "ENV", "LABEL", "EXPOSE", "USER", "WORKDIR",
		"VOLUME", "STOPSIGNAL", "HEALTHCHECK", "SHELL", "ONBUILD", "MAINTAINER", "ARG":
		if kw == up { // BuildKit writes keywords upper case; a command named "copy" is a RUN
			return up, compact(rest)
		}
	}
	return "RUN", compact(s) // the classic builder's RUN: the command itself
}

// sameRun compares a Dockerfile RUN's arguments with the command a history
// entry recorded (which wraps it in the shell and may prefix build
// arguments). Flags (--mount, --network) and heredocs are not recorded the
// same way by every builder and are not compared.
func sameRun(dockerfileArgs, recorded string) bool {
	if strings.Contains(dockerfileArgs, "<<") {
		return true
	}
	cmd := dockerfileArgs
	if strings.HasPrefix(cmd, "--") {
		// Compacted, a flag runs into the command ("--network=nonepip..."),
		// so where the command starts is lost: the keyword match suffices.
		return true
	}
	if strings.HasPrefix(cmd, "[") {
		// exec form ["a","b"]: recorded as a b (classic) or [a b]
		// (BuildKit); compare the words.
		repl := strings.NewReplacer("[", "", "]", "", `"`, "", ",", "")
		return strings.Contains(repl.Replace(recorded), repl.Replace(cmd))
	}
	return strings.Contains(recorded, cmd)
}
