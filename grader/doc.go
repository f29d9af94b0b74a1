// Package grader will check every lab step against what the engine actually
// did (issue 6). It is empty on purpose: nothing here pretends to grade yet,
// and the lab pages show checks as "not checked yet".
package grader
