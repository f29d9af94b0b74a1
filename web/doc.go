// Package web serves labd's browser UI: the lab catalogue, the lab page
// (instructions beside a terminal), files of a lab folder, and the
// websocket route that attaches a browser to its sandbox's terminal.
//
// New returns an http.Handler; the caller owns the http.Server and its
// shutdown. Learners are anonymous: a signed cookie (labd_learner) names
// them, and a learner's sandbox for a lab is derived from that name, so a
// reload finds the same shell. Templates and static files, including the
// xterm.js files that `make assets` copies into static/vendor, are
// embedded; nothing is loaded from a CDN.
package web
