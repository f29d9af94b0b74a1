package enginebox_test

import (
	"regexp"
	"testing"
)

// TestShellContainerPromptMarkers: the container shell marks its prompts
// (OSC 133, sandbox.PromptCommandEnv) through the image's login files, in
// order around a command, with the continuation marker on PS2, and a
// learner's own PS1 keeps working.
func TestShellContainerPromptMarkers(t *testing.T) {
	sb := shellSandbox(t, "shell-marks", "lab-marks")
	scr := watch(sb.Terminal())
	q := regexp.QuoteMeta
	// readline switches bracketed paste on before a prompt.
	const bp = `(?:\x1b\[\?2004h)?`
	scr.waitFor(t, regexp.MustCompile(q("\x1b]133;A\a")+bp+`root@lab-marks:~# $`))
	sb.Terminal().Write([]byte("PS1='mine[$?]> '; (exit 3)\n"))
	scr.waitFor(t, regexp.MustCompile(q("\x1b]133;C\a\x1b]133;D;3\a\x1b]133;A\a")+bp+`mine\[3\]> $`))
	sb.Terminal().Write([]byte("cat <<EOF\n"))
	scr.waitFor(t, regexp.MustCompile(q("\x1b]133;A;k=s\a")+`> $`))
	sb.Terminal().Write([]byte("body-$((2+2))\nEOF\n"))
	scr.waitFor(t, regexp.MustCompile(q("\x1b]133;C\a")+`body-4\r\n`+q("\x1b]133;D;0\a\x1b]133;A\a")+bp+`mine\[0\]> $`))
}
