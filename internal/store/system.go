package store

import (
	"context"
	"fmt"
	"time"

	"github.com/aibos/kernel/api"
)

// The system bundle decides the kernel's own API (internal/auth). The
// embedded default holds until an admin publishes a replacement; the
// replacement is replicated like a bundle version (the latest only) and
// counted in its own sequence, apart from tenants' versions.
const cmdSystemPublish = "system.publish"

// ChangeSystem is the Change kind of a system bundle published;
// Change.System is set (and on restore, the restored one, nil if none).
const ChangeSystem = "system"

type systemPublishCmd struct {
	Files   []api.File `json:"files"`
	Hash    string     `json:"hash"`
	Message string     `json:"message,omitempty"`
	Author  string     `json:"author,omitempty"`
	Time    time.Time  `json:"time"`
}

// applySystemPublish replaces the system bundle, numbered in its own
// sequence.
func (f *fsm) applySystemPublish(c command, p *systemPublishCmd) (Change, applyResult, error) {
	if err := validateFiles(p.Files); err != nil {
		return bad(c, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st.revision++
	var n uint64 = 1
	if f.st.system != nil {
		n = f.st.system.Version + 1
	}
	bv := &api.BundleVersion{
		VersionInfo: api.VersionInfo{Version: n, Revision: f.st.revision, Hash: p.Hash, Message: p.Message, Author: p.Author, Time: p.Time},
		Files:       p.Files,
	}
	f.st.system = bv
	vi := bv.VersionInfo
	return Change{Revision: f.st.revision, Kind: ChangeSystem, System: bv}, applyResult{Revision: f.st.revision, Version: &vi}, nil
}

// PublishSystem replaces the system bundle with files, already compiled
// and tested by the caller. Leader only.
func (s *Store) PublishSystem(ctx context.Context, files []api.File, message, author string, now time.Time) (api.VersionInfo, error) {
	if err := validateFiles(files); err != nil {
		return api.VersionInfo{}, fmt.Errorf("%w: %v", ErrBadCommand, err)
	}
	res, err := s.propose(ctx, cmdSystemPublish, systemPublishCmd{Files: files, Hash: HashFiles(files), Message: message, Author: author, Time: now})
	if err != nil {
		return api.VersionInfo{}, err
	}
	return *res.Version, nil
}

// System is the published system bundle; false while the embedded
// default holds.
func (s *Store) System() (api.BundleVersion, bool) {
	f := s.fsm
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.st.system == nil {
		return api.BundleVersion{}, false
	}
	return *f.st.system, true
}
