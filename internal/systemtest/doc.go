// Package systemtest holds the kernel's system tests: real multi-node
// clusters started in one process over loopback (real Raft, real HTTP),
// with a fault-injecting proxy in front of every node's Raft port to crash,
// partition and heal nodes, and a linearizability check of the recorded
// client history with porcupine. The package has no code outside its
// tests; see README.md for what is covered and how faults are injected.
package systemtest
