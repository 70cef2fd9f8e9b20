package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/aibos/kernel/api"
)

// Multi-region state. A region in multi-region mode (region.init applied)
// keeps, beside its regional state, the global state authored in the
// primary region: the region registry, the tenant directory, the epoch and
// the global log, whose entries are the primary's global writes in order.
// See DESIGN.md, "Regions".
const (
	cmdRegionInit     = "region.init"
	cmdRegionPut      = "region.put"
	cmdRegionFailover = "region.failover"
	cmdTenantPut      = "tenant.put"
	cmdEpochPromise   = "epoch.promise"
	cmdEpochBegin     = "epoch.begin"
	cmdGlobalApply    = "global.apply"
	cmdGlobalReset    = "global.reset"
)

// ChangeRegion is the Change kind of a change of the region state that
// changes nothing else (registry, tenants, epoch, promise).
const ChangeRegion = "region"

var (
	// ErrNotPrimary: a global write in a region that is not the primary.
	ErrNotPrimary = errors.New("store: not the primary region")
	// ErrStaleRegionEpoch: a global write or entry of an epoch older than one
	// this region knows of.
	ErrStaleRegionEpoch = errors.New("store: stale epoch")
	// ErrGlobalUnconfirmed: a global write applied at the primary that a
	// majority of regions did not confirm in time (its outcome is unknown).
	ErrGlobalUnconfirmed = errors.New("store: global write not confirmed by a majority of regions")
	// ErrReplicationGap: a global entry that does not follow the last
	// applied one.
	ErrReplicationGap = errors.New("store: replication gap")
	// ErrResidency: tenant data written in a region outside its domain.
	ErrResidency = errors.New("store: residency violation")
	// ErrRegionUnavailable: the tenant's home region is lost and no
	// region of its domain stands in for it.
	ErrRegionUnavailable = errors.New("store: region unavailable")
	// ErrNotHome: tenant data written in a region of its domain that is
	// not its home (nor standing in for a lost home).
	ErrNotHome = errors.New("store: not the tenant's home region")
)

// globalTypes are the only command types a global entry may carry: what
// is global (policy, catalog, credentials, the registry and directory,
// epochs, global kill switches). Tenant data (entities, agents, approvals,
// sandboxes, tenant-scoped kill switches) has no type here, so it cannot be
// encoded into the global stream nor applied from it.
var globalTypes = map[string]bool{
	cmdBundlePublish:   true,
	cmdBundleRollback:  true,
	cmdRolloutStart:    true,
	cmdRolloutAbort:    true,
	cmdRolloutPromote:  true,
	cmdOrchestraPut:    true,
	cmdOrchestraDelete: true,
	cmdTokenCreate:     true,
	cmdTokenRevoke:     true,
	cmdSystemPublish:   true,
	cmdKillSet:         true, // global scope only: see globalEntryOf
	cmdKillLift:        true,
	cmdRegionPut:       true,
	cmdRegionFailover:  true,
	cmdTenantPut:       true,
	cmdEpochBegin:      true,
}

// globalAppliers are the appliers of the global types, set in init (the
// appliers table refers to applyGlobalApply, which refers to them).
var globalAppliers map[string]applier

func init() {
	globalAppliers = make(map[string]applier, len(globalTypes))
	for t := range globalTypes {
		globalAppliers[t] = appliers[t]
	}
}

// EpochRecord is one epoch of the history: who was primary from which
// global version on.
type EpochRecord struct {
	Epoch   uint64    `json:"epoch"`
	Primary string    `json:"primary"`
	Base    uint64    `json:"base"` // the global version before its first entry
	Time    time.Time `json:"time"`
}

// regionState is the multi-region part of the state; nil when the region
// is not in multi-region mode. Immutable values, as all the state: every
// change replaces the struct (copyRegion) or appends.
type regionState struct {
	Self   string `json:"self"`
	Domain string `json:"domain"`
	// Epoch and Primary are the newest epoch begun in the global log
	// applied here, and its primary.
	Epoch   uint64 `json:"epoch"`
	Primary string `json:"primary,omitempty"`
	// Promised is the newest epoch this region has promised to follow
	// (≥ Epoch), PromisedTo its primary: entries and streams of an older
	// epoch are refused, and a primary that promised a newer epoch to
	// another region writes nothing more.
	Promised   uint64 `json:"promised"`
	PromisedTo string `json:"promised_to,omitempty"`
	// Log is the global log applied here; Log[i].GlobalVersion == i+1.
	Log        []api.GlobalEntry      `json:"log,omitempty"`
	Regions    map[string]*api.Region `json:"regions,omitempty"`
	Tenants    map[string]*api.Tenant `json:"tenants,omitempty"`
	Epochs     []EpochRecord          `json:"epochs,omitempty"`
	Quarantine []api.GlobalEntry      `json:"quarantine,omitempty"`
	// Standby is, for each home region this one stands by, the home's
	// revision of tenant data applied here.
	Standby map[string]uint64 `json:"standby,omitempty"`
}

func (r *regionState) gv() uint64 { return uint64(len(r.Log)) }

// lastEpoch is the epoch of the last applied entry (0: none).
func (r *regionState) lastEpoch() uint64 {
	if len(r.Log) == 0 {
		return 0
	}
	return r.Log[len(r.Log)-1].Epoch
}

// primaryNow reports whether the region may write global entries: it is
// the primary of the newest epoch it knows and promised none newer.
func (r *regionState) primaryNow() bool {
	return r.Primary == r.Self && r.Promised == r.Epoch && r.Epoch > 0
}

// copy returns a shallow copy whose maps may be replaced.
func (r *regionState) copy() *regionState {
	c := *r
	return &c
}

// withRegion returns a copy of m with id set to reg.
func withRegion(m map[string]*api.Region, reg *api.Region) map[string]*api.Region {
	out := make(map[string]*api.Region, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	out[reg.ID] = reg
	return out
}

type regionInitCmd struct {
	Self      string    `json:"self"`
	Domain    string    `json:"domain"`
	Endpoints []string  `json:"endpoints,omitempty"`
	Primary   bool      `json:"primary,omitempty"`
	Time      time.Time `json:"time"`
}

type regionPutCmd struct {
	Region api.Region `json:"region"`
}

type regionFailoverCmd struct {
	ID   string    `json:"id"`
	By   string    `json:"by"`
	Time time.Time `json:"time"`
}

type tenantPutCmd struct {
	Tenant api.Tenant `json:"tenant"`
}

type epochPromiseCmd struct {
	Epoch   uint64 `json:"epoch"`
	Primary string `json:"primary"`
	// Vote: a promise asked by a candidate at (LastEpoch, GlobalVersion);
	// refused if this region's log is further along.
	Vote          bool   `json:"vote,omitempty"`
	LastEpoch     uint64 `json:"last_epoch,omitempty"`
	GlobalVersion uint64 `json:"global_version,omitempty"`
}

type epochBeginCmd struct {
	Epoch   uint64    `json:"epoch"`
	Primary string    `json:"primary"`
	Base    uint64    `json:"base"`
	Time    time.Time `json:"time"`
}

// globalApplyCmd applies one entry of the primary's stream. SourceEpoch is
// the epoch of the primary that sent it: a region that promised a newer
// one refuses it (a stale primary is fenced by whoever accepts its writes).
type globalApplyCmd struct {
	SourceEpoch uint64          `json:"source_epoch"`
	Entry       api.GlobalEntry `json:"entry"`
}

// GlobalState is the global part of a primary's state, sent to a region
// that starts following it or whose log diverged (global.reset).
type GlobalState struct {
	Epoch      uint64                 `json:"epoch"`
	Primary    string                 `json:"primary"`
	Log        []api.GlobalEntry      `json:"log"`
	Regions    map[string]*api.Region `json:"regions"`
	Tenants    map[string]*api.Tenant `json:"tenants,omitempty"`
	Epochs     []EpochRecord          `json:"epochs"`
	Versions   []*api.BundleVersion   `json:"versions,omitempty"`
	Rollout    *api.Rollout           `json:"rollout,omitempty"`
	Staged     *api.BundleVersion     `json:"staged,omitempty"`
	Orchestras []*api.Orchestra       `json:"orchestras,omitempty"`
	CatalogRev uint64                 `json:"catalog_revision,omitempty"`
	Kills      []*api.KillSwitch      `json:"kills,omitempty"`
	Tokens     []*tokenRecord         `json:"tokens,omitempty"`
	System     *api.BundleVersion     `json:"system,omitempty"`
}

// ValidRegionID checks a region id: 1–63 of [a-z0-9-], starting with a
// letter.
func ValidRegionID(id string) error {
	if id == "" || len(id) > 63 {
		return fmt.Errorf("region id %q: want 1 to 63 characters", id)
	}
	for i, r := range id {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9' && i > 0, r == '-' && i > 0:
		default:
			return fmt.Errorf("region id %q: want lower-case letters, digits and '-', starting with a letter", id)
		}
	}
	return nil
}

func validateRegion(r *api.Region) error {
	if err := ValidRegionID(r.ID); err != nil {
		return err
	}
	if err := ValidRegionID(r.Domain); err != nil {
		return fmt.Errorf("region %s: domain: %v", r.ID, strings.TrimPrefix(err.Error(), "region id "))
	}
	if len(r.Endpoints) == 0 || len(r.Endpoints) > 16 {
		return fmt.Errorf("region %s: want 1 to 16 endpoints (base URLs of its API), got %d", r.ID, len(r.Endpoints))
	}
	for _, e := range r.Endpoints {
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			return fmt.Errorf("region %s: endpoint %q: want an absolute http(s) base URL such as https://eu-west.example:8181", r.ID, e)
		}
	}
	if r.Standby == r.ID {
		return fmt.Errorf("region %s: a region cannot be its own standby", r.ID)
	}
	return nil
}

// globalEntryOf reports whether command c is a global write here: a
// global type, in multi-region mode. A kill switch is global only with
// the global scope (a lift: if the switch it lifts is).
func (f *fsm) globalEntryOf(c command) bool {
	if f.st.region == nil || !globalTypes[c.Type] || c.Type == cmdEpochBegin {
		// An epoch's begin writes its own entry (applyEpochBegin).
		return false
	}
	switch c.Type {
	case cmdKillSet:
		var p killSetCmd
		return json.Unmarshal(c.Payload, &p) == nil && p.Kill.Scope == api.KillGlobal
	case cmdKillLift:
		var p killLiftCmd
		if json.Unmarshal(c.Payload, &p) != nil {
			return false
		}
		k := f.st.kills[p.ID]
		return k != nil && k.Scope == api.KillGlobal
	}
	return true
}

// applyGlobalWrite applies a global write proposed in this region: only
// the primary of the newest epoch may, and the applied command becomes the
// next entry of the global log, stamped with the epoch.
func (f *fsm) applyGlobalWrite(a applier, c command, data []byte) (Change, applyResult, error) {
	f.mu.RLock()
	r := f.st.region
	f.mu.RUnlock()
	if !r.primaryNow() {
		if r.Promised > r.Epoch || (r.Primary != r.Self && r.wasPrimary()) {
			return fail(fmt.Errorf("%w: region %s knows epoch %d (primary %s); it writes no global state", ErrStaleRegionEpoch, r.Self, r.Promised, r.promisedPrimary()))
		}
		return fail(fmt.Errorf("%w: %s is a secondary region; global writes go to the primary, %s", ErrNotPrimary, r.Self, orNone(r.Primary)))
	}
	ch, res, err := a(f, c)
	if err != nil {
		return ch, res, err
	}
	f.mu.Lock()
	nr := f.st.region.copy()
	e := api.GlobalEntry{GlobalVersion: nr.gv() + 1, Epoch: nr.Epoch, Type: c.Type, Payload: c.Payload}
	nr.Log = append(nr.Log[:len(nr.Log):len(nr.Log)], e)
	f.st.region = nr
	f.mu.Unlock()
	res.GlobalVersion = e.GlobalVersion
	ch.GlobalVersion = e.GlobalVersion
	return ch, res, nil
}

func (r *regionState) wasPrimary() bool {
	for _, e := range r.Epochs {
		if e.Primary == r.Self {
			return true
		}
	}
	return false
}

func (r *regionState) promisedPrimary() string {
	if r.Promised > r.Epoch {
		return orNone(r.PromisedTo)
	}
	return orNone(r.Primary)
}

func orNone(s string) string {
	if s == "" {
		return "(none known)"
	}
	return s
}

func (f *fsm) applyRegionInit(c command, p *regionInitCmd) (Change, applyResult, error) {
	if err := ValidRegionID(p.Self); err != nil {
		return bad(c, err)
	}
	reg := api.Region{ID: p.Self, Domain: p.Domain, Endpoints: p.Endpoints}
	if p.Primary || len(p.Endpoints) > 0 {
		if err := validateRegion(&reg); err != nil {
			return bad(c, err)
		}
	} else if err := ValidRegionID(p.Domain); err != nil {
		return bad(c, fmt.Errorf("domain: %v", err))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if r := f.st.region; r != nil {
		if r.Self != p.Self || r.Domain != p.Domain {
			return fail(fmt.Errorf("%w: this cluster is region %s in domain %s; it cannot become %s in %s (a region's identity is fixed: start a new cluster)",
				ErrBadCommand, r.Self, r.Domain, p.Self, p.Domain))
		}
		return f.bumpLocked(ChangeRegion) // already initialised: a no-op that says so
	}
	r := &regionState{Self: p.Self, Domain: p.Domain, Regions: map[string]*api.Region{}}
	if p.Primary {
		// The first primary: epoch 1 begins at global version 0, and the
		// registry starts with this region, both as global entries.
		r.Epoch, r.Primary, r.Promised, r.PromisedTo = 1, p.Self, 1, p.Self
		r.Epochs = []EpochRecord{{Epoch: 1, Primary: p.Self, Time: p.Time}}
		begin, _ := json.Marshal(epochBeginCmd{Epoch: 1, Primary: p.Self, Time: p.Time})
		put, _ := json.Marshal(regionPutCmd{Region: reg})
		r.Log = []api.GlobalEntry{
			{GlobalVersion: 1, Epoch: 1, Type: cmdEpochBegin, Payload: begin},
			{GlobalVersion: 2, Epoch: 1, Type: cmdRegionPut, Payload: put},
		}
		r.Regions = map[string]*api.Region{p.Self: &reg}
	}
	f.st.region = r
	return f.bumpLocked(ChangeRegion)
}

func (f *fsm) applyRegionPut(c command, p *regionPutCmd) (Change, applyResult, error) {
	reg := p.Region
	reg.Role, reg.FailedOver = "", false
	if err := validateRegion(&reg); err != nil {
		return bad(c, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.st.region
	if r == nil {
		return fail(errNotMultiRegion)
	}
	if old := r.Regions[reg.ID]; old != nil {
		if old.Domain != reg.Domain {
			return fail(fmt.Errorf("%w: region %s is in domain %s; a region's domain never changes (its tenants' data is there)", ErrBadCommand, reg.ID, old.Domain))
		}
		reg.FailedOver = old.FailedOver
	}
	if reg.Standby != "" {
		sb := r.Regions[reg.Standby]
		switch {
		case sb == nil:
			return fail(fmt.Errorf("%w: region %s: standby %s is not a region; add it first", ErrNotFound, reg.ID, reg.Standby))
		case sb.Domain != reg.Domain:
			return fail(fmt.Errorf("%w: region %s (domain %s): standby %s is in domain %s; a standby must be in the same residency domain", ErrResidency, reg.ID, reg.Domain, reg.Standby, sb.Domain))
		}
	}
	nr := r.copy()
	nr.Regions = withRegion(r.Regions, &reg)
	f.st.region = nr
	return f.bumpLocked(ChangeRegion)
}

var errNotMultiRegion = fmt.Errorf("%w: this cluster is not in multi-region mode (start it with --region and --domain)", ErrBadCommand)

func (f *fsm) applyRegionFailover(c command, p *regionFailoverCmd) (Change, applyResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.st.region
	if r == nil {
		return fail(errNotMultiRegion)
	}
	old := r.Regions[p.ID]
	switch {
	case old == nil:
		return fail(fmt.Errorf("%w: region %s", ErrNotFound, p.ID))
	case old.FailedOver:
		return f.bumpLocked(ChangeRegion)
	}
	reg := *old
	reg.FailedOver = true
	nr := r.copy()
	nr.Regions = withRegion(r.Regions, &reg)
	f.st.region = nr
	return f.bumpLocked(ChangeRegion)
}

func (f *fsm) applyTenantPut(c command, p *tenantPutCmd) (Change, applyResult, error) {
	t := p.Tenant
	if err := validAgentID(t.ID); err != nil {
		return bad(c, fmt.Errorf("tenant %v", err))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.st.region
	if r == nil {
		return fail(errNotMultiRegion)
	}
	home := r.Regions[t.Home]
	if home == nil {
		return fail(fmt.Errorf("%w: tenant %s: home region %q is not a region", ErrNotFound, t.ID, t.Home))
	}
	t.Domain = home.Domain
	if old := r.Tenants[t.ID]; old != nil && old.Home != t.Home {
		return fail(fmt.Errorf("%w: tenant %s lives in %s; moving a tenant to another home region is not supported (its data would have to move with it)", ErrBadCommand, t.ID, old.Home))
	}
	nr := r.copy()
	nr.Tenants = make(map[string]*api.Tenant, len(r.Tenants)+1)
	for k, v := range r.Tenants {
		nr.Tenants[k] = v
	}
	nr.Tenants[t.ID] = &t
	f.st.region = nr
	return f.bumpLocked(ChangeRegion)
}

// applyEpochPromise records that this region follows epoch p.Epoch, whose
// primary is p.Primary: a vote for a promotion, or a newer epoch learnt
// from another region. Granted once per epoch (to one primary).
func (f *fsm) applyEpochPromise(c command, p *epochPromiseCmd) (Change, applyResult, error) {
	if err := ValidRegionID(p.Primary); err != nil || p.Epoch == 0 {
		return bad(c, fmt.Errorf("want an epoch > 0 and a primary region (%v)", err))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.st.region
	if r == nil {
		return fail(errNotMultiRegion)
	}
	switch {
	case p.Epoch < r.Promised || (p.Epoch == r.Promised && p.Primary != r.promisedPrimaryID()):
		return fail(fmt.Errorf("%w: region %s already follows epoch %d (primary %s)", ErrStaleRegionEpoch, r.Self, r.Promised, r.promisedPrimary()))
	case p.Vote && (r.lastEpoch() > p.LastEpoch || (r.lastEpoch() == p.LastEpoch && r.gv() > p.GlobalVersion)):
		return fail(fmt.Errorf("%w: %s is at global version %d of epoch %d, behind region %s at %d of epoch %d: promote a region at least as far along",
			ErrStaleRegionEpoch, p.Primary, p.GlobalVersion, p.LastEpoch, r.Self, r.gv(), r.lastEpoch()))
	case p.Epoch == r.Promised:
		return f.bumpLocked(ChangeRegion)
	}
	nr := r.copy()
	nr.Promised, nr.PromisedTo = p.Epoch, p.Primary
	f.st.region = nr
	return f.bumpLocked(ChangeRegion)
}

func (r *regionState) promisedPrimaryID() string {
	if r.Promised > r.Epoch {
		return r.PromisedTo
	}
	return r.Primary
}

// applyEpochBegin starts epoch p.Epoch with this region as primary: it
// must have been promised to it (by its own vote, after a majority of
// regions promised it too). The begin is the epoch's first global entry.
func (f *fsm) applyEpochBegin(c command, p *epochBeginCmd) (Change, applyResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.st.region
	if r == nil {
		return fail(errNotMultiRegion)
	}
	if p.Primary != r.Self || p.Epoch != r.Promised || r.PromisedTo != r.Self || p.Epoch <= r.Epoch {
		return fail(fmt.Errorf("%w: epoch %d for %s: this region (%s) promised epoch %d to %s and is in epoch %d",
			ErrStaleRegionEpoch, p.Epoch, p.Primary, r.Self, r.Promised, orNone(r.PromisedTo), r.Epoch))
	}
	nr := r.copy()
	p.Base = nr.gv()
	payload, _ := json.Marshal(p)
	nr.beginLocked(p)
	nr.Log = append(nr.Log[:len(nr.Log):len(nr.Log)], api.GlobalEntry{GlobalVersion: p.Base + 1, Epoch: p.Epoch, Type: cmdEpochBegin, Payload: payload})
	f.st.region = nr
	ch, res, err := f.bumpLocked(ChangeRegion)
	res.GlobalVersion, ch.GlobalVersion = p.Base+1, p.Base+1
	return ch, res, err
}

// beginLocked makes epoch p current in r (a copy).
func (r *regionState) beginLocked(p *epochBeginCmd) {
	r.Epoch, r.Primary = p.Epoch, p.Primary
	if p.Epoch > r.Promised {
		r.Promised, r.PromisedTo = p.Epoch, p.Primary
	}
	r.Epochs = append(r.Epochs[:len(r.Epochs):len(r.Epochs)], EpochRecord{Epoch: p.Epoch, Primary: p.Primary, Base: p.Base, Time: p.Time})
}

// applyGlobalApply applies one entry of the primary's stream, with the
// cursor in the same raft entry: an entry already applied is skipped
// (idempotent), one that does not follow is refused (a gap), one of an
// older epoch than the log's last, or sent by a primary of an epoch older
// than promised, is refused (fencing).
func (f *fsm) applyGlobalApply(c command, p *globalApplyCmd) (Change, applyResult, error) {
	e := p.Entry
	if !globalTypes[e.Type] {
		return bad(c, fmt.Errorf("entry %d: type %q is not global state; the global stream carries only %s", e.GlobalVersion, e.Type, strings.Join(GlobalTypes(), ", ")))
	}
	f.mu.RLock()
	r := f.st.region
	f.mu.RUnlock()
	if r == nil {
		return fail(errNotMultiRegion)
	}
	switch {
	case p.SourceEpoch < r.Promised:
		return fail(fmt.Errorf("%w: entry %d from a primary of epoch %d; region %s follows epoch %d", ErrStaleRegionEpoch, e.GlobalVersion, p.SourceEpoch, r.Self, r.Promised))
	case e.GlobalVersion >= 1 && e.GlobalVersion <= r.gv():
		if have := r.Log[e.GlobalVersion-1]; have.Epoch != e.Epoch || have.Type != e.Type {
			return fail(fmt.Errorf("%w: entry %d of epoch %d differs from the applied one (epoch %d); this region's log diverged and must be reset", ErrStaleRegionEpoch, e.GlobalVersion, e.Epoch, have.Epoch))
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.bumpLocked(ChangeRegion) // already applied: the cursor does not move
	case e.GlobalVersion != r.gv()+1:
		return fail(fmt.Errorf("%w: entry %d does not follow global version %d", ErrReplicationGap, e.GlobalVersion, r.gv()))
	case e.Epoch < r.lastEpoch() || e.Epoch > p.SourceEpoch:
		return fail(fmt.Errorf("%w: entry %d of epoch %d after an entry of epoch %d (source epoch %d)", ErrStaleRegionEpoch, e.GlobalVersion, e.Epoch, r.lastEpoch(), p.SourceEpoch))
	}
	inner := command{Type: e.Type, Payload: e.Payload}
	if e.Type == cmdKillSet {
		var k killSetCmd
		if err := decodePayload(inner, &k); err != nil || k.Kill.Scope != api.KillGlobal {
			return bad(c, fmt.Errorf("entry %d: only a global kill switch is global state", e.GlobalVersion))
		}
	}
	var ch Change
	var res applyResult
	var err error
	if e.Type == cmdEpochBegin {
		var b epochBeginCmd
		if err := decodePayload(inner, &b); err != nil {
			return fail(err)
		}
		// The begin's payload is what the primary made current: it must be
		// the entry's own epoch, newer than this region's, at this place.
		if b.Epoch != e.Epoch || b.Epoch <= r.Epoch || b.Base != e.GlobalVersion-1 || ValidRegionID(b.Primary) != nil {
			return bad(c, fmt.Errorf("entry %d of epoch %d begins epoch %d of primary %q at base %d; want a newer epoch than %d, the entry's own, after global version %d",
				e.GlobalVersion, e.Epoch, b.Epoch, b.Primary, b.Base, r.Epoch, e.GlobalVersion-1))
		}
		f.mu.Lock()
		nr := f.st.region.copy()
		nr.beginLocked(&b)
		f.st.region = nr
		ch, res, err = f.bumpLocked(ChangeRegion)
		f.mu.Unlock()
	} else {
		ch, res, err = globalAppliers[e.Type](f, inner)
	}
	if err != nil {
		// The primary applied it, so a replica that cannot has state of
		// its own in the way (a token accessor it made itself): the entry
		// is consumed all the same, or the stream would stop here forever.
		f.mu.Lock()
		ch, res, _ = f.bumpLocked(ChangeRegion)
		f.mu.Unlock()
		res.Skipped = err.Error()
	}
	f.mu.Lock()
	nr := f.st.region.copy()
	nr.Log = append(nr.Log[:len(nr.Log):len(nr.Log)], e)
	f.st.region = nr
	f.mu.Unlock()
	ch.GlobalVersion, res.GlobalVersion = e.GlobalVersion, e.GlobalVersion
	return ch, res, nil
}

// applyGlobalReset replaces the global state with the primary's: the
// first sync of a region that starts following, and the repair of one
// whose log diverged (an old primary that wrote after the fork). Entries
// of the local log that the primary's does not have are quarantined: kept
// for review, never applied again. Regional state (entities, agents,
// approvals, sandboxes, tenant kill switches) is untouched; tokens are
// merged, so a region keeps the credentials it made itself.
func (f *fsm) applyGlobalReset(c command, p *GlobalState) (Change, applyResult, error) {
	for i, e := range p.Log {
		if e.GlobalVersion != uint64(i+1) || !globalTypes[e.Type] {
			return bad(c, fmt.Errorf("log entry %d: want global version %d and a global type, got %d %q", i, i+1, e.GlobalVersion, e.Type))
		}
	}
	for i, v := range p.Versions {
		if v == nil || v.Version != uint64(i+1) {
			return bad(c, fmt.Errorf("bundle version at position %d: want version %d", i, i+1))
		}
	}
	if err := checkGlobalRecords(p); err != nil {
		return bad(c, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.st.region
	if r == nil {
		return fail(errNotMultiRegion)
	}
	if p.Epoch < r.Promised {
		return fail(fmt.Errorf("%w: a reset from a primary of epoch %d; region %s follows epoch %d", ErrStaleRegionEpoch, p.Epoch, r.Self, r.Promised))
	}
	nr := r.copy()
	common := 0
	for common < len(r.Log) && common < len(p.Log) && r.Log[common].Epoch == p.Log[common].Epoch && r.Log[common].Type == p.Log[common].Type {
		common++
	}
	nr.Quarantine = append(slices.Clone(r.Quarantine), r.Log[common:]...)
	nr.Log, nr.Epoch, nr.Primary, nr.Epochs = p.Log, p.Epoch, p.Primary, p.Epochs
	nr.Promised, nr.PromisedTo = p.Epoch, p.Primary
	nr.Regions, nr.Tenants = p.Regions, p.Tenants
	if nr.Regions == nil {
		nr.Regions = map[string]*api.Region{}
	}
	f.st.region = nr

	f.st.versions = p.Versions
	f.st.rollout, f.st.staged = p.Rollout, p.Staged
	f.st.orchestras = make(map[string]*api.Orchestra, len(p.Orchestras))
	for _, o := range p.Orchestras {
		f.st.orchestras[o.Name] = o
	}
	kills := make(map[string]*api.KillSwitch, len(f.st.kills))
	for id, k := range f.st.kills {
		if k.Scope != api.KillGlobal {
			kills[id] = k
		}
	}
	for _, k := range p.Kills {
		if k.Scope == api.KillGlobal {
			kills[k.ID] = k
		}
	}
	f.st.kills = kills
	f.st.killRev = 0
	for _, k := range kills {
		f.st.killRev = max(f.st.killRev, k.Revision)
	}
	f.st.system = p.System
	for _, t := range p.Tokens {
		// Each region keeps its own root token; the primary's other
		// tokens are global (a client that follows a redirect to another
		// region authenticates there with the same one).
		if t.Token.Root {
			continue
		}
		if _, ok := f.st.tokens[t.Token.Accessor]; !ok {
			_ = restoreToken(&f.st, &snapshotRecord{Token: t})
		}
	}
	f.st.revision++
	// Everything derived from the global state is rebuilt as after a
	// snapshot restore.
	f.st.catalogRev = f.st.revision
	var cur *api.BundleVersion
	if n := len(f.st.versions); n > 0 {
		cur = f.st.versions[n-1]
	}
	ch := Change{Revision: f.st.revision, Kind: ChangeRestore, Version: cur, Rollout: f.st.rollout, Candidate: f.candidateLocked(), System: f.st.system, GlobalVersion: nr.gv()}
	return ch, applyResult{Revision: f.st.revision, GlobalVersion: nr.gv()}, nil
}

// checkGlobalRecords refuses a reset whose records are null or filed
// under another id than their own: the state machine and its readers
// dereference every record of the state.
func checkGlobalRecords(p *GlobalState) error {
	for id, r := range p.Regions {
		if r == nil || r.ID != id {
			return fmt.Errorf("region %q: want the region filed under its id", id)
		}
	}
	for id, t := range p.Tenants {
		if t == nil || t.ID != id {
			return fmt.Errorf("tenant %q: want the tenant filed under its id", id)
		}
	}
	for i, o := range p.Orchestras {
		if o == nil {
			return fmt.Errorf("orchestra at position %d is null", i)
		}
	}
	for i, k := range p.Kills {
		if k == nil {
			return fmt.Errorf("kill switch at position %d is null", i)
		}
	}
	for i, t := range p.Tokens {
		if t == nil {
			return fmt.Errorf("token at position %d is null", i)
		}
	}
	// What a snapshot restore checks, on a scratch state: a reset accepted
	// here must survive this region's next snapshot and restart.
	scratch := newState()
	h := snapshotHeader{Orchestras: len(p.Orchestras)}
	for i, o := range p.Orchestras {
		if err := restoreGateway(&scratch, &snapshotRecord{Orchestra: o}, i, h); err != nil {
			return fmt.Errorf("orchestra %d: %v", i, err)
		}
	}
	for i, k := range p.Kills {
		if err := restoreGateway(&scratch, &snapshotRecord{Kill: k}, len(p.Orchestras)+i, h); err != nil {
			return fmt.Errorf("kill switch %d: %v", i, err)
		}
	}
	for i, t := range p.Tokens {
		if err := restoreToken(&scratch, &snapshotRecord{Token: t}); err != nil {
			return fmt.Errorf("token %d: %v", i, err)
		}
	}
	for _, v := range p.Versions {
		if v != nil {
			if err := validateFiles(v.Files); err != nil {
				return fmt.Errorf("version %d: %v", v.Version, err)
			}
		}
	}
	if p.System != nil {
		if err := validateFiles(p.System.Files); err != nil {
			return fmt.Errorf("system bundle: %v", err)
		}
	}
	for id, r := range p.Regions {
		if err := validateRegion(r); err != nil {
			return fmt.Errorf("region %s: %v", id, err)
		}
	}
	return nil
}

// GlobalTypes lists the command types the global stream may carry.
func GlobalTypes() []string {
	out := make([]string, 0, len(globalTypes))
	for t := range globalTypes {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// checkResidencyLocked refuses tenant data for a tenant that does not live
// here: ErrResidency if its home is in another domain (or it has none),
// ErrNotHome if its home is another region of this domain that this one
// does not stand in for.
func (f *fsm) checkResidencyLocked(tenant string) error {
	r := f.st.region
	if r == nil || tenant == "" {
		return nil
	}
	return residency(r, tenant)
}

func residency(r *regionState, tenant string) error {
	serving, err := r.serving(tenant)
	if err != nil {
		return err
	}
	if t := r.Tenants[tenant]; t.Domain != r.Domain {
		return fmt.Errorf("%w: tenant %s lives in domain %s; region %s is in domain %s", ErrResidency, tenant, t.Domain, r.Self, r.Domain)
	}
	if serving != r.Self {
		return &NotHomeError{Tenant: tenant, Home: serving}
	}
	return nil
}

// serving is the region that serves tenant's data: its home, or the
// home's standby once the home failed over.
func (r *regionState) serving(tenant string) (string, error) {
	t := r.Tenants[tenant]
	if t == nil {
		return "", fmt.Errorf("%w: tenant %s has no home region; add it to the tenant directory first (aibos tenant add %s --home REGION)", ErrResidency, tenant, tenant)
	}
	home := r.Regions[t.Home]
	if home == nil {
		return "", fmt.Errorf("%w: tenant %s: its home region %s is not in the registry", ErrRegionUnavailable, tenant, t.Home)
	}
	if !home.FailedOver {
		return home.ID, nil
	}
	if sb := r.Regions[home.Standby]; sb == nil || sb.FailedOver {
		return "", fmt.Errorf("%w: tenant %s: its home region %s was lost and no standby in domain %s serves it; it is never served from another domain", ErrRegionUnavailable, tenant, t.Home, home.Domain)
	}
	return home.Standby, nil
}

// NotHomeError says which region tenant data belongs to.
type NotHomeError struct{ Tenant, Home string }

func (e *NotHomeError) Error() string {
	return fmt.Sprintf("store: tenant %s lives in region %s", e.Tenant, e.Home)
}
func (e *NotHomeError) Unwrap() error { return ErrNotHome }

// entityTenant is the tenant an entity belongs to: its tenant property.
func entityTenant(e api.Entity) string {
	t, _ := e.Properties["tenant"].(string)
	return t
}

// restoreRegion sets the region state of a snapshot record.
func restoreRegion(st *state, r *regionState) error {
	if r == nil {
		return errors.New("want the region state")
	}
	if err := ValidRegionID(r.Self); err != nil {
		return err
	}
	for i, e := range r.Log {
		if e.GlobalVersion != uint64(i+1) {
			return fmt.Errorf("region state: log entry %d has global version %d", i, e.GlobalVersion)
		}
	}
	if r.Regions == nil {
		r.Regions = map[string]*api.Region{}
	}
	st.region = r
	return nil
}
