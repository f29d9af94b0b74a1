package auth

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/labd/labd/registry/accounts"
)

// Scope is one requested resource with its actions, as in
// "repository:alice/app:pull,push" or "registry:catalog:*".
type Scope struct {
	Type    string // "repository" or "registry"
	Name    string
	Actions []string
}

func (s Scope) String() string {
	return s.Type + ":" + s.Name + ":" + strings.Join(s.Actions, ",")
}

// ParseScope parses a scope string. The name may itself hold colons (a
// registry host with a port), so the type ends at the first colon and the
// actions start after the last.
func ParseScope(s string) (Scope, error) {
	typ, rest, ok := strings.Cut(s, ":")
	i := strings.LastIndexByte(rest, ':')
	if !ok || i <= 0 || typ == "" {
		return Scope{}, fmt.Errorf("malformed scope %q", s)
	}
	// "repository(plugin)" carries a resource class we do not use.
	if j := strings.IndexByte(typ, '('); j > 0 {
		typ = typ[:j]
	}
	var actions []string
	for _, a := range strings.Split(rest[i+1:], ",") {
		if a != "" && !slices.Contains(actions, a) {
			actions = append(actions, a)
		}
	}
	return Scope{Type: typ, Name: rest[:i], Actions: actions}, nil
}

// Roles tells the policy whose namespace a repository is in: it returns
// the role of the account with that name, or "" if there is none.
type Roles interface {
	Role(ctx context.Context, name string) (accounts.Role, error)
}

// Policy decides which actions an account gets on a resource.
//
//   - The namespace of a repository is its first path component;
//     single-component names ("busybox") and "library/..." are the shared
//     namespace, and so is the namespace of every instructor account:
//     together, the public repositories.
//   - Anonymous: pull on public repositories.
//   - Learner L: pull, push, delete under "L/..."; pull on public ones.
//   - Instructor I: pull everything; push and delete under "I/...",
//     "library/..." and single-component names; the catalog.
type Policy struct {
	Roles Roles
}

// Actions on a repository that the policy hands out.
var repoActions = []string{"pull", "push", "delete"}

// Grant returns the subset of s.Actions that account (role; "" and ""
// for anonymous) may do. A "*" request is answered with the allowed
// subset, plus "*" when that is everything.
func (p Policy) Grant(ctx context.Context, account string, role accounts.Role, s Scope) ([]string, error) {
	allowed, err := p.allowed(ctx, account, role, s)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, a := range s.Actions {
		if a == "*" {
			for _, x := range allowed {
				if x != "*" && !slices.Contains(out, x) {
					out = append(out, x)
				}
			}
			if s.Type == "registry" || len(allowed) == len(repoActions) {
				if len(allowed) > 0 && !slices.Contains(out, "*") {
					out = append(out, "*")
				}
			}
			continue
		}
		if slices.Contains(allowed, a) && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out, nil
}

func (p Policy) allowed(ctx context.Context, account string, role accounts.Role, s Scope) ([]string, error) {
	switch s.Type {
	case "registry":
		if s.Name == "catalog" && role == accounts.Instructor {
			return []string{"*"}, nil
		}
		return nil, nil
	case "repository":
	default:
		return nil, nil
	}
	ns, _, nested := strings.Cut(s.Name, "/")
	shared := !nested || ns == "library"
	switch {
	case role == accounts.Instructor:
		if ns == account || shared {
			return repoActions, nil
		}
		return []string{"pull"}, nil
	case role == accounts.Learner && nested && ns == account:
		return repoActions, nil
	}
	if shared {
		return []string{"pull"}, nil
	}
	owner, err := p.Roles.Role(ctx, ns)
	if err != nil {
		return nil, fmt.Errorf("policy for %s: %w", s.Name, err)
	}
	if owner == accounts.Instructor {
		return []string{"pull"}, nil
	}
	return nil, nil
}
