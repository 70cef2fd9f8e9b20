package store

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzReadPeers: a peers file is read from disk by aibos cluster recover;
// whatever it holds, ReadPeers either refuses it or returns peers that
// each have an id and a Raft address, no id twice, and at least one voter.
func FuzzReadPeers(f *testing.F) {
	f.Add([]byte(`[{"id":"n1","raft":"127.0.0.1:8301"}]`))
	f.Add([]byte(`[{"id":"n1","raft":"127.0.0.1:8301"},{"id":"n2","raft":"127.0.0.1:8302","nonvoter":true}]`))
	f.Add([]byte(`[{"id":"n1","raft":"a"},{"id":"n1","raft":"b"}]`))
	f.Add([]byte(`{}`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		file := filepath.Join(dir, "peers.json")
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
		peers, err := ReadPeers(file)
		if err != nil {
			return
		}
		seen, voters := map[string]bool{}, 0
		for _, p := range peers {
			if p.ID == "" || p.Raft == "" || seen[p.ID] {
				t.Fatalf("accepted a peer without id or raft address, or twice: %+v", peers)
			}
			seen[p.ID] = true
			if !p.NonVoter {
				voters++
			}
		}
		if voters == 0 {
			t.Fatalf("accepted peers without a voter: %+v", peers)
		}
	})
}
