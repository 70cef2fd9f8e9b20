package store

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/hashicorp/raft"

	"github.com/aibos/kernel/api"
)

// snapshotFormat is the version of the snapshot encoding. A node refuses to
// restore a snapshot of a format it does not know rather than drop state.
const snapshotFormat = 1

// The snapshot is a gzip stream of JSON values, one per line: a header,
// then one record per bundle version (in order), per member, per entity
// (sorted, so equal states give equal bytes). Streaming keeps memory flat
// for large entity sets on both sides.
type snapshotHeader struct {
	Format   int    `json:"format"`
	Revision uint64 `json:"revision"`
	Versions int    `json:"versions"`
	Nodes    int    `json:"nodes"`
	Entities int    `json:"entities"`
	// Rollouts is 1 when a rollout record follows the entities (omitted
	// when 0, so a state without rollouts encodes as before).
	Rollouts int `json:"rollouts,omitempty"`
	// Agents counts the agent records after the rollout (omitted when 0,
	// so a state without agents encodes as before; a node that predates
	// agents refuses a snapshot with some rather than drop them).
	Agents int `json:"agents,omitempty"`
	// The gateway's state follows the agents: orchestras (by name), then
	// approvals and kill switches (by id). Every count, and the catalog's
	// revision, is omitted when 0, so a state without them encodes as
	// before; an older node refuses the unknown fields rather than drop
	// them.
	CatalogRevision uint64 `json:"catalog_revision,omitempty"`
	Orchestras      int    `json:"orchestras,omitempty"`
	Approvals       int    `json:"approvals,omitempty"`
	Kills           int    `json:"kills,omitempty"`
	// Tokens counts the operator tokens after the kill switches (by
	// accessor); omitted when 0, so a state without them encodes as
	// before, and an older node refuses the field rather than drop them.
	Tokens int `json:"tokens,omitempty"`
	// Systems is 1 when a published system bundle follows the tokens.
	Systems int `json:"systems,omitempty"`
	// Sandboxes counts the agents' sandbox records after the kill
	// switches (omitted when 0, so a state without them encodes as before).
	Sandboxes int `json:"sandboxes,omitempty"`
	// Regions is 1 when the multi-region state follows the sandboxes
	// (omitted when 0: a single region encodes as before).
	Regions int `json:"regions,omitempty"`
}

// snapshotRecord has exactly one field set. New kinds of state add a field
// (and bump snapshotFormat if old nodes must not read it).
type snapshotRecord struct {
	Version *api.BundleVersion `json:"version,omitempty"`
	Node    *nodeMeta          `json:"node,omitempty"`
	Entity  *api.Entity        `json:"entity,omitempty"`
	Rollout *api.Rollout       `json:"rollout,omitempty"`
	// Staged goes with Rollout, in the same record, when the active
	// rollout's candidate is staged. A snapshot without one encodes as
	// before; a node that predates staging refuses one with it (unknown
	// field) rather than drop the candidate.
	Staged    *api.BundleVersion `json:"staged,omitempty"`
	Agent     *agentRecord       `json:"agent,omitempty"`
	Orchestra *api.Orchestra     `json:"orchestra,omitempty"`
	Approval  *api.Approval      `json:"approval,omitempty"`
	Kill      *api.KillSwitch    `json:"kill,omitempty"`
	Token     *tokenRecord       `json:"token,omitempty"`
	System    *api.BundleVersion `json:"system,omitempty"`
	Sandbox   *sandboxRecord     `json:"sandbox,omitempty"`
	Region    *regionState       `json:"region,omitempty"`
}

// kinds counts the kinds of state a record holds (Staged goes with
// Rollout and is not counted): a valid record holds exactly one.
func (r *snapshotRecord) kinds() int {
	n := 0
	for _, set := range []bool{r.Version != nil, r.Node != nil, r.Entity != nil, r.Rollout != nil,
		r.Agent != nil, r.Orchestra != nil, r.Approval != nil, r.Kill != nil, r.Token != nil, r.System != nil, r.Sandbox != nil, r.Region != nil} {
		if set {
			n++
		}
	}
	return n
}

// fsmSnapshot is a point-in-time copy of references into the state.
type fsmSnapshot struct {
	revision uint64
	versions []*api.BundleVersion
	entities []api.Entity
	nodes    []nodeMeta
	rollout  *api.Rollout
	staged   *api.BundleVersion
	agents   []*agentRecord

	catalogRev uint64
	orchestras []*api.Orchestra
	approvals  []*api.Approval
	kills      []*api.KillSwitch
	tokens     []*tokenRecord
	system     *api.BundleVersion
	sandbox    []*sandboxRecord
	region     *regionState
}

// Persist writes the snapshot to the sink. It runs concurrently with Apply,
// which is safe because it reads immutable values only.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.write(sink); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("store: persist snapshot: %w", err)
	}
	return sink.Close()
}

// Release is a no-op: the snapshot holds no resources.
func (s *fsmSnapshot) Release() {}

func (s *fsmSnapshot) write(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	zw, err := gzip.NewWriterLevel(bw, gzip.BestSpeed)
	if err != nil {
		return err
	}
	if err := s.encode(zw); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return bw.Flush()
}

// encode writes the uncompressed records.
func (s *fsmSnapshot) encode(w io.Writer) error {
	sort.Slice(s.entities, func(i, j int) bool {
		a, b := s.entities[i], s.entities[j]
		if a.Type != b.Type {
			return a.Type < b.Type
		}
		return a.ID < b.ID
	})
	sort.Slice(s.nodes, func(i, j int) bool { return s.nodes[i].ID < s.nodes[j].ID })
	sort.Slice(s.agents, func(i, j int) bool { return s.agents[i].Agent.ID < s.agents[j].Agent.ID })
	sort.Slice(s.orchestras, func(i, j int) bool { return s.orchestras[i].Name < s.orchestras[j].Name })
	sort.Slice(s.approvals, func(i, j int) bool { return s.approvals[i].ID < s.approvals[j].ID })
	sort.Slice(s.kills, func(i, j int) bool { return s.kills[i].ID < s.kills[j].ID })
	sort.Slice(s.tokens, func(i, j int) bool { return s.tokens[i].Token.Accessor < s.tokens[j].Token.Accessor })
	sort.Slice(s.sandbox, func(i, j int) bool { return s.sandbox[i].Agent < s.sandbox[j].Agent })

	enc := json.NewEncoder(w)
	h := snapshotHeader{
		Format: snapshotFormat, Revision: s.revision,
		Versions: len(s.versions), Nodes: len(s.nodes), Entities: len(s.entities),
	}
	if s.rollout != nil {
		h.Rollouts = 1
	}
	h.Agents = len(s.agents)
	h.CatalogRevision = s.catalogRev
	h.Orchestras, h.Approvals, h.Kills = len(s.orchestras), len(s.approvals), len(s.kills)
	h.Tokens = len(s.tokens)
	if s.system != nil {
		h.Systems = 1
	}
	h.Sandboxes = len(s.sandbox)
	if s.region != nil {
		h.Regions = 1
	}
	if err := enc.Encode(h); err != nil {
		return err
	}
	for _, v := range s.versions {
		if err := enc.Encode(snapshotRecord{Version: v}); err != nil {
			return err
		}
	}
	for i := range s.nodes {
		if err := enc.Encode(snapshotRecord{Node: &s.nodes[i]}); err != nil {
			return err
		}
	}
	for i := range s.entities {
		if err := enc.Encode(snapshotRecord{Entity: &s.entities[i]}); err != nil {
			return err
		}
	}
	if s.rollout != nil {
		if err := enc.Encode(snapshotRecord{Rollout: s.rollout, Staged: s.staged}); err != nil {
			return err
		}
	}
	for _, a := range s.agents {
		if err := enc.Encode(snapshotRecord{Agent: a}); err != nil {
			return err
		}
	}
	for _, o := range s.orchestras {
		if err := enc.Encode(snapshotRecord{Orchestra: o}); err != nil {
			return err
		}
	}
	for _, a := range s.approvals {
		if err := enc.Encode(snapshotRecord{Approval: a}); err != nil {
			return err
		}
	}
	for _, k := range s.kills {
		if err := enc.Encode(snapshotRecord{Kill: k}); err != nil {
			return err
		}
	}
	for _, t := range s.tokens {
		if err := enc.Encode(snapshotRecord{Token: t}); err != nil {
			return err
		}
	}
	if s.system != nil {
		if err := enc.Encode(snapshotRecord{System: s.system}); err != nil {
			return err
		}
	}
	for _, r := range s.sandbox {
		if err := enc.Encode(snapshotRecord{Sandbox: r}); err != nil {
			return err
		}
	}
	if s.region != nil {
		if err := enc.Encode(snapshotRecord{Region: s.region}); err != nil {
			return err
		}
	}
	return nil
}

// checkSnapshotRollout checks the rollout record against the n versions
// before it: an active staged rollout carries its candidate, numbered
// n+1; any other names an existing version, except an aborted staged one,
// whose candidate was never published.
func checkSnapshotRollout(r *api.Rollout, staged *api.BundleVersion, n uint64) error {
	active := r.State == api.RolloutActive
	switch {
	case r.Candidate == 0:
		return errors.New("rollout without a candidate")
	case r.Staged && active:
		if staged == nil || staged.Version != r.Candidate || r.Candidate != n+1 {
			return fmt.Errorf("active staged rollout of version %d without that candidate after %d versions", r.Candidate, n)
		}
	case staged != nil:
		return errors.New("a staged candidate without an active staged rollout")
	case r.Staged && r.State == api.RolloutAborted:
	case r.Candidate > n:
		return fmt.Errorf("rollout of missing version %d", r.Candidate)
	}
	return nil
}

// readSnapshot decodes a snapshot written by write into a fresh state,
// validating it as it goes.
func readSnapshot(r io.Reader) (state, error) {
	zr, err := gzip.NewReader(bufio.NewReaderSize(r, 64<<10))
	if err != nil {
		return state{}, err
	}
	defer zr.Close()
	return decodeSnapshot(zr)
}

// restoreAgent adds an agent record to st, checking it as Apply would
// have made it.
func restoreAgent(st *state, rec *snapshotRecord) error {
	a := rec.Agent
	if a == nil || rec.Staged != nil {
		return errors.New("want an agent")
	}
	if err := ValidateAgentManifest(&a.Agent.AgentManifest); err != nil {
		return fmt.Errorf("agent %q: %w", a.Agent.ID, err)
	}
	if a.Agent.State != api.AgentActive && a.Agent.State != api.AgentRetired {
		return fmt.Errorf("agent %q: unknown state %q", a.Agent.ID, a.Agent.State)
	}
	if _, dup := st.agents[a.Agent.ID]; dup {
		return fmt.Errorf("agent %q appears twice", a.Agent.ID)
	}
	if a.TokenHash != "" {
		if _, dup := st.agentTokens[a.TokenHash]; dup {
			return fmt.Errorf("agent %q: credential shared with another agent", a.Agent.ID)
		}
		st.agentTokens[a.TokenHash] = a.Agent.ID
	}
	st.agents[a.Agent.ID] = newAgentRecord(a.Agent, a.TokenHash, a.Digests)
	return nil
}

func decodeSnapshot(r io.Reader) (state, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var h snapshotHeader
	if err := dec.Decode(&h); err != nil {
		return state{}, fmt.Errorf("header: %w", err)
	}
	if h.Format != snapshotFormat {
		return state{}, fmt.Errorf("unknown snapshot format %d (this node reads %d)", h.Format, snapshotFormat)
	}
	if h.Versions < 0 || h.Nodes < 0 || h.Entities < 0 || h.Agents < 0 || h.Orchestras < 0 || h.Approvals < 0 || h.Kills < 0 || h.Tokens < 0 || h.Systems < 0 || h.Systems > 1 || h.Sandboxes < 0 || h.Regions < 0 || h.Regions > 1 {
		return state{}, errors.New("negative count in header")
	}
	if h.Rollouts != 0 && h.Rollouts != 1 {
		return state{}, fmt.Errorf("%d rollouts in header (at most 1)", h.Rollouts)
	}
	st := newState()
	st.revision = h.Revision
	st.catalogRev = h.CatalogRevision
	total := h.Versions + h.Nodes + h.Entities
	core := total + h.Rollouts + h.Agents
	gw := core + h.Orchestras + h.Approvals + h.Kills
	for i := 0; i < gw+h.Tokens+h.Systems+h.Sandboxes+h.Regions; i++ {
		var rec snapshotRecord
		if err := dec.Decode(&rec); err != nil {
			return state{}, fmt.Errorf("record %d: %w", i, err)
		}
		if rec.kinds() != 1 {
			return state{}, fmt.Errorf("record %d: holds %d kinds of state, want 1", i, rec.kinds())
		}
		if i >= gw+h.Tokens+h.Systems+h.Sandboxes {
			if err := restoreRegion(&st, rec.Region); err != nil {
				return state{}, fmt.Errorf("record %d: %w", i, err)
			}
			continue
		}
		if i >= gw+h.Tokens+h.Systems {
			if err := restoreSandbox(&st, rec.Sandbox); err != nil {
				return state{}, fmt.Errorf("record %d: %w", i, err)
			}
			continue
		}
		if i >= gw+h.Tokens {
			if rec.System == nil || validateFiles(rec.System.Files) != nil {
				return state{}, fmt.Errorf("record %d: want a system bundle", i)
			}
			st.system = rec.System
			continue
		}
		if i >= gw {
			if err := restoreToken(&st, &rec); err != nil {
				return state{}, fmt.Errorf("record %d: %w", i, err)
			}
			continue
		}
		if i >= core {
			if err := restoreGateway(&st, &rec, i-core, h); err != nil {
				return state{}, fmt.Errorf("record %d: %w", i, err)
			}
			continue
		}
		if i < total && (rec.Rollout != nil || rec.Staged != nil) {
			return state{}, fmt.Errorf("record %d: rollout before the last entity", i)
		}
		if i < total+h.Rollouts && rec.Agent != nil {
			return state{}, fmt.Errorf("record %d: agent before the rollout", i)
		}
		switch {
		case i >= total+h.Rollouts:
			if err := restoreAgent(&st, &rec); err != nil {
				return state{}, fmt.Errorf("record %d: %w", i, err)
			}
		case i == total:
			r := rec.Rollout
			if r == nil || rec.Version != nil || rec.Node != nil || rec.Entity != nil {
				return state{}, fmt.Errorf("record %d: want a rollout", i)
			}
			if err := checkSnapshotRollout(r, rec.Staged, uint64(len(st.versions))); err != nil {
				return state{}, fmt.Errorf("record %d: %w", i, err)
			}
			st.rollout, st.staged = r, rec.Staged
		case i < h.Versions:
			v := rec.Version
			if v == nil || rec.Node != nil || rec.Entity != nil {
				return state{}, fmt.Errorf("record %d: want a version", i)
			}
			if v.Version != uint64(len(st.versions))+1 {
				return state{}, fmt.Errorf("record %d: version %d out of order", i, v.Version)
			}
			st.versions = append(st.versions, v)
		case i < h.Versions+h.Nodes:
			n := rec.Node
			if n == nil || rec.Version != nil || rec.Entity != nil || n.ID == "" {
				return state{}, fmt.Errorf("record %d: want a node", i)
			}
			st.nodes[n.ID] = *n
		default:
			e := rec.Entity
			if e == nil || rec.Version != nil || rec.Node != nil || e.Type == "" || e.ID == "" {
				return state{}, fmt.Errorf("record %d: want an entity", i)
			}
			st.entities[entityKey{e.Type, e.ID}] = normProps(e.Properties)
		}
	}
	if dec.More() {
		return state{}, errors.New("trailing data after the last record")
	}
	return st, nil
}

// restoreGateway adds record j of the gateway's part (orchestras, then
// approvals, then kill switches) to st, checking it as Apply would have
// made it.
func restoreGateway(st *state, rec *snapshotRecord, j int, h snapshotHeader) error {
	switch {
	case j < h.Orchestras:
		o := rec.Orchestra
		if o == nil {
			return errors.New("want an orchestra")
		}
		if err := ValidateOrchestra(o); err != nil {
			return err
		}
		for name := range st.orchestras {
			if overlaps(name, o.Name) {
				return fmt.Errorf("orchestra %q overlaps %q", o.Name, name)
			}
		}
		st.orchestras[o.Name] = o
	case j < h.Orchestras+h.Approvals:
		a := rec.Approval
		if a == nil {
			return errors.New("want an approval")
		}
		switch a.State {
		case api.ApprovalPending, api.ApprovalApproved, api.ApprovalDenied, api.ApprovalConsumed, api.ApprovalVoided:
		default:
			return fmt.Errorf("approval %q: unknown state %q", a.ID, a.State)
		}
		fresh := *a
		fresh.State, fresh.DecidedBy, fresh.DecidedAt, fresh.Reason, fresh.ConsumedBy, fresh.ConsumedAt = "", "", time.Time{}, "", "", time.Time{}
		if err := validateNewApproval(&fresh); err != nil {
			return err
		}
		if _, dup := st.approvals[a.ID]; dup {
			return fmt.Errorf("approval %q appears twice", a.ID)
		}
		st.approvals[a.ID] = a
	default:
		k := rec.Kill
		if k == nil {
			return errors.New("want a kill switch")
		}
		fresh := *k
		fresh.LiftedBy, fresh.LiftedAt, fresh.LiftReason = "", time.Time{}, ""
		if err := validateNewKill(&fresh); err != nil {
			return err
		}
		if _, dup := st.kills[k.ID]; dup {
			return fmt.Errorf("kill switch %q appears twice", k.ID)
		}
		st.kills[k.ID] = k
		st.killRev = max(st.killRev, k.Revision)
	}
	return nil
}
