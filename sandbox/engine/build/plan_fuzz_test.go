package build

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	buildtypes "github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/go-connections/nat"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// maxExpansion bounds what the fuzzed Dockerfiles' variables may grow to,
// in bytes, relative to the Dockerfile: word expansion must not turn a
// small Dockerfile into a huge build (the build's memory and the image
// config hold every value).
const maxExpansion = 64

// FuzzPlan feeds arbitrary Dockerfiles, targets and build args through the
// steps of a build that need no image store or container: parsing, the
// plan (stages, target, labels, step count), meta ARGs, base names, stage
// references, word expansion and the instructions' own checks. Errors must
// be the learner's (400s), never panics, and expansion must stay bounded.
func FuzzPlan(f *testing.F) {
	for _, df := range seedDockerfiles(f) {
		f.Add([]byte(df), "", "v")
	}
	for _, s := range []struct{ df, target string }{
		{"FROM scratch AS a\nFROM a AS b\nFROM b\n", "b"},
		{"ARG X=1\nFROM scratch AS s$X\nCOPY --from=0 / /\nCOPY --from=s1 / /\nCOPY --from=9 / /\n", "s1"},
		{"FROM scratch\nFROM 1\nFROM -1\nFROM 00\nCOPY --from=1 / /\n", ""},
		{"FROM scratch\nSTOPSIGNAL SIGRTMIN+3\nSTOPSIGNAL 65\nSTOPSIGNAL 0\nSTOPSIGNAL 99999999999999999999\n", ""},
		{"FROM scratch\nEXPOSE 80-90/udp $P 1-0 99999\n", ""},
		{"FROM scratch\nONBUILD ONBUILD RUN x\nONBUILD FROM x\nHEALTHCHECK --interval=-1s CMD x\n", ""},
		{"# escape=`\nFROM scratch\nENV A=a`\n B=$A$A\nENV C=${A:-${B:+x}} D=${A%%a} E=${A/a/b}\n", ""},
		{"FROM scratch\nENV A=xxxxxxxx\nENV A=$A$A\nENV A=$A$A\nENV A=$A$A\nENV A=$A$A\nENV A=$A$A\nENV A=$A$A\n", ""},
		{"FROM scratch\nARG A=x\nARG B=$A$A\nLABEL l=$B$B$B$B\n", ""},
		{"FROM scratch\nRUN <<EOF\nx\nEOF\nCOPY <<EOF /a\nEOF\n", ""},
		{"FROM scratch AS A\nFROM a\n", "A"},
		{"\xef\xbb\xbfFROM\tscratch\r\nCMD [\"a\", \"b\"\r\n", ""},
	} {
		f.Add([]byte(s.df), s.target, "v")
	}
	f.Fuzz(func(t *testing.T, data []byte, target, buildArg string) {
		if len(data) > maxDockerfile {
			return // readDockerfile refuses it before parsing
		}
		ast, err := parseDockerfile("Dockerfile", data)
		if err != nil {
			learnersError(t, "parse", err)
			return
		}
		o := &buildtypes.ImageBuildOptions{
			Target:    target,
			Labels:    map[string]string{"fuzz": "1"},
			BuildArgs: map[string]*string{"A": &buildArg, "B": nil},
		}
		p, err := newPlan(ast, o)
		if err != nil {
			learnersError(t, "plan", err)
			return
		}
		checkPlan(t, p, target)
		budget := maxExpansion * (len(data) + len(buildArg) + 64)

		args := newBuildArgs(o.BuildArgs)
		shlex := shell.NewLex(ast.EscapeToken)
		for i := range p.metaArgs {
			_ = fmt.Sprintf(stepFormat, 1, p.total, &p.metaArgs[i])
			if err := processMetaArg(p.metaArgs[i], shlex, args); err != nil {
				return
			}
		}
		stages := newStageResults()
		for si := range p.stages {
			stage := &p.stages[si]
			if err := stages.checkName(stage.Name); err != nil {
				return
			}
			st := &stageState{shlex: shell.NewLex(ast.EscapeToken), args: args.clone(), runConfig: &container.Config{}}
			st.args.resetAllowed()
			_ = fmt.Sprintf(stepFormat, 1, p.total, stage.SourceCode)
			base, err := st.expandMeta(stage.BaseName)
			if err != nil {
				continue
			}
			if again, _ := st.expandMeta(stage.BaseName); again != base {
				t.Fatalf("FROM %s expands to %q, then %q", stage.BaseName, base, again)
			}
			stageRef(t, stages, base)
			for _, cmd := range stage.Commands {
				_ = fmt.Sprintf(stepFormat, 1, p.total, cmd)
				envs, err := st.expand(cmd)
				if err != nil {
					learnersError(t, "expand", err)
					break
				}
				if err := planStep(t, st, stages, envs, cmd); err != nil {
					break
				}
				if n := configSize(st.runConfig); n > budget {
					t.Fatalf("a %d-byte Dockerfile grew the config to %d bytes", len(data), n)
				}
			}
			args.mergeReferenced(st.args)
			if err := stages.commit(stage.Name, fmt.Sprintf("sha256:%064x", si), st.runConfig); err != nil {
				t.Fatalf("stage %d (%q) passed checkName but not commit: %v", si, stage.Name, err)
			}
		}
	})
}

// planStep does what dispatch does for cmd short of the store and the
// runtime: the configuration changes and the checks that fail a build.
func planStep(t *testing.T, st *stageState, stages *stageResults, envs shell.EnvGetter, cmd instructions.Command) error {
	switch c := cmd.(type) {
	case *instructions.EnvCommand:
		st.applyEnv(c)
	case *instructions.ArgCommand:
		for _, a := range c.Args {
			st.args.addArg(a.Key, a.Value)
		}
	case *instructions.LabelCommand:
		if st.runConfig.Labels == nil {
			st.runConfig.Labels = map[string]string{}
		}
		for _, v := range c.Labels {
			st.runConfig.Labels[v.Key] = v.Value
		}
	case *instructions.CmdCommand:
		st.runConfig.Cmd, _ = st.resolveCmdLine(c.ShellDependantCmdLine)
	case *instructions.EntrypointCommand:
		st.runConfig.Entrypoint, _ = st.resolveCmdLine(c.ShellDependantCmdLine)
	case *instructions.ShellCommand:
		st.runConfig.Shell = c.Shell
	case *instructions.UserCommand:
		st.runConfig.User = c.User
	case *instructions.WorkdirCommand:
		st.runConfig.WorkingDir = normalizeDest(st.runConfig.WorkingDir, c.Path)
		if !strings.HasPrefix(st.runConfig.WorkingDir, "/") {
			t.Fatalf("WORKDIR %q gave relative %q", c.Path, st.runConfig.WorkingDir)
		}
	case *instructions.StopSignalCommand:
		sig, err := parseSignal(c.Signal)
		if err != nil {
			return err
		}
		if sig < 0 || sig > 64 {
			t.Fatalf("STOPSIGNAL %q accepted as %d", c.Signal, sig)
		}
	case *instructions.ExposeCommand:
		var ports []string
		for _, p := range c.Ports {
			ps, err := st.shlex.ProcessWords(p, envs)
			if err != nil {
				return err
			}
			ports = append(ports, ps...)
		}
		if _, _, err := nat.ParsePortSpecs(ports); err != nil {
			return err
		}
	case *instructions.CopyCommand:
		if c.From != "" {
			stageRef(t, stages, c.From)
		}
	case *instructions.OnbuildCommand:
		ast, err := parser.Parse(strings.NewReader(c.Expression))
		if err != nil {
			return err
		}
		if len(ast.AST.Children) == 1 {
			_, _ = instructions.ParseCommand(ast.AST.Children[0])
		}
	}
	return nil
}

// stageRef resolves name as FROM and COPY --from do.
func stageRef(t *testing.T, stages *stageResults, name string) {
	res, ok, err := stages.get(name)
	if ok && err != nil || ok && res.imageID == "" {
		t.Fatalf("stage %q: ok with error %v or no image", name, err)
	}
}

func checkPlan(t *testing.T, p *plan, target string) {
	t.Helper()
	total := len(p.metaArgs) + len(p.stages)
	for _, s := range p.stages {
		total += len(s.Commands)
	}
	if total != p.total {
		t.Fatalf("plan counts %d steps, has %d", p.total, total)
	}
	if len(p.stages) == 0 {
		return
	}
	last := p.stages[len(p.stages)-1]
	if target != "" && !strings.EqualFold(last.Name, target) {
		t.Fatalf("target %q, plan ends at stage %q", target, last.Name)
	}
	l, ok := last.Commands[len(last.Commands)-1].(*instructions.LabelCommand)
	if !ok || len(l.Labels) != 1 || l.Labels[0].Key != "fuzz" {
		t.Fatalf("--label is not the last step: %v", last.Commands[len(last.Commands)-1])
	}
}

// learnersError asserts that err is answered as the learner's mistake.
func learnersError(t *testing.T, what string, err error) {
	t.Helper()
	var ip interface{ InvalidParameter() }
	if !errors.As(err, &ip) {
		t.Fatalf("%s: %v (%T) is not an invalid-parameter error", what, err, err)
	}
}

func configSize(c *container.Config) int {
	n := len(c.User) + len(c.WorkingDir)
	for _, l := range [][]string{c.Env, c.Cmd, c.Entrypoint, c.Shell} {
		for _, s := range l {
			n += len(s)
		}
	}
	for k, v := range c.Labels {
		n += len(k) + len(v)
	}
	return n
}

// dockerfileRE finds Dockerfiles in shell heredocs (cat > Dockerfile <<'X')
// and in Go raw strings that start with FROM or ARG.
var (
	heredocRE = regexp.MustCompile(`cat > \S*Dockerfile\S* <<'?(\w+)'?\n`)
	rawRE     = regexp.MustCompile("(?s)`((?:FROM|ARG|# syntax|# escape) [^`]*)`")
)

// seedDockerfiles returns the Dockerfiles of the bundled labs and of the
// engine's differential tests.
func seedDockerfiles(f *testing.F) []string {
	var out []string
	files, _ := filepath.Glob("../../../content/*/*")
	tests, _ := filepath.Glob("../enginetest/*_test.go")
	for _, path := range append(files, tests...) {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		for _, m := range heredocRE.FindAllSubmatchIndex(b, -1) {
			body := string(b[m[1]:])
			if end := strings.Index(body, "\n"+string(b[m[2]:m[3]])+"\n"); end >= 0 {
				out = append(out, body[:end+1])
			}
		}
		if strings.HasSuffix(path, ".go") {
			for _, m := range rawRE.FindAllSubmatch(b, -1) {
				out = append(out, string(m[1]))
			}
		}
	}
	if len(out) < 5 {
		f.Fatalf("found only %d seed Dockerfiles", len(out))
	}
	return out
}
