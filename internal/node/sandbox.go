package node

import (
	"github.com/aibos/kernel/internal/sandbox"
	"github.com/aibos/kernel/internal/store"
)

// startSandbox builds the agent runtime on the gateway (every host call
// is an invocation through it) and adds its routes. Before HTTP serves.
func (n *Node) startSandbox() error {
	gw := n.gw.Load()
	if gw == nil {
		return nil // no gateway, no agents
	}
	cfg := n.cfg.Sandbox
	cfg.Store, cfg.Gateway, cfg.DataDir, cfg.Node, cfg.Logger, cfg.Peers = n.Store, gw, n.cfg.DataDir, n.cfg.NodeID, n.log, n.Server
	if n.Audit != nil {
		cfg.Audit = n.Audit
	}
	if cfg.Now == nil {
		cfg.Now = n.cfg.Now
	}
	rt, err := sandbox.New(cfg)
	if err != nil {
		return err
	}
	rt.Routes(n.Server)
	n.Sandbox = rt
	n.sandbox.Store(rt)
	rt.Changed()
	return nil
}

// sandboxHook passes the changes the runtime follows: its own state,
// agents (a new version), kill switches, a restore.
func (n *Node) sandboxHook(c store.Change) {
	rt := n.sandbox.Load()
	if rt == nil {
		return
	}
	switch c.Kind {
	case store.ChangeSandbox, store.ChangeAgent, store.ChangeKill, store.ChangeRestore:
		rt.Changed()
	}
}

// closeSandbox stops the agents running here, after HTTP has drained and
// before the audit log closes (a stopped tick's host call may record).
func (n *Node) closeSandbox() {
	if n.Sandbox != nil {
		if err := n.Sandbox.Close(); err != nil {
			n.log.Error("sandbox close", "err", err)
		}
	}
}
