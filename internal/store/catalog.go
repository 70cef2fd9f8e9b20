package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/policy"
)

// Catalog command types: an orchestra is put whole (upsert) or deleted.
const (
	cmdOrchestraPut    = "orchestra.put"
	cmdOrchestraDelete = "orchestra.delete"
)

// ChangeCatalog is the Change kind of an orchestra put or deleted.
const ChangeCatalog = "catalog"

// Bounds of an orchestra, checked by ValidateOrchestra.
const (
	maxActions       = 1000
	maxInputSchema   = 64 << 10
	maxActionTimeout = 10 * time.Minute
)

// ErrCatalogConflict: the orchestra's name overlaps another's namespace
// ("crm" and "crm.eu" would both own "crm.eu.x").
var ErrCatalogConflict = errors.New("store: catalog conflict")

// orchestraPutCmd stores an orchestra, replacing one of the same name.
type orchestraPutCmd struct {
	Orchestra api.Orchestra `json:"orchestra"`
	Time      time.Time     `json:"time"`
}

// orchestraDeleteCmd removes an orchestra.
type orchestraDeleteCmd struct {
	Name string    `json:"name"`
	Time time.Time `json:"time"`
}

// ValidateOrchestra checks a user orchestra on its own: its name, an http
// backend, and every action. The store calls it before proposing and again
// in Apply. UpdatedAt and Revision are ignored (the store sets them).
func ValidateOrchestra(o *api.Orchestra) error {
	if err := ValidateOrchestraBackend(o); err != nil {
		return err
	}
	at := fmt.Sprintf("orchestra %q", o.Name)
	if len(o.Actions) == 0 || len(o.Actions) > maxActions {
		return fmt.Errorf("%s: has %d actions; give between 1 and %d", at, len(o.Actions), maxActions)
	}
	seen := make(map[string]struct{}, len(o.Actions))
	for i := range o.Actions {
		a := &o.Actions[i]
		if err := validateActionDef(o.Name, a); err != nil {
			return fmt.Errorf("%s: actions[%d]: %w", at, i, err)
		}
		if _, dup := seen[a.Name]; dup {
			return fmt.Errorf("%s: actions[%d]: %q appears twice; action names must be unique", at, i, a.Name)
		}
		seen[a.Name] = struct{}{}
	}
	return nil
}

// validMCPBackend checks an mcp backend: exactly one of a streamable HTTP
// url and a stdio command, and an environment of plain names.
func validMCPBackend(b *api.Backend) error {
	switch {
	case b.URL != "" && len(b.Command) > 0:
		return errors.New("an mcp backend has either a url (streamable HTTP) or a command (stdio), not both")
	case b.URL != "":
		u, err := url.Parse(b.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("backend.url %q is not an absolute http or https URL (e.g. http://127.0.0.1:3001/mcp)", b.URL)
		}
		if len(b.Env) > 0 {
			return errors.New("backend.env is for a stdio command; a url backend has no environment to give")
		}
	case len(b.Command) > 0:
		if b.Command[0] == "" {
			return errors.New("backend.command[0] is empty: give the program to start (e.g. [\"npx\", \"@modelcontextprotocol/server-everything\"])")
		}
		for k := range b.Env {
			if k == "" || strings.ContainsAny(k, "=\x00") {
				return fmt.Errorf("backend.env has the name %q: environment names are non-empty, without '=' or NUL", k)
			}
		}
	default:
		return errors.New("an mcp backend needs a url (streamable HTTP) or a command (stdio)")
	}
	return nil
}

// ValidateOrchestraBackend checks an orchestra's name and backend, the
// part that must be right before the kernel connects to an mcp server to
// list its tools.
func ValidateOrchestraBackend(o *api.Orchestra) error {
	if err := validOrchestraName(o.Name); err != nil {
		return err
	}
	at := fmt.Sprintf("orchestra %q", o.Name)
	switch o.Backend.Type {
	case api.BackendHTTP:
		if len(o.Backend.Command) > 0 || len(o.Backend.Env) > 0 {
			return fmt.Errorf("%s: backend.command and backend.env are for type %q", at, api.BackendMCP)
		}
		u, err := url.Parse(o.Backend.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%s: backend.url %q is not an absolute http or https URL (e.g. https://crm.internal/aibos)", at, o.Backend.URL)
		}
	case api.BackendMCP:
		if err := validMCPBackend(&o.Backend); err != nil {
			return fmt.Errorf("%s: %v", at, err)
		}
	case api.BackendBuiltin:
		return fmt.Errorf("%s: backend type %q is reserved for the kernel's own orchestra; use %q with a url", at, api.BackendBuiltin, api.BackendHTTP)
	case "":
		return fmt.Errorf("%s: backend.type is required (%q or %q)", at, api.BackendHTTP, api.BackendMCP)
	default:
		return fmt.Errorf("%s: unknown backend type %q; use %q or %q", at, o.Backend.Type, api.BackendHTTP, api.BackendMCP)
	}
	return nil
}

func validOrchestraName(name string) error {
	if name == "" {
		return errors.New("orchestra name is required (e.g. \"crm\")")
	}
	if err := policy.ValidateActionName(name); err != nil {
		return fmt.Errorf("orchestra name: %v", err)
	}
	if name == api.BuiltinOrchestra || strings.HasPrefix(name, api.BuiltinOrchestra+".") {
		return fmt.Errorf("orchestra name %q is reserved for the kernel's own actions; choose another name", name)
	}
	if name == "mcp" || strings.HasPrefix(name, "mcp.") {
		return fmt.Errorf("orchestra name %q is reserved for the MCP methods the kernel decides (mcp.tools.list, mcp.resources.read, ...); choose another name", name)
	}
	return nil
}

func validateActionDef(orchestra string, a *api.ActionDef) error {
	if err := policy.ValidateActionName(a.Name); err != nil {
		return err
	}
	if !strings.HasPrefix(a.Name, orchestra+".") {
		return fmt.Errorf("action %q is outside the orchestra: name it %q", a.Name, orchestra+".<verb>")
	}
	at := fmt.Sprintf("action %q", a.Name)
	switch a.Risk {
	case api.RiskRead, api.RiskWrite, api.RiskDestructive, api.RiskExternal:
	case "":
		return fmt.Errorf("%s: risk is required (read, write, destructive or external)", at)
	default:
		return fmt.Errorf("%s: unknown risk %q; want read, write, destructive or external", at, a.Risk)
	}
	if d := time.Duration(a.Timeout); d != 0 && (d < time.Millisecond || d > maxActionTimeout) {
		return fmt.Errorf("%s: timeout %s is out of range; give 0 (default) or between 1ms and 10m", at, d)
	}
	if c := a.Cost; c != nil {
		if math.IsNaN(c.Fixed) || math.IsInf(c.Fixed, 0) || c.Fixed < 0 {
			return fmt.Errorf("%s: cost.fixed %v must be a finite number >= 0", at, c.Fixed)
		}
		if err := validFieldPath(c.Field); err != nil {
			return fmt.Errorf("%s: cost.field: %v", at, err)
		}
	}
	if s := a.InputSchema; len(s) > 0 {
		if len(s) > maxInputSchema {
			return fmt.Errorf("%s: input_schema is %d bytes; at most %d", at, len(s), maxInputSchema)
		}
		if t := bytes.TrimLeft(s, " \t\r\n"); !json.Valid(s) || len(t) == 0 || t[0] != '{' {
			return fmt.Errorf("%s: input_schema must be a JSON object (a JSON Schema such as {\"type\":\"object\"}); omit it to accept any object", at)
		}
	}
	if o := a.Obligations; o != nil {
		if err := validObligations(o); err != nil {
			return fmt.Errorf("%s: obligations: %v", at, err)
		}
	}
	if a.Path != "" && !strings.HasPrefix(a.Path, "/") {
		return fmt.Errorf("%s: path %q must start with '/' (it is appended to the backend url)", at, a.Path)
	}
	return nil
}

func validObligations(o *api.Obligations) error {
	if o.Audit != "" && policy.AuditRank(o.Audit) < 0 {
		return fmt.Errorf("invalid audit level %q: want one of %s", o.Audit, strings.Join(policy.AuditLevels, ", "))
	}
	if rl := o.RateLimit; rl != nil {
		if rl.Limit <= 0 || rl.Per <= 0 {
			return errors.New("rate_limit needs limit > 0 and per > 0 (e.g. {limit: 100, per: 1m})")
		}
		if err := policy.ValidateKey(rl.Key); err != nil {
			return fmt.Errorf("rate_limit: %v", err)
		}
	}
	if b := o.Budget; b != nil {
		if math.IsNaN(b.Limit) || math.IsInf(b.Limit, 0) || b.Limit <= 0 || b.Per <= 0 {
			return errors.New("budget needs a finite limit > 0 and per > 0 (e.g. {limit: 50, per: 24h})")
		}
		if err := policy.ValidateKey(b.Key); err != nil {
			return fmt.Errorf("budget: %v", err)
		}
	}
	return nil
}

// validFieldPath accepts "" or a dotted path of identifiers ("items.count").
func validFieldPath(p string) error {
	if p == "" {
		return nil
	}
	for seg := range strings.SplitSeq(p, ".") {
		ok := seg != ""
		for i, c := range seg {
			if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
				ok = false
			}
		}
		if !ok {
			return fmt.Errorf("%q is not a dotted path of identifiers (e.g. \"order.total\")", p)
		}
	}
	return nil
}

// overlaps reports whether orchestra names a and b share a namespace: one
// is the other or a dotted prefix of it.
func overlaps(a, b string) bool {
	return a == b || strings.HasPrefix(a, b+".") || strings.HasPrefix(b, a+".")
}

// applyOrchestraPut stores an orchestra, replacing one of the same name,
// unless its name overlaps another's namespace.
func (f *fsm) applyOrchestraPut(c command, p *orchestraPutCmd) (Change, applyResult, error) {
	if err := ValidateOrchestra(&p.Orchestra); err != nil {
		return bad(c, err)
	}
	o := p.Orchestra
	f.mu.Lock()
	defer f.mu.Unlock()
	// The smallest conflicting name, so every replica says the same.
	clash := ""
	for name := range f.st.orchestras {
		if name != o.Name && overlaps(name, o.Name) && (clash == "" || name < clash) {
			clash = name
		}
	}
	if clash != "" {
		return fail(fmt.Errorf("%w: orchestra %q overlaps orchestra %q (actions under %q would belong to both); choose a name that is neither a dotted prefix nor an extension of another",
			ErrCatalogConflict, o.Name, clash, max(clash, o.Name)+"."))
	}
	f.st.revision++
	o.UpdatedAt, o.Revision = p.Time, f.st.revision
	f.st.orchestras[o.Name] = &o
	f.st.catalogRev = f.st.revision
	out := o
	return Change{Revision: f.st.revision, Kind: ChangeCatalog}, applyResult{Revision: f.st.revision, Orchestra: &out}, nil
}

// applyOrchestraDelete removes an orchestra; catalogRev keeps the
// revision, as a delete leaves no other trace.
func (f *fsm) applyOrchestraDelete(c command, p *orchestraDeleteCmd) (Change, applyResult, error) {
	if p.Name == "" {
		return bad(c, errors.New("orchestra name is required"))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.st.orchestras[p.Name]; !ok {
		return fail(fmt.Errorf("%w: orchestra %q", ErrNotFound, p.Name))
	}
	delete(f.st.orchestras, p.Name)
	ch, res, err := f.bumpLocked(ChangeCatalog)
	f.st.catalogRev = f.st.revision
	return ch, res, err
}

// PutOrchestra stores o, replacing the orchestra of the same name, and
// returns it as stored (UpdatedAt now, Revision set). Leader only.
func (s *Store) PutOrchestra(ctx context.Context, o api.Orchestra, now time.Time) (api.Orchestra, error) {
	if err := ValidateOrchestra(&o); err != nil {
		return api.Orchestra{}, fmt.Errorf("%w: %v", ErrBadCommand, err)
	}
	o.UpdatedAt, o.Revision = time.Time{}, 0
	res, err := s.propose(ctx, cmdOrchestraPut, orchestraPutCmd{Orchestra: o, Time: now})
	if err != nil {
		return api.Orchestra{}, err
	}
	return *res.Orchestra, nil
}

// DeleteOrchestra removes an orchestra (ErrNotFound if there is none) and
// returns the revision. Leader only.
func (s *Store) DeleteOrchestra(ctx context.Context, name string, now time.Time) (uint64, error) {
	res, err := s.propose(ctx, cmdOrchestraDelete, orchestraDeleteCmd{Name: name, Time: now})
	return res.Revision, err
}

// Orchestra returns a stored orchestra. Its slices are shared and must not
// be modified.
func (s *Store) Orchestra(name string) (api.Orchestra, bool) {
	f := s.fsm
	f.mu.RLock()
	defer f.mu.RUnlock()
	o, ok := f.st.orchestras[name]
	if !ok {
		return api.Orchestra{}, false
	}
	return *o, true
}

// Orchestras lists the stored orchestras by name (the kernel's builtin one
// is not stored). Slices are shared and must not be modified.
func (s *Store) Orchestras() []api.Orchestra {
	f := s.fsm
	f.mu.RLock()
	out := make([]api.Orchestra, 0, len(f.st.orchestras))
	for _, o := range f.st.orchestras {
		out = append(out, *o)
	}
	f.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// CatalogRevision is the revision of the last catalog change (0: none), so
// a reader can rebuild an index of the catalog only when it moved.
func (s *Store) CatalogRevision() uint64 {
	f := s.fsm
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.catalogRev
}
