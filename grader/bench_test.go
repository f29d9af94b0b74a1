package grader_test

import (
	"context"
	"testing"

	"github.com/labd/labd/grader"
	"github.com/labd/labd/labs"
	"go.yaml.in/yaml/v3"
)

// BenchmarkGradeLab grades a whole lab state without script checks: files,
// Dockerfile, image, build cache, container, push, command and clean
// checks against a real sandbox's engine (docs/benchmarks.md; aim < 20 ms).
func BenchmarkGradeLab(b *testing.B) {
	bx := newBox(b)
	bx.sh("printf '" + `FROM busybox\nRUN echo built > /built\nCMD ["cat", "/app.txt"]\nCOPY app.txt /app.txt\n` + "' > Dockerfile && echo one > app.txt && docker build -t hello-app . && echo two > app.txt && docker build -t hello-app . && docker image history hello-app && docker run -d -p 5001:5000 hello-app sleep 600")
	checks := []string{
		"kind: file\npath: app.txt\ncontains: two",
		"kind: dockerfile\nfrom: busybox\ninstructions: [RUN echo built, CMD, COPY app.txt]\nlast: COPY app.txt",
		"kind: image\nimage: hello-app\nbuilt: true\ndockerfile: Dockerfile",
		"kind: build\nimage: hello-app\ncache_reused: true\nchanged: true",
		"kind: container\nimage: hello-app\npublish: '5001:5000'",
		"kind: push\nrepository: '{{user}}/hello-app'\nimage: hello-app",
		"kind: command\ncommand: history",
		"kind: clean\npruned: true",
	}
	lab := &labs.Lab{ID: "bench", Steps: []labs.Step{{Index: 1, ID: "s", Title: "s"}}}
	for i, y := range checks {
		var spec map[string]any
		if err := yaml.Unmarshal([]byte(y), &spec); err != nil {
			b.Fatal(err)
		}
		lab.Steps[0].Checks = append(lab.Steps[0].Checks, checkOf(b, string(rune('a'+i)), spec))
	}
	env := *bx.env
	env.NoScripts = true
	r := grader.Grade(context.Background(), &env, lab)
	if r.Passed < 6 {
		b.Fatalf("only %d checks pass: %+v", r.Passed, r)
	}
	b.ResetTimer()
	for range b.N {
		grader.Grade(context.Background(), &env, lab)
	}
}
