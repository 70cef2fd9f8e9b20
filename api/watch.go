package api

import "time"

// Types of WatchEvent. Clients must ignore types they do not know: later
// features (rollouts, kill switches) add their own.
const (
	// WatchBundle announces a new bundle version (a publish or a rollback).
	WatchBundle = "bundle"
	// WatchHeartbeat carries the node's current version and revision, sent
	// periodically so a client can bound how stale its view is.
	WatchHeartbeat = "heartbeat"
	// WatchRollout carries the latest state of a canary rollout when it
	// changes (started, aborted, promoted), and the active one when a watch
	// starts. Two changes in quick succession may arrive as one event with
	// the later state.
	WatchRollout = "rollout"
	// WatchKill carries a kill switch when it is set or lifted, and every
	// active one when a watch starts. Like rollouts it is state: a switch
	// set and lifted between two wake-ups arrives once, lifted.
	WatchKill = "kill"
)

// WatchEvent is one message of GET /v1/watch, a JSON text message of the
// WebSocket. Version and Revision are always set: for a bundle event they are
// the new version and the revision that committed it; for a heartbeat, the
// latest version the node holds and the revision it has applied.
type WatchEvent struct {
	Type     string `json:"type"`
	Version  uint64 `json:"version"`
	Revision uint64 `json:"revision"`

	// Bundle events only.
	Hash       string    `json:"hash,omitempty"`
	Parent     uint64    `json:"parent,omitempty"`
	RollbackOf uint64    `json:"rollback_of,omitempty"`
	Author     string    `json:"author,omitempty"`
	Message    string    `json:"message,omitempty"`
	Time       time.Time `json:"time,omitzero"`
	// Files is the bundle's source, sent only to a watcher that asked for
	// it with content=true; in the event of an active rollout, its
	// candidate's source.
	Files []File `json:"files,omitempty"`

	// Rollout events only: the rollout's state; Revision is that of its
	// last change, Version the current bundle version. With content=true
	// the event of an active rollout carries its candidate in Files.
	Rollout *Rollout `json:"rollout,omitempty"`

	// Kill events only: the switch's state; Revision is that of its last
	// change (set or lift), Version the current bundle version.
	Kill *KillSwitch `json:"kill,omitempty"`
}

// VersionInfo returns the version metadata of a bundle event.
func (e *WatchEvent) VersionInfo() VersionInfo {
	return VersionInfo{Version: e.Version, Revision: e.Revision, Hash: e.Hash, Parent: e.Parent,
		RollbackOf: e.RollbackOf, Author: e.Author, Message: e.Message, Time: e.Time}
}

// Close codes of GET /v1/watch beyond the standard ones. The close reason
// says what happened and the version to resume from.
const (
	// WatchCloseSlowConsumer: the watcher fell too far behind the live
	// versions; reconnect with from set to the last version received.
	WatchCloseSlowConsumer = 4000
)
