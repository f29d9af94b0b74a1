package grader

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/go-units"
	"github.com/labd/labd/labs/check"
)

// normRef gives the familiar form with a tag: "app" → "app:latest",
// "docker.io/library/app:1" → "app:1". An unparsable name is returned as is.
func normRef(s string) string {
	r, err := reference.ParseNormalizedNamed(strings.TrimSpace(s))
	if err != nil {
		return s
	}
	return reference.FamiliarString(reference.TagNameOnly(r))
}

func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// localImage inspects name; found is false when the engine has no such image.
func (p *probe) localImage(ctx context.Context, name string) (img image.InspectResponse, found bool, err error) {
	c, err := p.docker()
	if err != nil {
		return img, false, err
	}
	img, err = c.ImageInspect(ctx, name)
	if err != nil {
		if client.IsErrNotFound(err) || strings.Contains(err.Error(), "No such image") {
			return img, false, nil
		}
		return img, false, engineErr(err)
	}
	return img, true, nil
}

func checkImage(ctx context.Context, p *probe, s *check.Image) (outcome, error) {
	name := s.Image
	img, found, err := p.localImage(ctx, name)
	if err != nil {
		return failed(err)
	}
	if !found {
		return fail("There is no image %s yet: build it with docker build -t %s .", name, name)
	}
	if o, err := p.imageConfig(ctx, s, name, img); err != nil || !o.ok {
		return o, err
	}
	if check.Or(s.Built, false) || s.Dockerfile != "" {
		recs, rerr := p.records(ctx)
		if errors.Is(rerr, errNoRecords) {
			if o, err := p.builtOnDocker(ctx, s, name, img); err != nil || !o.ok {
				return o, err
			}
			return p.imageHistory(ctx, s, name, img)
		}
		built := false
		var byBuild *BuildRecord
		if rerr == nil {
			for i := len(recs.Builds) - 1; i >= 0; i-- {
				if b := &recs.Builds[i]; b.Error == "" && b.ImageID == img.ID {
					built, byBuild = true, b
					break
				}
			}
		}
		// The classic builder sets Parent on every image it makes; pulled
		// and loaded images have none. This is what a real dockerd offers.
		if !built && img.Parent != "" {
			built = true
		}
		if !built {
			return fail("%s was not built here from a Dockerfile (it is another image under that name): build it with docker build -t %s .", name, name)
		}
		if df := s.Dockerfile; df != "" {
			if rerr != nil {
				return failed(rerr)
			}
			if byBuild == nil {
				return fail("labd has no record of the build that made %s: build it again with docker build -t %s .", name, name)
			}
			b, ferr := readWorkspaceFile(p.env.Workspace, df)
			if ferr != nil {
				if o, ok := unreadable(df, ferr); ok && !isFolder(ferr) {
					return o, nil
				}
				return fail("There is no %s in your workspace to compare %s with", df, name)
			}
			ins, perr := parseDockerfile(b)
			if perr != nil {
				return fail("%s cannot be read as a Dockerfile: %v", df, perr)
			}
			if !sameInstructions(ins, byBuild) {
				return fail("%s was built from a different Dockerfile than your %s: build it again with docker build -t %s .", name, df, name)
			}
		}
	}
	return p.imageHistory(ctx, s, name, img)
}

// imageHistory checks the image's history constraints.
func (p *probe) imageHistory(ctx context.Context, s *check.Image, name string, img image.InspectResponse) (outcome, error) {
	if hist := s.History; len(hist) > 0 {
		c, _ := p.docker()
		items, err := c.ImageHistory(ctx, img.ID)
		if err != nil {
			return failed(engineErr(err))
		}
		for _, want := range hist {
			ok := false
			for _, it := range items {
				if strings.Contains(compact(it.CreatedBy), compact(want)) {
					ok = true
					break
				}
			}
			if !ok {
				return fail("The history of %s has no layer made by %q", name, want)
			}
		}
	}
	return pass()
}

// sameInstructions compares a Dockerfile with the steps a build printed:
// all of them, or, for a build with --target, those up to the end of a
// stage (the classic builder stops after the target).
func sameInstructions(ins []instruction, b *BuildRecord) bool {
	n := len(b.Steps)
	if n > len(ins) || n < len(ins) && ins[n].keyword != "FROM" {
		return false
	}
	for i, in := range ins[:n] {
		st := parsePattern(b.Steps[i].Instruction)
		if st.keyword != in.keyword || st.args != in.args {
			return false
		}
	}
	return true
}

// latestBuild returns the newest successful build tagged ref.
func latestBuild(recs *Records, ref string) *BuildRecord {
	want := normRef(ref)
	for i := len(recs.Builds) - 1; i >= 0; i-- {
		b := &recs.Builds[i]
		if b.Error != "" {
			continue
		}
		for _, t := range b.Tags {
			if normRef(t) == want {
				return b
			}
		}
	}
	return nil
}

func checkBuild(ctx context.Context, p *probe, s *check.Build) (outcome, error) {
	name := s.Image
	recs, err := p.records(ctx)
	if err != nil {
		return failed(err)
	}
	b := latestBuild(recs, name)
	if b == nil {
		return fail("You have not built %s yet: run docker build -t %s .", name, name)
	}
	var cached, rebuilt, steps int
	firstChanged := -1
	cacheAfterChange := false
	for i, st := range b.Steps {
		up := strings.ToUpper(st.Instruction)
		if strings.HasPrefix(up, "FROM ") {
			// Each stage starts its cache chain again from its base: a
			// cache hit after a rebuilt step of an earlier stage is real.
			firstChanged = -1
			continue
		}
		if strings.HasPrefix(up, "ARG ") && i == 0 {
			continue
		}
		steps++
		if st.Cached {
			cached++
			if firstChanged >= 0 {
				cacheAfterChange = true
			}
		} else {
			rebuilt++
			if firstChanged < 0 {
				firstChanged = i
			}
		}
	}
	if n := s.CachedMin; n > 0 && cached < n {
		extra := ""
		if b.NoCache {
			extra = " (it ran with --no-cache)"
		}
		return fail("The latest build of %s took %d of its steps from the cache%s; at least %d should be: build again without --no-cache and without changing the early lines", name, cached, extra, n)
	}
	if check.Or(s.CacheReused, false) {
		if cached == 0 {
			extra := "rebuild it with docker build -t " + name + " ."
			if b.NoCache {
				extra = "it ran with --no-cache; build again without it"
			}
			return fail("The latest build of %s did not use the cache for any step: %s", name, extra)
		}
		if cacheAfterChange {
			return fail("The latest build of %s used the cache after a changed step, which the classic cache cannot do", name)
		}
	}
	if check.Or(s.Changed, false) && rebuilt == 0 {
		return fail("The latest build of %s took every step from the cache: change a file first (the step asks you to), then build again", name)
	}
	if s.Target != "" && !strings.EqualFold(b.Target, s.Target) {
		if b.Target == "" {
			return fail("The latest build of %s built every stage; build only up to %s with docker build --target %s -t %s .", name, s.Target, s.Target, name)
		}
		return fail("The latest build of %s stopped at stage %s; this step builds --target %s", name, b.Target, s.Target)
	}
	for _, k := range sortedKeys(s.BuildArgs) {
		re, err := regexp.Compile(string(s.BuildArgs[k]))
		if err != nil {
			return failed(cannot("bad pattern for build argument %s: %v", k, err))
		}
		v, ok := b.BuildArgs[k]
		switch {
		case !ok:
			return fail("The latest build of %s had no --build-arg %s: build it with docker build --build-arg %s=... -t %s .", name, k, k, name)
		case !re.MatchString(v):
			return fail("The latest build of %s had --build-arg %s=%s; it should match %s", name, k, v, s.BuildArgs[k])
		}
	}
	if max := int64(s.ContextMax); max > 0 && b.ContextSize > max {
		return fail("The latest build of %s sent a build context of %s, more than %s: leave out what the image does not need with a .dockerignore file", name, units.HumanSize(float64(b.ContextSize)), units.HumanSize(float64(max)))
	}
	return pass()
}

// runningContainers lists containers (all with all=true).
func (p *probe) containers(ctx context.Context, all bool) ([]container.Summary, error) {
	c, err := p.docker()
	if err != nil {
		return nil, err
	}
	cs, err := c.ContainerList(ctx, container.ListOptions{All: all})
	if err != nil {
		return nil, engineErr(err)
	}
	return cs, nil
}

// parsePublish reads "5001:5000" or "5001" (host port only).
func parsePublish(v string) (host, ctr int, err error) {
	h, c, hasC := strings.Cut(strings.TrimSuffix(v, "/tcp"), ":")
	if host, err = strconv.Atoi(h); err != nil {
		return 0, 0, fmt.Errorf("publish %q: want HOST:CONTAINER ports", v)
	}
	if hasC {
		if ctr, err = strconv.Atoi(c); err != nil {
			return 0, 0, fmt.Errorf("publish %q: want HOST:CONTAINER ports", v)
		}
	}
	return host, ctr, nil
}

// matchContainers returns the running containers of image name (by ID or by
// the name it was started with) and, when publish is set, the one that
// publishes it. msg explains a miss.
func (p *probe) matchContainers(ctx context.Context, s *check.Container) (match *container.Summary, msg string, err error) {
	name := s.Image
	cname := strings.TrimPrefix(s.Name, "/")
	running := check.Or(s.Running, true)
	cs, err := p.containers(ctx, !running)
	if err != nil {
		return nil, "", err
	}
	var imgID string
	if name != "" {
		img, found, err := p.localImage(ctx, name)
		if err != nil {
			return nil, "", err
		}
		if found {
			imgID = img.ID
		}
	}
	var candidates []container.Summary
	for _, c := range cs {
		if name != "" && !(imgID != "" && c.ImageID == imgID) && normRef(c.Image) != normRef(name) {
			continue
		}
		if cname != "" && !hasName(c.Names, cname) {
			continue
		}
		candidates = append(candidates, c)
	}
	what := "container"
	switch {
	case name != "" && cname != "":
		what = fmt.Sprintf("container %s of %s", cname, name)
	case name != "":
		what = "container of " + name
	case cname != "":
		what = "container named " + cname
	}
	pub := string(s.Publish)
	if len(candidates) == 0 {
		state := "running "
		if !running {
			state = ""
		}
		run := "docker run -d"
		if pub != "" {
			run += " -p " + pub
		}
		if cname != "" {
			run += " --name " + cname
		}
		if name == "" {
			name = "IMAGE"
		}
		return nil, fmt.Sprintf("No %s%s: start one with %s %s", state, what, run, name), nil
	}
	for _, want := range s.Mounts {
		var mounting []container.Summary
		for _, c := range candidates {
			if hasMount(c.Mounts, want) {
				mounting = append(mounting, c)
			}
		}
		if len(mounting) == 0 {
			return nil, fmt.Sprintf("No %s mounts %s: run it with %s", what, want, mountFlag(want)), nil
		}
		candidates = mounting
	}
	if pub == "" {
		return &candidates[0], "", nil
	}
	hostPort, ctrPort, err := parsePublish(pub)
	if err != nil {
		return nil, "", cannot("%v", err)
	}
	for i, c := range candidates {
		for _, port := range c.Ports {
			if int(port.PublicPort) == hostPort && (ctrPort == 0 || int(port.PrivatePort) == ctrPort) && (port.Type == "" || port.Type == "tcp") {
				return &candidates[i], "", nil
			}
		}
	}
	// An engine without networking lists no bindings; the container's
	// host config still says what was asked for.
	for i, c := range candidates {
		if len(c.Ports) > 0 && c.Ports[0].PublicPort != 0 {
			continue
		}
		ins, err := p.env.Docker.ContainerInspect(ctx, c.ID)
		if err != nil || ins.HostConfig == nil {
			continue
		}
		for port, binds := range ins.HostConfig.PortBindings {
			for _, bd := range binds {
				if bd.HostPort == strconv.Itoa(hostPort) && (ctrPort == 0 || port.Int() == ctrPort) && port.Proto() == "tcp" {
					return &candidates[i], "", nil
				}
			}
		}
	}
	// Say what is wrong: the port is taken by something else, or mapped to
	// the wrong container port, or not published at all.
	for _, c := range candidates {
		for _, port := range c.Ports {
			if int(port.PublicPort) == hostPort {
				return nil, fmt.Sprintf("Port %d goes to port %d of the container; the app listens on %d: run the image with -p %s", hostPort, port.PrivatePort, ctrPort, pub), nil
			}
		}
	}
	return nil, fmt.Sprintf("No container publishes port %d: run the image with -p %s", hostPort, pub), nil
}

func hasName(names []string, n string) bool {
	for _, x := range names {
		if strings.TrimPrefix(x, "/") == n {
			return true
		}
	}
	return false
}

func checkContainer(ctx context.Context, p *probe, s *check.Container) (outcome, error) {
	c, msg, err := p.matchContainers(ctx, s)
	if err != nil {
		return failed(err)
	}
	if c == nil {
		return fail("%s", msg)
	}
	return pass()
}

func checkPush(ctx context.Context, p *probe, s *check.Push) (outcome, error) {
	repo := s.Repository
	tag := s.Tag
	if tag == "" {
		tag = "latest"
	}
	recs, err := p.records(ctx)
	if err != nil {
		return failed(err)
	}
	re, err := repoPattern(repo, p.env.User)
	if err != nil {
		return failed(cannot("%v", err))
	}
	var localID string
	if name := s.Image; name != "" {
		img, found, err := p.localImage(ctx, name)
		if err != nil {
			return failed(err)
		}
		if !found {
			return fail("There is no image %s to compare the push with: build it first", name)
		}
		localID = img.ID
	}
	minExisting := s.ExistingMin
	var last *TransferRecord
	var lastMsg string
	for i := len(recs.Transfers) - 1; i >= 0; i-- {
		t := &recs.Transfers[i]
		if t.Kind != "push" || t.Error != "" || (t.Tag != "" && t.Tag != tag) {
			continue
		}
		m := re.FindStringSubmatch(familiarRepo(t.Repository))
		if m == nil {
			continue
		}
		if len(m) > 1 && t.Account != "" && m[1] != t.Account {
			continue // {{user}} must be the account that pushed
		}
		if last == nil {
			last = t
		}
		if localID != "" && t.ImageID != localID {
			if lastMsg == "" {
				lastMsg = fmt.Sprintf("The image pushed as %s is not %s (pushed %s, yours is %s): tag %s again and push", familiarRepo(t.Repository)+":"+tag, s.Image, shortID(t.ImageID), shortID(localID), s.Image)
			}
			continue
		}
		existing := 0
		for _, l := range t.Layers {
			if l.Outcome == "exists" || l.Outcome == "mounted" {
				existing++
			}
		}
		if existing < minExisting {
			if lastMsg == "" {
				lastMsg = fmt.Sprintf("The last push of %s uploaded %d of %d layers again; push after the rebuild and the registry should already have at least %d of them", familiarRepo(t.Repository), len(t.Layers)-existing, len(t.Layers), minExisting)
			}
			continue
		}
		return pass()
	}
	if last == nil {
		shown := strings.ReplaceAll(repo, "{{user}}", "<your user>")
		return fail("Nothing has been pushed to %s:%s yet: tag the image and run docker push %s", shown, tag, shown)
	}
	return fail("%s", lastMsg)
}

// familiarRepo turns "docker.io/library/app" into "app" and
// "docker.io/alice/app" into "alice/app".
func familiarRepo(r string) string {
	n, err := reference.ParseNormalizedNamed(r)
	if err != nil {
		return r
	}
	return reference.FamiliarName(n)
}

// repoPattern compiles a repository pattern: {{user}} is one path
// component (the learner's user when known), * any characters but "/".
func repoPattern(p, user string) (*regexp.Regexp, error) {
	if p == "" {
		return nil, fmt.Errorf("push check without repository")
	}
	var b strings.Builder
	b.WriteString("^")
	for rest := p; rest != ""; {
		i := strings.Index(rest, "{{user}}")
		j := strings.Index(rest, "*")
		switch {
		case i == 0:
			if user != "" {
				b.WriteString("(" + regexp.QuoteMeta(user) + ")")
			} else {
				b.WriteString("([^/]+)")
			}
			rest = rest[len("{{user}}"):]
		case j == 0:
			b.WriteString("[^/]*")
			rest = rest[1:]
		default:
			k := len(rest)
			if i > 0 {
				k = min(k, i)
			}
			if j > 0 {
				k = min(k, j)
			}
			b.WriteString(regexp.QuoteMeta(rest[:k]))
			rest = rest[k:]
		}
	}
	b.WriteString("$")
	return regexp.Compile(b.String())
}

// commands names the engine calls a `command` check can ask for.
var commands = map[string]struct {
	method, path string
	say          string
}{
	"logs":    {"GET", `^/containers/[^/]+/logs$`, "docker container logs"},
	"history": {"GET", `^/images/.+/history$`, "docker image history"},
	"diff":    {"GET", `^/containers/[^/]+/changes$`, "docker container diff"},
	"inspect": {"GET", `^/(containers/[^/]+|images/.+)/json$`, "docker inspect"},
	"top":     {"GET", `^/containers/[^/]+/top$`, "docker container top"},
	"ps":      {"GET", `^/containers/json$`, "docker ps"},
	"images":  {"GET", `^/images/json$`, "docker image ls"},
	"exec":    {"POST", `^/containers/[^/]+/exec$`, "docker exec"},
	"run":     {"POST", `^/containers/create$`, "docker run"},
	"start":   {"POST", `^/containers/[^/]+/start$`, "docker start"},
	"stop":    {"POST", `^/containers/[^/]+/(stop|kill)$`, "docker stop"},
	"rm":      {"DELETE", `^/containers/[^/]+$`, "docker rm"},
	"rmi":     {"DELETE", `^/images/.+$`, "docker rmi"},
	"tag":     {"POST", `^/images/.+/tag$`, "docker tag"},
	"build":   {"POST", `^/build$`, "docker build"},
	"push":    {"POST", `^/images/.+/push$`, "docker push"},
	"pull":    {"POST", `^/images/create$`, "docker pull"},
	"login":   {"POST", `^/auth$`, "docker login"},
	"events":  {"GET", `^/events$`, "docker events"},
	"prune":   {"POST", `^/(containers|images|build|networks|volumes)/prune$`, "docker system prune"},
}

// Command is a name a command check accepts and the call it stands for.
type Command struct{ Name, Say, Method, Path string }

// Commands lists them, sorted by name (docs/authoring.md is tested
// against it).
func Commands() []Command {
	var out []Command
	for _, n := range CommandNames() {
		c := commands[n]
		out = append(out, Command{Name: n, Say: c.say, Method: c.method, Path: c.path})
	}
	return out
}

// CommandNames lists the names a command check accepts, sorted.
func CommandNames() []string {
	var out []string
	for k := range commands {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

var commandREs = map[string]*regexp.Regexp{}

func init() {
	for k, c := range commands {
		commandREs[k] = regexp.MustCompile(c.path)
	}
}

func checkCommand(ctx context.Context, p *probe, s *check.Command) (outcome, error) {
	name := s.Command
	method, re, say := "", (*regexp.Regexp)(nil), ""
	if c, ok := commands[name]; ok {
		method, re, say = c.method, commandREs[name], c.say
	} else if name != "" {
		return failed(cannot("unknown command %q (known: %s)", name, strings.Join(CommandNames(), ", ")))
	} else {
		method = strings.ToUpper(s.Method)
		var err error
		if re, err = regexp.Compile(string(s.Path)); err != nil {
			return failed(cannot("bad path pattern: %v", err))
		}
		say = strings.TrimSpace(method + " " + string(s.Path))
	}
	var target *regexp.Regexp
	if m := s.Match; m != "" {
		var err error
		if target, err = regexp.Compile(string(m)); err != nil {
			return failed(cannot("bad match pattern: %v", err))
		}
	}
	query := map[string]*regexp.Regexp{}
	for k, v := range s.Query {
		re, err := regexp.Compile(string(v))
		if err != nil {
			return failed(cannot("bad query pattern for %s: %v", k, err))
		}
		query[k] = re
	}
	recs, err := p.records(ctx)
	if err != nil {
		return failed(err)
	}
	var seen *CallRecord // the latest call of the command that missed
	var why string
	for i := range recs.Calls {
		c := &recs.Calls[i]
		if method != "" && c.Method != method || c.Status >= 400 || !re.MatchString(c.Path) {
			continue
		}
		if miss := callMismatch(c, target, query); miss != "" {
			seen, why = c, miss
			continue
		}
		return pass()
	}
	if seen != nil {
		return fail("You ran %s, but not %s", say, why)
	}
	return fail("You have not run %s yet", say)
}

func checkClean(ctx context.Context, p *probe, s *check.Clean) (outcome, error) {
	all := check.Or(s.Containers, false)
	cs, err := p.containers(ctx, all)
	if err != nil {
		return failed(err)
	}
	if len(cs) > 0 {
		var names []string
		running := 0
		for _, c := range cs {
			if c.State == "running" {
				running++
			}
			if len(c.Names) > 0 {
				names = append(names, strings.TrimPrefix(c.Names[0], "/"))
			}
		}
		if running > 0 {
			return fail("%d container(s) still running (%s): stop them with docker stop", running, strings.Join(names, ", "))
		}
		return fail("Stopped containers are left (%s): remove them with docker container prune", strings.Join(names, ", "))
	}
	for _, ref := range s.Images {
		_, found, err := p.localImage(ctx, ref)
		if err != nil {
			return failed(err)
		}
		if found {
			return fail("The image %s is still there: remove it with docker rmi %s", ref, ref)
		}
	}
	for _, v := range s.Volumes {
		c, err := p.docker()
		if err != nil {
			return failed(err)
		}
		if _, err := c.VolumeInspect(ctx, v); err == nil {
			return fail("The volume %s is still there: remove it with docker volume rm %s", v, v)
		} else if !client.IsErrNotFound(err) {
			return failed(engineErr(err))
		}
	}
	if check.Or(s.Pruned, false) {
		recs, err := p.records(ctx)
		if err != nil {
			return failed(err)
		}
		re := commandREs["prune"]
		for _, c := range recs.Calls {
			if c.Method == "POST" && c.Status < 400 && re.MatchString(c.Path) {
				return pass()
			}
		}
		return fail("Nothing has been pruned yet: run docker system prune")
	}
	return pass()
}

// callMismatch says how call c misses the match pattern or a query
// pattern, naming what was asked and what the call had; "" when it
// matches them all.
func callMismatch(c *CallRecord, match *regexp.Regexp, query map[string]*regexp.Regexp) string {
	params := callParams(c.Query)
	if match != nil {
		pq := c.Path + "?" + decodedQuery(c.Query)
		if !match.MatchString(pq) {
			return fmt.Sprintf("as %s asks: your latest was %s %s", match, c.Method, pq)
		}
	}
	keys := make([]string, 0, len(query))
	for k := range query {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v, ok := params[k]
		switch {
		case !ok:
			return fmt.Sprintf("with %s matching %s: your latest had no %s", k, query[k], k)
		case !query[k].MatchString(v):
			return fmt.Sprintf("with %s matching %s: your latest had %s=%s", k, query[k], k, v)
		}
	}
	return ""
}

// decodedQuery is a raw query with its percent-encoding undone, as an
// author reads it (t=app&buildargs={"V":"2"}).
func decodedQuery(raw string) string {
	parts := strings.Split(raw, "&")
	for i, p := range parts {
		if d, err := url.QueryUnescape(p); err == nil {
			parts[i] = d
		}
	}
	return strings.Join(parts, "&")
}

// callParams decodes a call's query parameters (the last value of each);
// a value that is a JSON object (buildargs, labels, filters) also gives
// each of its keys as "param.key", a string as itself and anything else
// as its JSON.
func callParams(raw string) map[string]string {
	out := map[string]string{}
	q, _ := url.ParseQuery(raw)
	for k, vs := range q {
		v := vs[len(vs)-1]
		out[k] = v
		var obj map[string]json.RawMessage
		if json.Unmarshal([]byte(v), &obj) != nil {
			continue
		}
		for ok, ov := range obj {
			var s string
			if json.Unmarshal(ov, &s) == nil {
				out[k+"."+ok] = s
			} else {
				out[k+"."+ok] = string(ov)
			}
		}
	}
	return out
}

// imageConfig checks what the image check asks of the image itself: its
// labels, environment, size and base. They are read from the image, so
// they answer the same on dockerd.
func (p *probe) imageConfig(ctx context.Context, s *check.Image, name string, img image.InspectResponse) (outcome, error) {
	var labels map[string]string
	var env []string
	if img.Config != nil {
		labels, env = img.Config.Labels, img.Config.Env
	}
	for _, k := range sortedKeys(s.Labels) {
		re, err := regexp.Compile(string(s.Labels[k]))
		if err != nil {
			return failed(cannot("bad pattern for label %s: %v", k, err))
		}
		v, ok := labels[k]
		switch {
		case !ok:
			return fail("%s has no label %s: add LABEL %s=... to the Dockerfile and build again", name, k, k)
		case !re.MatchString(v):
			return fail("The label %s of %s is %q; it should match %s", k, name, v, s.Labels[k])
		}
	}
	vars := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	for _, k := range sortedKeys(s.Env) {
		re, err := regexp.Compile(string(s.Env[k]))
		if err != nil {
			return failed(cannot("bad pattern for variable %s: %v", k, err))
		}
		v, ok := vars[k]
		switch {
		case !ok:
			return fail("%s does not set %s: add ENV %s=... to the Dockerfile and build again", name, k, k)
		case !re.MatchString(v):
			return fail("%s sets %s=%s; it should match %s", name, k, v, s.Env[k])
		}
	}
	if max := int64(s.MaxSize); max > 0 && img.Size > max {
		return fail("%s is %s, more than %s: a smaller base image or fewer files in the image makes it smaller", name, units.HumanSize(float64(img.Size)), units.HumanSize(float64(max)))
	}
	if s.Base != "" {
		base, found, err := p.localImage(ctx, s.Base)
		if err != nil {
			return failed(err)
		}
		if !found {
			return fail("There is no image %s to compare %s with", s.Base, name)
		}
		if !hasPrefix(img.RootFS.Layers, base.RootFS.Layers) {
			return fail("%s is not built FROM %s: start its Dockerfile with FROM %s and build it again", name, s.Base, s.Base)
		}
	}
	return pass()
}

// hasPrefix: layers starts with base (and base has some).
func hasPrefix(layers, base []string) bool {
	return len(base) > 0 && len(layers) >= len(base) && slices.Equal(layers[:len(base)], base)
}

func sortedKeys(m check.Patterns) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// hasMount: ms has what a mounts entry asks: "DEST", "NAME:DEST" (the
// volume NAME) or "TYPE:DEST" (volume, bind, tmpfs).
func hasMount(ms []container.MountPoint, want string) bool {
	src, dest, ok := strings.Cut(want, ":")
	if !ok {
		src, dest = "", want
	}
	dest = path.Clean(dest)
	for _, m := range ms {
		if path.Clean(m.Destination) != dest {
			continue
		}
		switch src {
		case "":
			return true
		case "volume", "bind", "tmpfs":
			if string(m.Type) == src {
				return true
			}
		default:
			if m.Type == "volume" && m.Name == src {
				return true
			}
		}
	}
	return false
}

// mountFlag is the docker run flag that makes a mounts entry.
func mountFlag(want string) string {
	src, dest, ok := strings.Cut(want, ":")
	switch {
	case !ok:
		return "-v NAME:" + want
	case src == "bind":
		return "-v $(pwd)/DIR:" + dest
	case src == "tmpfs":
		return "--mount type=tmpfs,target=" + dest
	case src == "volume":
		return "-v NAME:" + dest
	}
	return "-v " + want
}

func checkVolume(ctx context.Context, p *probe, s *check.Volume) (outcome, error) {
	c, err := p.docker()
	if err != nil {
		return failed(err)
	}
	if _, err := c.VolumeInspect(ctx, s.Name); err != nil {
		if client.IsErrNotFound(err) {
			return fail("There is no volume %s yet: make it with docker volume create %s, or name it in docker run -v %s:PATH", s.Name, s.Name, s.Name)
		}
		return failed(engineErr(err))
	}
	if s.Container == "" && s.Path == "" {
		return pass()
	}
	cs, err := p.containers(ctx, true)
	if err != nil {
		return failed(err)
	}
	for _, ct := range cs {
		if s.Container != "" && !hasName(ct.Names, strings.TrimPrefix(s.Container, "/")) {
			continue
		}
		for _, m := range ct.Mounts {
			if m.Type == "volume" && m.Name == s.Name && (s.Path == "" || path.Clean(m.Destination) == path.Clean(s.Path)) {
				return pass()
			}
		}
	}
	switch {
	case s.Container != "" && s.Path != "":
		return fail("Container %s does not mount the volume %s at %s: run it with -v %s:%s", s.Container, s.Name, s.Path, s.Name, s.Path)
	case s.Container != "":
		return fail("Container %s does not mount the volume %s: run it with -v %s:PATH", s.Container, s.Name, s.Name)
	}
	return fail("No container mounts the volume %s at %s: run one with -v %s:%s", s.Name, s.Path, s.Name, s.Path)
}
