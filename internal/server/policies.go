package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/engine"
	"github.com/aibos/kernel/internal/policy"
	"github.com/aibos/kernel/internal/store"
)

// PolicyStore is what the policy routes need of the replicated state: bundle versions, publish and roll back.
type PolicyStore interface {
	Publish(ctx context.Context, files []api.File, message, author string, now time.Time) (api.VersionInfo, error)
	Rollback(ctx context.Context, to uint64, message, author string, now time.Time) (api.VersionInfo, error)
	Current() (api.BundleVersion, bool)
	Version(v uint64) (api.BundleVersion, bool)
	Versions() []api.VersionInfo
}

// Headers that carry who publishes and why (query parameters author and
// message work too).
const (
	headerAuthor  = "X-Aibos-Author"
	headerMessage = "X-Aibos-Message"
)

func (s *Server) handlePublish(w http.ResponseWriter, r *http.Request) {
	files, ok := readBundle(w, r)
	if !ok {
		return
	}
	now := s.now()
	// Compile, tests and lint stop when the request ends: a client that
	// leaves does not keep the node busy, and nothing is published.
	b, err := engine.PrepareContext(r.Context(), files, engine.Options{Limits: s.cfg.BundleLimits}, now)
	if err != nil {
		writeBundleError(w, err)
		return
	}
	// Warnings never reject a publish; they are answered to the publisher.
	ws, err := engine.LintContext(r.Context(), b)
	if err == nil {
		err = r.Context().Err()
	}
	if err != nil {
		writeBundleError(w, err)
		return
	}
	warnings := engine.WarningStrings(ws)
	if dry, _ := strconv.ParseBool(r.URL.Query().Get("dry_run")); dry {
		writeJSON(w, http.StatusOK, api.PublishResponse{Hash: store.HashFiles(files), Warnings: warnings})
		return
	}
	author, ok := s.attribution(w, r, param(r, "author", headerAuthor), "author")
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.WriteTimeout)
	defer cancel()
	vi, err := s.store.Publish(ctx, files, param(r, "message", headerMessage), author, now)
	if err != nil {
		s.writeStoreError(w, err)
		return
	}
	s.log.Info("bundle published", "version", vi.Version, "revision", vi.Revision, "author", vi.Author)
	if vi.GlobalVersion > 0 {
		w.Header().Set(api.HeaderGlobalVersion, strconv.FormatUint(vi.GlobalVersion, 10))
	}
	writeJSON(w, http.StatusOK, api.PublishResponse{Version: vi.Version, Revision: vi.Revision, Hash: vi.Hash, GlobalVersion: vi.GlobalVersion, Warnings: warnings})
}

// readBundle reads a request body that carries a bundle (see bundleFiles).
// It writes the error and returns false when the body is too large or not a
// bundle.
func readBundle(w http.ResponseWriter, r *http.Request) ([]api.File, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, policy.MaxBundleSize))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, codeTooLarge, fmt.Sprintf("bundle larger than %d bytes", mbe.Limit))
			return nil, false
		}
		badRequest(w, fmt.Errorf("read body: %w", err))
		return nil, false
	}
	files, err := bundleFiles(r, body)
	if err != nil {
		badRequest(w, err)
		return nil, false
	}
	holdOpen(w, bundleWork)
	return files, true
}

// bundleFiles turns a publish body into bundle files: a tar of a directory
// (Content-Type application/x-tar, or detected), else one YAML or JSON
// document stream named by the name parameter or the content type.
func bundleFiles(r *http.Request, body []byte) ([]api.File, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, errors.New("empty body: send the bundle as YAML, JSON, or a tar of its directory")
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == "application/x-tar" || isTar(body) {
		files, err := policy.ReadTar(bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		return files, nil
	}
	name := r.URL.Query().Get("name")
	if name == "" {
		name = "bundle.yaml"
		if ct == "application/json" {
			name = "bundle.json"
		}
	}
	return []api.File{{Name: name, Data: body}}, nil
}

// isTar recognises a POSIX tar header by its magic at offset 257.
func isTar(b []byte) bool {
	return len(b) >= 512 && bytes.HasPrefix(b[257:], []byte("ustar"))
}

func writeBundleError(w http.ResponseWriter, err error) {
	var list policy.ErrorList
	var tf *engine.TestsFailedError
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		writeError(w, http.StatusServiceUnavailable, codeUnavailable,
			"the request ended before the bundle was checked; nothing was changed: send it again")
	case errors.As(err, &list):
		writeError(w, http.StatusBadRequest, codeInvalidBundle,
			fmt.Sprintf("the bundle is invalid (%d errors); nothing was changed", len(list)), list.Strings()...)
	case errors.As(err, &tf):
		writeError(w, http.StatusBadRequest, codeTestsFailed,
			fmt.Sprintf("%d bundle test case(s) failed; nothing was changed", len(tf.Failed)), tf.Details()...)
	default:
		writeError(w, http.StatusBadRequest, codeInvalidBundle, err.Error())
	}
}

// attribution is who a write is attributed to: the authenticated
// principal, never a name the caller chose. A name given in the request
// (?author=, "by", "approver") must be that principal's; otherwise the
// request is refused (403) and false returned.
func (s *Server) attribution(w http.ResponseWriter, r *http.Request, given, field string) (string, bool) {
	p := principal(r)
	if p == nil {
		return given, true
	}
	given = strings.TrimSpace(given)
	if given == "" || given == p.Name {
		return p.Name, true
	}
	writeError(w, http.StatusForbidden, codeForbidden, fmt.Sprintf(
		"%s %q is not you: the kernel attributes this act to the authenticated principal %q; leave %s out (or give your own name)", field, given, p.Name, field))
	return "", false
}

func param(r *http.Request, name, header string) string {
	if v := r.URL.Query().Get(name); v != "" {
		return v
	}
	return r.Header.Get(header)
}

func (s *Server) handleRollback(w http.ResponseWriter, r *http.Request) {
	var req api.RollbackRequest
	if err := decodeJSON(r, s.cfg.MaxBodyBytes, &req); err != nil {
		badRequest(w, err)
		return
	}
	if req.To == 0 {
		badRequest(w, errors.New("to is missing: give the version to roll back to, e.g. {\"to\": 3}"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.WriteTimeout)
	defer cancel()
	author, ok := s.attribution(w, r, param(r, "author", headerAuthor), "author")
	if !ok {
		return
	}
	vi, err := s.store.Rollback(ctx, req.To, req.Message, author, s.now())
	if err != nil {
		s.writeStoreError(w, err)
		return
	}
	s.log.Info("bundle rolled back", "to", req.To, "version", vi.Version, "revision", vi.Revision)
	writeJSON(w, http.StatusOK, api.PublishResponse{Version: vi.Version, Revision: vi.Revision, Hash: vi.Hash, GlobalVersion: vi.GlobalVersion})
}

func (s *Server) handleCurrentPolicies(w http.ResponseWriter, r *http.Request) {
	if !s.waitRevision(w, r.Context(), minRevisionParam(r)) {
		return
	}
	v, ok := s.store.Current()
	if !ok {
		writeError(w, http.StatusNotFound, codeNotFound, "no policy bundle has been published yet: PUT /v1/policies")
		return
	}
	s.writeVersion(w, r, v)
}

func (s *Server) handleVersions(w http.ResponseWriter, r *http.Request) {
	if !s.waitRevision(w, r.Context(), minRevisionParam(r)) {
		return
	}
	vs := s.store.Versions()
	if vs == nil {
		vs = []api.VersionInfo{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"versions": vs})
}

func (s *Server) handleVersion(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.ParseUint(r.PathValue("v"), 10, 64)
	if err != nil || n == 0 {
		badRequest(w, fmt.Errorf("version %q is not a positive integer", r.PathValue("v")))
		return
	}
	if !s.waitRevision(w, r.Context(), minRevisionParam(r)) {
		return
	}
	v, ok := s.store.Version(n)
	if !ok {
		writeError(w, http.StatusNotFound, codeNotFound, fmt.Sprintf("no bundle version %d: GET /v1/policies/versions lists them", n))
		return
	}
	s.writeVersion(w, r, v)
}

// writeVersion answers with a version as JSON, or with format=yaml as its
// documents concatenated, each file introduced by a comment.
func (s *Server) writeVersion(w http.ResponseWriter, r *http.Request, v api.BundleVersion) {
	if r.URL.Query().Get("format") != "yaml" {
		writeJSON(w, http.StatusOK, v)
		return
	}
	w.Header().Set("Content-Type", "application/yaml")
	w.Header().Set("X-Aibos-Version", strconv.FormatUint(v.Version, 10))
	for i, f := range v.Files {
		if i > 0 {
			io.WriteString(w, "---\n")
		}
		fmt.Fprintf(w, "# file: %s\n", f.Name)
		w.Write(f.Data)
		if !bytes.HasSuffix(f.Data, []byte("\n")) {
			io.WriteString(w, "\n")
		}
	}
}

// minRevisionParam is the min_revision query parameter of a read, which
// ServeHTTP has checked (checkMinRevisionParam) before routing.
func minRevisionParam(r *http.Request) uint64 {
	n, _ := strconv.ParseUint(r.URL.Query().Get("min_revision"), 10, 64)
	return n
}

// checkMinRevisionParam refuses a min_revision query parameter that is not
// one revision number: ignored, it would answer from a state older than
// the caller asked for. Every read takes the parameter, so it is checked
// once for all of them.
func checkMinRevisionParam(r *http.Request) error {
	vs, ok := r.URL.Query()["min_revision"]
	if !ok {
		return nil
	}
	if len(vs) != 1 {
		return fmt.Errorf("query parameter min_revision is given %d times: give it once", len(vs))
	}
	if _, err := strconv.ParseUint(vs[0], 10, 64); err != nil {
		return fmt.Errorf("query parameter min_revision=%q is not a revision number: give a whole number from 0 up, such as the revision a write answered", vs[0])
	}
	return nil
}

// writeStoreError maps store errors to answers.
func (s *Server) writeStoreError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, store.ErrNotLeader):
		writeError(w, http.StatusServiceUnavailable, codeNoLeader, "this node lost leadership during the write; retry (the write was not acknowledged)")
	case errors.Is(err, store.ErrLeadershipLost):
		writeError(w, http.StatusServiceUnavailable, codeOutcomeUnknown, "leadership changed while the write was committing: it may or may not have been applied; read the state before retrying")
	case errors.Is(err, store.ErrRolloutActive):
		msg := "a rollout is active and freezes the bundle"
		if r, ok := s.store.Rollout(); ok && r != nil && r.State == api.RolloutActive {
			msg = fmt.Sprintf("rollout %d (candidate version %d) is active and freezes the bundle", r.ID, r.Candidate)
		}
		writeError(w, http.StatusConflict, codeRolloutActive, msg+": promote or abort it first (aibos rollout promote or abort; GET /v1/rollouts/current shows it)")
	case errors.Is(err, store.ErrBadCommand):
		writeError(w, http.StatusBadRequest, codeBadRequest, err.Error())
	case errors.Is(err, store.ErrNotPrimary):
		msg := err.Error()
		if v, ok := s.store.Region(); ok {
			if reg := v.Region(v.Following()); reg != nil {
				msg += " at " + strings.Join(reg.Endpoints, " or ")
			}
		}
		writeError(w, http.StatusConflict, api.CodeNotPrimary, msg)
	case errors.Is(err, store.ErrGlobalUnconfirmed):
		writeError(w, http.StatusServiceUnavailable, codeOutcomeUnknown, err.Error())
	case errors.Is(err, store.ErrStaleRegionEpoch):
		writeError(w, http.StatusConflict, api.CodeStaleEpoch, err.Error())
	case errors.Is(err, store.ErrReplicationGap):
		writeError(w, http.StatusConflict, api.CodeReplicationGap, err.Error())
	case errors.Is(err, store.ErrResidency):
		writeError(w, http.StatusForbidden, codeResidency, err.Error())
	case errors.Is(err, store.ErrRegionUnavailable):
		writeError(w, http.StatusServiceUnavailable, codeRegionUnavailable, err.Error())
	case errors.Is(err, store.ErrNotHome):
		writeError(w, http.StatusConflict, codeNotHome, err.Error()+"; the tenant directory changed under the request: send it again")
	case errors.Is(err, store.ErrNoSuchVersion), errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, codeNotFound, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		writeError(w, http.StatusServiceUnavailable, codeUnavailable, "the write was not committed in time (no quorum?); it may still commit: check the versions before retrying")
	default:
		s.log.Error("store write failed", "err", err)
		writeError(w, http.StatusInternalServerError, codeInternal, err.Error())
	}
}
