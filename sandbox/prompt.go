package sandbox

// PromptCommandEnv makes bash mark its prompts for the lab page's
// terminal with the shell-integration sequences of VS Code, iTerm2 and
// WezTerm (OSC 133, docs/terminal-protocol.md):
//
//	ESC ] 133 ; D ; <exit status> BEL   the previous command ended
//	ESC ] 133 ; A BEL                   a prompt (PS1) follows
//	ESC ] 133 ; A ; k=s BEL             a continuation prompt (PS2) follows
//	ESC ] 133 ; C BEL                   a command starts (PS0)
//
// The page's Run buttons wait for A before typing a block, so a block
// never lands in the stdin of a command still running.
//
// Both providers put it in the environment of the learner's login shell
// (only there: Exec'd commands do not need it). It is PROMPT_COMMAND
// rather than markers in PS1 because Debian's /etc/bash.bashrc replaces
// PS1, and a learner's own PS1 must keep working: bash runs
// PROMPT_COMMAND before every primary prompt whatever PS1 is, and keeps
// $? for PS1. PS0 and PS2 get their marker added once, in front of or
// after whatever they hold (the markers are invisible in xterm.js), and
// only in bash's memory: they are not exported, so other shells never
// print the escapes literally. ${PS0-} keeps `set -u` quiet. A learner
// who replaces PROMPT_COMMAND loses the markers; the page then falls back
// to typing at once.
const PromptCommandEnv = `PROMPT_COMMAND=printf "\e]133;D;%s\a\e]133;A\a" "$?";` +
	`[[ ${PS0-} == *133\;C* ]]||PS0+="\e]133;C\a";` +
	`[[ ${PS2-} == *133\;A* ]]||PS2="\[\e]133;A;k=s\a\]${PS2-}"`
