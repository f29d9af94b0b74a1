// Package labs turns lab folders into something the web layer can show.
//
// A lab is a folder under the content root whose name is the lab ID
// ([a-z0-9-]+) and which holds lab.md: YAML front matter, an intro, and one
// step per "## " heading. Fenced blocks carry the interactive parts: shell
// blocks get Copy and Run buttons, ```check blocks describe what the grader
// verifies, ```hint and ```solution blocks fold away until the learner asks.
// docs/authoring.md is the full description of the format.
//
// Load parses and renders one folder; Catalog keeps rendered labs in memory
// and re-renders a lab when its lab.md or folder changes on disk, so an
// author sees an edit on the next page load; Lint reports every problem in a
// content root as "path:line: message". A lab with problems is never shown
// half-rendered: Catalog.Get returns a *BrokenError naming the problems.
package labs
