package auth

import (
	"context"
	"slices"
	"testing"

	"github.com/labd/labd/registry/accounts"
)

func TestParseScope(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Scope
		bad  bool
	}{
		{in: "repository:alice/app:pull,push", want: Scope{"repository", "alice/app", []string{"pull", "push"}}},
		{in: "repository:localhost:5000/a:pull", want: Scope{"repository", "localhost:5000/a", []string{"pull"}}},
		{in: "repository(plugin):a/b:pull,pull", want: Scope{"repository", "a/b", []string{"pull"}}},
		{in: "registry:catalog:*", want: Scope{"registry", "catalog", []string{"*"}}},
		{in: "repository:a", bad: true},
		{in: "nonsense", bad: true},
	} {
		got, err := ParseScope(tc.in)
		if (err != nil) != tc.bad {
			t.Errorf("ParseScope(%q) error = %v, want bad=%v", tc.in, err, tc.bad)
			continue
		}
		if !tc.bad && (got.Type != tc.want.Type || got.Name != tc.want.Name || !slices.Equal(got.Actions, tc.want.Actions)) {
			t.Errorf("ParseScope(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

type roles map[string]accounts.Role

func (r roles) Role(_ context.Context, name string) (accounts.Role, error) { return r[name], nil }

func TestPolicyGrant(t *testing.T) {
	p := Policy{Roles: roles{"alice": accounts.Learner, "teacher": accounts.Instructor}}
	for _, tc := range []struct {
		who   string
		role  accounts.Role
		scope string
		want  []string
	}{
		{"alice", accounts.Learner, "repository:alice/x/y:pull,push,delete", []string{"pull", "push", "delete"}},
		{"alice", accounts.Learner, "repository:alice/x:*", []string{"pull", "push", "delete", "*"}},
		{"alice", accounts.Learner, "repository:library/x:*", []string{"pull"}},
		{"alice", accounts.Learner, "repository:bob/x:pull", nil},
		{"alice", accounts.Learner, "repository:teacher/x:pull,push", []string{"pull"}},
		{"alice", accounts.Learner, "registry:catalog:*", nil},
		{"teacher", accounts.Instructor, "repository:alice/x:pull,push,delete", []string{"pull"}},
		{"teacher", accounts.Instructor, "repository:busybox:push", []string{"push"}},
		{"", "", "repository:busybox:pull,push", []string{"pull"}},
		{"", "", "repository:alice/x:pull", nil},
		{"alice", accounts.Learner, "unknown:thing:pull", nil},
	} {
		s, err := ParseScope(tc.scope)
		if err != nil {
			t.Fatal(err)
		}
		got, err := p.Grant(context.Background(), tc.who, tc.role, s)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("Grant(%q, %s) = %q, %v; want %q", tc.who, tc.scope, got, err, tc.want)
		}
	}
}
