// Package ctr holds one engine's containers through their lives: the
// state each keeps on disk (config.v2.json and hostconfig.json, as
// dockerd's), the names and IDs that find them, and their runs: start,
// the monitor that records an exit, stop, kill, wait, removal, the attach
// hub and json-file log of each run, and `docker exec`.
//
// It knows nothing of images, mounts or networks: the engine (package
// engine, the Docker API front) turns a container's config into a
// runtime.Spec, attaches it to its network, and hands both to
// Store.StartLocked as a Run; the Run's Release gives those back when the
// run ends. What the engine must hear of (events, a failed auto-remove)
// reaches it through Hooks.
//
// # Lock order
//
// A goroutine holding a lock may take only locks below it in this list,
// never one above:
//
//  1. Container's lock (Container.Lock): its state, config and run. Held
//     while an event is published (Hooks.Publish takes the event bus's
//     lock) and while the engine prepares a start.
//  2. Store.mu: the ID and name indexes (a rename holds the container's
//     lock and reserves the new name).
//  3. Store.execMu: the exec IDs of the engine.
//  4. The attach hub's lock (attachHub.mu): held across a run's output
//     write to the clients and the log, so a client joining with the log
//     sees each byte once.
//  5. output.mu: a run's log file, partial lines and `logs -f` followers.
//  6. attachClient.mu: one client's queue and connection.
//  7. Exec.mu: one exec's state (taken under the container's lock when
//     its container exits; an exec never takes its container's lock while
//     holding its own).
//
// Blocking work never runs under a container's lock except the start
// itself (the runtime's create and start), which dockerd also serializes
// per container: waits, stops and kills release it and sleep on the
// container's changed channel.
package ctr
