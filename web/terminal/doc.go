// Package terminal bridges one pty (the learner's login shell, owned by the
// sandbox) to many websocket clients (browser tabs).
//
// The package has three layers, each usable alone:
//
//   - the protocol (protocol.go): typed messages ([Input], [Resize],
//     [Output], [Notice], ...) with [Encode] and [Decode] over io.Writer and
//     io.Reader, one message per websocket binary frame. The wire format is
//     specified in docs/terminal-protocol.md.
//   - the transport (conn.go): [Conn], a thin adapter over a gorilla
//     websocket connection, and [Upgrade], which refuses Origins the
//     caller's policy (UpgradeOptions.CheckOrigin) does not accept with
//     HTTP 403 before any upgrade.
//   - the [Hub]: one pty reader goroutine that appends output to a bounded
//     scrollback ring and to every attached client's bounded queue. A
//     (re)attaching client first gets the ring, then live output, with no gap
//     or duplicate. A client whose queue stays full applies backpressure to
//     the shell for at most HubOptions.StallTimeout, then it is dropped with
//     close code [CloseTooSlow], so one dead tab cannot freeze the others.
//
// The hub never closes the pty: whoever owns it (the sandbox) does, and the
// hub's reader goroutine ends when the pty's Read fails.
package terminal
