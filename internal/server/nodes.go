package server

import (
	"context"
	"crypto/tls"
	"net/http"
	"time"
)

// headerNode carries, on a forwarded request, the id of the node that the
// request came from, as the forwarding node verified it (absent: the
// request did not come from a node). It is read only from a request that
// arrived over node mTLS with headerForwarded set; from anyone else both
// headers are removed before any handler runs.
const headerNode = "X-Aibos-Node"

type nodeKey struct{}

// nodeIdent is who sent a request, when node TLS is on: peer is the node
// whose certificate the connection presented ("" for a client that is not
// a node), origin the node the request came from in the first place (the
// peer, or the node the peer forwarded it for).
type nodeIdent struct{ peer, origin string }

// admitNode fixes what a request may claim about nodes before the mux sees
// it. With node TLS, the forwarding marker and the origin header are kept
// only from a peer with a node certificate of the cluster; a client that
// sends them gets them removed (the marker then cannot make a follower skip
// a check, and no handler can be told a request came from a node). Without
// node TLS (a plaintext cluster, loopback or --insecure-no-tls) there is
// no way to tell a node from a client: the marker keeps only its meaning
// "do not forward again", which can make a request fail but never grants
// anything, and the origin header is always removed.
func (s *Server) admitNode(r *http.Request) *http.Request {
	if s.cfg.IdentifyNode == nil {
		r.Header.Del(headerNode)
		return r
	}
	peer, ok := s.cfg.IdentifyNode(r.TLS)
	if !ok {
		r.Header.Del(headerForwarded)
		r.Header.Del(headerNode)
		return r
	}
	origin := peer
	if r.Header.Get(headerForwarded) != "" {
		origin = r.Header.Get(headerNode)
	}
	r.Header.Del(headerNode)
	return r.WithContext(context.WithValue(r.Context(), nodeKey{}, nodeIdent{peer: peer, origin: origin}))
}

// originNode is the id of the node a request came from, verified by node
// mTLS (directly, or by the node that forwarded it); "" if it did not come
// from a node or node TLS is off.
func originNode(r *http.Request) string {
	id, _ := r.Context().Value(nodeKey{}).(nodeIdent)
	return id.origin
}

// ForwardedByNode reports whether r was forwarded by another node of the
// cluster over node mTLS, and by which. Only then may a handler rely on
// what the forwarding node vouched for; a plaintext cluster never
// answers true.
func ForwardedByNode(r *http.Request) (string, bool) {
	id, ok := r.Context().Value(nodeKey{}).(nodeIdent)
	if !ok || r.Header.Get(headerForwarded) == "" {
		return "", false
	}
	return id.peer, true
}

// peerScheme is the scheme of calls to other nodes' HTTP APIs.
func (s *Server) peerScheme() string {
	if s.cfg.PeerTLS != nil {
		return "https"
	}
	return "http"
}

// newPeerClient is the client of calls to other nodes (forwarding,
// automatic aborts), over TLS with this node's certificate when PeerTLS is
// set.
func newPeerClient(peerTLS *tls.Config, timeout time.Duration) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = peerTLS
	return &http.Client{Timeout: timeout, Transport: tr}
}
