package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/engine"
)

// The AuthZEN 1.0 Search APIs: which subjects may do an action on a
// resource, which resources a subject may do an action on, which actions a
// subject may do on a resource. Subject and resource search enumerate the
// stored entities of the requested type (and the registered agents for type
// agent), in id order, and decide each candidate with the node's compiled
// bundle, stored properties winning as in every decision; action search
// decides every exact action name the bundle names. Cost is one decision per
// candidate examined. Pages are cut after page.limit results; the token
// binds the query, the bundle version and the revision (search_token.go).

// Page sizes of a search: without page.limit (or with 0), a page holds at
// most DefaultSearchLimit results; a larger limit is lowered to
// MaxSearchLimit.
const (
	DefaultSearchLimit = 1000
	MaxSearchLimit     = 10_000
)

// The three searches.
const (
	searchSubject  = "subject"
	searchResource = "resource"
	searchAction   = "action"
)

type azSearchRequest struct {
	Subject  *azEntity      `json:"subject"`
	Action   *azAction      `json:"action"`
	Resource *azEntity      `json:"resource"`
	Context  map[string]any `json:"context"`
	Page     *azPageRequest `json:"page"`
}

type azPageRequest struct {
	Token      *string        `json:"token"`
	Limit      *int64         `json:"limit"`
	Properties map[string]any `json:"properties,omitempty"`
}

// azSearchResponse is the answer of a search; page comes first, as the
// specification recommends.
type azSearchResponse struct {
	Page    azPageResponse `json:"page"`
	Results []any          `json:"results"`
}

type azPageResponse struct {
	NextToken string `json:"next_token"`
	Count     int    `json:"count"`
}

type azEntityRef struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

type azActionRef struct {
	Name string `json:"name"`
}

// searchQuery is a validated search: the request every candidate is
// decided with (the searched member's id left empty), the page wanted, and
// the query's digest that a page token carries.
type searchQuery struct {
	kind   string
	tmpl   api.CheckRequest
	limit  int
	token  string
	digest string
}

func (s *Server) handleSearch(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		echoRequestID(w, r)
		var body azSearchRequest
		if err := decodeAuthZEN(r, s.cfg.MaxBodyBytes, &body); err != nil {
			badRequest(w, err)
			return
		}
		q, err := parseSearch(kind, &body)
		if err != nil {
			badRequest(w, err)
			return
		}
		resp, status, code, err := s.search(r, q)
		if err != nil {
			writeError(w, status, code, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, resp)
	}
}

// parseSearch checks a search request's required members (AuthZEN 1.0,
// sections Subject, Resource and Action Search API Request).
func parseSearch(kind string, body *azSearchRequest) (*searchQuery, error) {
	q := &searchQuery{kind: kind, limit: DefaultSearchLimit}
	entity := func(name string, e *azEntity, needID bool) (api.Entity, error) {
		switch {
		case e == nil:
			if needID {
				return api.Entity{}, fmt.Errorf("%s is missing: give {type, id}", name)
			}
			return api.Entity{}, fmt.Errorf("%s is missing: give {type} of the %ss to search", name, name)
		case e.Type == nil || *e.Type == "":
			return api.Entity{}, fmt.Errorf("%s.type is missing", name)
		case needID && (e.ID == nil || *e.ID == ""):
			return api.Entity{}, fmt.Errorf("%s.id is missing", name)
		}
		out := api.Entity{Type: *e.Type, Properties: e.Properties}
		if needID {
			out.ID = *e.ID
		}
		// The searched member's id, if given, is ignored (the
		// specification says it MUST be).
		return out, nil
	}
	var err error
	if q.tmpl.Subject, err = entity("subject", body.Subject, kind != searchSubject); err != nil {
		return nil, err
	}
	if q.tmpl.Resource, err = entity("resource", body.Resource, kind != searchResource); err != nil {
		return nil, err
	}
	if kind != searchAction {
		switch {
		case body.Action == nil:
			return nil, errors.New("action is missing: give {name}")
		case body.Action.Name == nil || *body.Action.Name == "":
			return nil, errors.New("action.name is missing")
		}
		q.tmpl.Action = api.Action{Name: *body.Action.Name, Properties: body.Action.Properties}
	} else if body.Action != nil {
		// Action search has no action member; a given one's properties
		// still reach the conditions, its name is what is searched.
		q.tmpl.Action.Properties = body.Action.Properties
	}
	q.tmpl.Context = body.Context
	if p := body.Page; p != nil {
		if p.Limit != nil {
			switch l := *p.Limit; {
			case l < 0:
				return nil, fmt.Errorf("page.limit %d is negative: give the most results a page may hold, or leave it out", l)
			case l > 0:
				q.limit = int(min(l, MaxSearchLimit))
			}
		}
		if p.Token != nil {
			q.token = *p.Token
		}
	}
	q.digest = queryDigest(q)
	return q, nil
}

// search answers one page. The status and code go with a non-nil error.
func (s *Server) search(r *http.Request, q *searchQuery) (*azSearchResponse, int, string, error) {
	var after string
	var tok pageToken
	if q.token != "" {
		var err error
		if tok, err = parsePageToken(q.token); err != nil {
			return nil, http.StatusBadRequest, codeBadRequest, err
		}
		if tok.kind != q.kind || tok.digest != q.digest {
			return nil, http.StatusBadRequest, codeBadRequest, fmt.Errorf("page.token was issued for another query: send the same subject, action, resource, context and page.limit as the first page, or leave page.token out to start a new search")
		}
		if s.store.AppliedRevision() < tok.revision {
			if err := s.waitFor(r, tok.revision); err != nil {
				return nil, http.StatusServiceUnavailable, codeStale, err
			}
		}
		after = tok.after
	}
	// The revision is read before the bundle, as for a decision.
	rev := s.store.AppliedRevision()
	version, _, bundle := s.pdp.Holder().Current()
	if q.token != "" && (tok.version != version || tok.revision != rev) {
		return nil, http.StatusConflict, codePageStale, fmt.Errorf("page.token is for bundle version %d at revision %d, but this node is at version %d, revision %d: the data changed since the first page; start the search again without page.token", tok.version, tok.revision, version, rev)
	}
	resp := &azSearchResponse{Results: []any{}}
	var candidates []string
	switch {
	case bundle == nil:
		// No bundle (or one that does not compile here): every decision
		// denies, nothing is found.
	case q.kind == searchAction:
		candidates = bundle.ActionNames()
	case q.kind == searchSubject:
		candidates = s.ids.get(s.store, q.tmpl.Subject.Type, rev)
	default:
		candidates = s.ids.get(s.store, q.tmpl.Resource.Type, rev)
	}
	i := sort.SearchStrings(candidates, after)
	if i < len(candidates) && after != "" && candidates[i] == after {
		i++
	}
	i = searchCandidates(bundle, s.store, s.now(), q, candidates, i, func(id string) {
		switch q.kind {
		case searchAction:
			resp.Results = append(resp.Results, azActionRef{Name: id})
		case searchSubject:
			resp.Results = append(resp.Results, azEntityRef{Type: q.tmpl.Subject.Type, ID: id})
		default:
			resp.Results = append(resp.Results, azEntityRef{Type: q.tmpl.Resource.Type, ID: id})
		}
	})
	resp.Page.Count = len(resp.Results)
	if i < len(candidates) {
		resp.Page.NextToken = pageToken{kind: q.kind, version: version, revision: rev, digest: q.digest, after: candidates[i-1]}.String()
	}
	return resp, 0, "", nil
}

// searchCandidates decides the candidates from index i on with bundle,
// calling found for each one allowed, until q.limit were found. It returns
// the index of the first candidate not examined.
func searchCandidates(bundle *engine.Bundle, ents engine.EntityLookup, now time.Time, q *searchQuery, candidates []string, i int, found func(string)) int {
	req := q.tmpl
	n := 0
	for ; i < len(candidates) && n < q.limit; i++ {
		id := candidates[i]
		switch q.kind {
		case searchAction:
			req.Action.Name = id
		case searchSubject:
			req.Subject.ID = id
		default:
			req.Resource.ID = id
		}
		// Decide does not keep the request; one is reused for all.
		if d := bundle.Decide(&req, ents, now); d.Decision == api.Allow {
			found(id)
			n++
		}
	}
	return i
}

// waitFor waits, as min_revision does, until this node has applied the
// revision of a page token.
func (s *Server) waitFor(r *http.Request, rev uint64) error {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.MinRevisionWait)
	defer cancel()
	if err := s.store.WaitForRevision(ctx, rev); err != nil {
		return fmt.Errorf("page.token is for revision %d, which this node has not applied yet (it is at %d; waited %s): retry, or ask the node that answered the first page", rev, s.store.AppliedRevision(), s.cfg.MinRevisionWait)
	}
	return nil
}

// searchIDs caches the sorted ids of the entity types searched, each as of
// one revision, so that the pages of a search (and searches at the same
// revision) do not enumerate and sort the store again: a page then costs
// the candidates it examines. At most maxCachedTypes types are kept.
type searchIDs struct {
	mu      sync.Mutex
	entries map[string]cachedIDs // by entity type; guarded by mu
}

type cachedIDs struct {
	rev uint64
	ids []string
}

const maxCachedTypes = 16

// get returns the ids of type typ as of rev, the revision the caller read
// before calling. A write applied meanwhile may already be in the list; the
// page token still says rev, so the next page is refused as changed.
func (c *searchIDs) get(st interface{ EntityIDs(string) []string }, typ string, rev uint64) []string {
	c.mu.Lock()
	e, ok := c.entries[typ]
	c.mu.Unlock()
	if ok && e.rev == rev {
		return e.ids
	}
	ids := st.EntityIDs(typ)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil || len(c.entries) >= maxCachedTypes {
		c.entries = make(map[string]cachedIDs)
	}
	if cur, ok := c.entries[typ]; !ok || cur.rev <= rev {
		c.entries[typ] = cachedIDs{rev: rev, ids: ids}
	}
	return ids
}
