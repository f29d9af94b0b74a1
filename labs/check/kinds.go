// Package check is the contract between a lab's ```check blocks and the
// grader: one Go type per check kind, the YAML fields each accepts (with
// their types and which are required), and the one strict decoding of a
// check's YAML into those types. labs parses and lints with it, the
// grader switches on its types, and docs/authoring.md is tested against
// it, so the guide, the linter and the grader cannot disagree.
//
// It is a leaf: it knows YAML and nothing of labs, sandboxes or engines.
package check

import (
	"regexp"
	"slices"
	"strings"
	"time"
)

// Spec is a check's kind-specific fields: a pointer to one of the kind
// types below.
type Spec interface {
	// Kind is the check's kind, as written in its "kind:" field.
	Kind() string
}

// File: a file of the learner's workspace exists (or not) and holds a
// text or a line matching a pattern.
type File struct {
	Path     string `yaml:"path,omitempty" check:"required"`
	Exists   *bool  `yaml:"exists,omitempty"` // default true
	Contains string `yaml:"contains,omitempty"`
	Matches  Regexp `yaml:"matches,omitempty"`
}

// Dockerfile: a workspace file parses as a Dockerfile with the given base,
// instructions in order and last instruction.
type Dockerfile struct {
	Path string `yaml:"path,omitempty"` // default Dockerfile
	// Stage is the stage (its AS name, or its number from 0) that from,
	// instructions and last look at; default the whole file.
	Stage        string `yaml:"stage,omitempty"`
	From         string `yaml:"from,omitempty"`
	Instructions List   `yaml:"instructions,omitempty"`
	Last         string `yaml:"last,omitempty"`
}

// Image: an image exists in the learner's engine, was built there, from
// a given Dockerfile, with given history.
type Image struct {
	Image      string   `yaml:"image,omitempty" check:"required"`
	Built      *bool    `yaml:"built,omitempty"`
	Dockerfile string   `yaml:"dockerfile,omitempty"`
	History    List     `yaml:"history,omitempty"`
	Labels     Patterns `yaml:"labels,omitempty"`   // label: pattern of its value
	Env        Patterns `yaml:"env,omitempty"`      // variable: pattern of its value
	MaxSize    Size     `yaml:"max_size,omitempty"` // the image's size at most
	// Base is an image whose layers the image starts with: it was built
	// FROM that image (or FROM one built on it).
	Base string `yaml:"base,omitempty"`
}

// Build: what the latest successful build of an image did with the cache.
type Build struct {
	Image       string   `yaml:"image,omitempty" check:"required"`
	CachedMin   int      `yaml:"cached_min,omitempty"`
	CacheReused *bool    `yaml:"cache_reused,omitempty"`
	Changed     *bool    `yaml:"changed,omitempty"`
	BuildArgs   Patterns `yaml:"build_args,omitempty"`  // --build-arg: pattern of its value
	Target      string   `yaml:"target,omitempty"`      // built with --target this stage
	ContextMax  Size     `yaml:"context_max,omitempty"` // the context sent at most
}

// Container: a container of an image and/or name exists (runs) and
// publishes a port.
type Container struct {
	Image   string  `yaml:"image,omitempty"`
	Name    string  `yaml:"name,omitempty"`
	Publish Publish `yaml:"publish,omitempty"`
	Running *bool   `yaml:"running,omitempty"` // default true
	// Mounts are what the container must mount: "DEST" (anything at that
	// path), "NAME:DEST" (the volume NAME), or "volume:DEST", "bind:DEST",
	// "tmpfs:DEST" (a mount of that type).
	Mounts List `yaml:"mounts,omitempty"`
}

// Volume: a volume exists, and is mounted by a container.
type Volume struct {
	Name string `yaml:"name,omitempty" check:"required"`
	// Container names a container (any state) that must mount it; Path
	// where some container mounts it.
	Container string `yaml:"container,omitempty"`
	Path      string `yaml:"path,omitempty"`
}

// HTTP: a port of the sandbox answers a GET.
type HTTP struct {
	Port     int    `yaml:"port,omitempty" check:"required"`
	Path     string `yaml:"path,omitempty"`   // default /
	Status   int    `yaml:"status,omitempty"` // default 200
	Contains string `yaml:"contains,omitempty"`
	Image    string `yaml:"image,omitempty"`
}

// Push: a push of a repository succeeded.
type Push struct {
	Repository  string `yaml:"repository,omitempty" check:"required"`
	Tag         string `yaml:"tag,omitempty"` // default latest
	Image       string `yaml:"image,omitempty"`
	ExistingMin int    `yaml:"existing_min,omitempty"`
}

// Command: the learner's engine received an API call.
type Command struct {
	Command string `yaml:"command,omitempty"`
	Method  string `yaml:"method,omitempty"`
	Path    Regexp `yaml:"path,omitempty"`
	// Match is a pattern on the call's path?query, the query decoded.
	Match Regexp `yaml:"match,omitempty"`
	// Query maps a query parameter to a pattern its decoded value must
	// match; "buildargs.VERSION" names a key of a JSON object value
	// (buildargs, labels, filters).
	Query Patterns `yaml:"query,omitempty"`
}

// Clean: nothing is left running (or at all), named images are gone, a
// prune ran.
type Clean struct {
	Containers *bool `yaml:"containers,omitempty"`
	Images     List  `yaml:"images,omitempty"`
	Volumes    List  `yaml:"volumes,omitempty"`
	Pruned     *bool `yaml:"pruned,omitempty"`
}

// Question: the learner answered a question of the step right. A
// ```question block is this check, shown as a form in the step: choices
// (one correct, or several with all of them to pick) or a free answer
// matched by a pattern.
type Question struct {
	Prompt  string `yaml:"prompt,omitempty" check:"required"`
	Choices List   `yaml:"choices,omitempty"`
	Correct List   `yaml:"correct,omitempty"` // the choices to pick, all of them
	// Answer is a free answer's pattern, Example an answer it takes
	// (labd test answers with it; lint checks that it matches).
	Answer  Regexp `yaml:"answer,omitempty"`
	Example string `yaml:"example,omitempty"`
}

// Multiple says the learner picks several choices (checkboxes).
func (q *Question) Multiple() bool { return len(q.Correct) > 1 }

// Right reports whether answer (the choices picked, or one free text)
// answers q.
func (q *Question) Right(answer []string) bool {
	if q.Answer != "" {
		re, err := regexp.Compile(string(q.Answer))
		return err == nil && len(answer) == 1 && re.MatchString(strings.TrimSpace(answer[0]))
	}
	if len(answer) != len(q.Correct) {
		return false
	}
	for _, c := range q.Correct {
		if !slices.Contains(answer, c) {
			return false
		}
	}
	return true
}

// ExampleAnswer is an answer that is right: the correct choices, or the
// free answer's example.
func (q *Question) ExampleAnswer() []string {
	if q.Answer != "" {
		return []string{q.Example}
	}
	return slices.Clone(q.Correct)
}

// Script: a shell snippet exits 0 in a fresh container of the sandbox
// image.
type Script struct {
	Run     string   `yaml:"run,omitempty" check:"required"`
	Timeout Duration `yaml:"timeout,omitempty"` // 0: the grader's default
}

func (*File) Kind() string       { return "file" }
func (*Dockerfile) Kind() string { return "dockerfile" }
func (*Image) Kind() string      { return "image" }
func (*Build) Kind() string      { return "build" }
func (*Container) Kind() string  { return "container" }
func (*HTTP) Kind() string       { return "http" }
func (*Push) Kind() string       { return "push" }
func (*Command) Kind() string    { return "command" }
func (*Volume) Kind() string     { return "volume" }
func (*Question) Kind() string   { return "question" }
func (*Clean) Kind() string      { return "clean" }
func (*Script) Kind() string     { return "script" }

// kinds lists a new Spec of every kind, in the guide's order.
var kinds = []func() Spec{
	func() Spec { return new(File) },
	func() Spec { return new(Dockerfile) },
	func() Spec { return new(Image) },
	func() Spec { return new(Build) },
	func() Spec { return new(Container) },
	func() Spec { return new(HTTP) },
	func() Spec { return new(Push) },
	func() Spec { return new(Command) },
	func() Spec { return new(Volume) },
	func() Spec { return new(Question) },
	func() Spec { return new(Clean) },
	func() Spec { return new(Script) },
}

// Kinds are the check kinds, in the guide's order.
var Kinds = func() []string {
	out := make([]string, len(kinds))
	for i, k := range kinds {
		out[i] = k().Kind()
	}
	return out
}()

// New returns an empty Spec of kind, or nil for an unknown kind.
func New(kind string) Spec {
	for _, k := range kinds {
		if s := k(); s.Kind() == kind {
			return s
		}
	}
	return nil
}

// CommandNames are the engine commands a command check may name.
var CommandNames = []string{"build", "diff", "events", "exec", "history", "images", "inspect", "login", "logs", "prune", "ps", "pull", "push", "rm", "rmi", "run", "start", "stop", "tag", "top"}

// Or is *b, or def when the field was left out.
func Or(b *bool, def bool) bool {
	if b == nil {
		return def
	}
	return *b
}

// Regexp is a regular expression (checked to compile when decoded).
type Regexp string

// Size is a number of bytes, written as docker prints sizes ("200MB",
// "1.5GB", decimal as the CLI's) or as a whole number of bytes.
type Size int64

// Patterns maps names to regular expressions.
type Patterns map[string]Regexp

// Publish is a HOST[:CONTAINER][/tcp] port pair, as docker run -p.
type Publish string

// List is a list of text; one text stands for a list of one.
type List []string

// Duration is a time: whole seconds, or a Go duration such as 10s.
type Duration time.Duration

// MarshalYAML writes it as a Go duration, which Decode reads back.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }
