package build

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// Ported from moby builder/dockerfile/buildargs.go: which build args a
// step may see, and which the build never used.

var builtinAllowedBuildArgs = map[string]bool{
	"HTTP_PROXY": true, "http_proxy": true,
	"HTTPS_PROXY": true, "https_proxy": true,
	"FTP_PROXY": true, "ftp_proxy": true,
	"NO_PROXY": true, "no_proxy": true,
	"ALL_PROXY": true, "all_proxy": true,
}

type buildArgs struct {
	allowedBuildArgs map[string]*string // ARGs declared in this stage
	allowedMetaArgs  map[string]*string // ARGs declared before the first FROM
	referencedArgs   map[string]struct{}
	argsFromOptions  map[string]*string // --build-arg
}

func newBuildArgs(fromOptions map[string]*string) *buildArgs {
	return &buildArgs{
		allowedBuildArgs: map[string]*string{},
		allowedMetaArgs:  map[string]*string{},
		referencedArgs:   map[string]struct{}{},
		argsFromOptions:  fromOptions,
	}
}

func (b *buildArgs) clone() *buildArgs {
	r := newBuildArgs(b.argsFromOptions)
	for k, v := range b.allowedBuildArgs {
		r.allowedBuildArgs[k] = v
	}
	for k, v := range b.allowedMetaArgs {
		r.allowedMetaArgs[k] = v
	}
	for k := range b.referencedArgs {
		r.referencedArgs[k] = struct{}{}
	}
	return r
}

func (b *buildArgs) mergeReferenced(o *buildArgs) {
	for k := range o.referencedArgs {
		b.referencedArgs[k] = struct{}{}
	}
}

func (b *buildArgs) warnOnUnused(out io.Writer) {
	var left []string
	for arg := range b.argsFromOptions {
		_, ref := b.referencedArgs[arg]
		if !builtinAllowedBuildArgs[arg] && !ref {
			left = append(left, arg)
		}
	}
	if len(left) > 0 {
		sort.Strings(left)
		fmt.Fprintf(out, "[Warning] One or more build-args %v were not consumed\n", left)
	}
}

func (b *buildArgs) resetAllowed() { b.allowedBuildArgs = map[string]*string{} }

func (b *buildArgs) addMetaArg(k string, v *string) { b.allowedMetaArgs[k] = v }

func (b *buildArgs) addArg(k string, v *string) {
	b.allowedBuildArgs[k] = v
	b.referencedArgs[k] = struct{}{}
}

func (b *buildArgs) isReferencedOrNotBuiltin(k string) bool {
	_, allowed := b.allowedBuildArgs[k]
	return allowed || !builtinAllowedBuildArgs[k]
}

func (b *buildArgs) allAllowed() map[string]string { return b.allFrom(b.allowedBuildArgs) }
func (b *buildArgs) allMeta() map[string]string    { return b.allFrom(b.allowedMetaArgs) }

func (b *buildArgs) allFrom(src map[string]*string) map[string]string {
	m := map[string]string{}
	keys := make([]string, 0, len(src)+len(builtinAllowedBuildArgs))
	for k := range src {
		keys = append(keys, k)
	}
	for k := range builtinAllowedBuildArgs {
		keys = append(keys, k)
	}
	for _, k := range keys {
		if v, ok := b.get(k, src); ok {
			m[k] = v
		}
	}
	return m
}

// filterAllowed returns the allowed args as KEY=VALUE that the config's
// environment does not already set (ENV wins over ARG).
func (b *buildArgs) filterAllowed(env []string) []string {
	out := []string{}
	set := map[string]bool{}
	for _, e := range env {
		k, _, _ := strings.Cut(e, "=")
		set[k] = true
	}
	for k, v := range b.allAllowed() {
		if !set[k] {
			out = append(out, k+"="+v)
		}
	}
	return out
}

func (b *buildArgs) get(k string, src map[string]*string) (string, bool) {
	def, exists := src[k]
	if v, ok := b.argsFromOptions[k]; ok && v != nil {
		return *v, ok
	}
	if def == nil {
		if v, ok := b.allowedMetaArgs[k]; ok && v != nil {
			return *v, ok
		}
		return "", false
	}
	return *def, exists
}
