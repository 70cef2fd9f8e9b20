package api

// AcceptRequest is the body of POST /v1/orchestras/{name}/accept: pin the
// MCP server's current definition of Tool ("": of every tool), ending its
// quarantine. By names the operator in the audit record (until operator
// authentication supplies the principal).
type AcceptRequest struct {
	Tool string `json:"tool,omitempty"`
	By   string `json:"by,omitempty"`
}

// AcceptResponse answers an accept: the orchestra as stored and the tools
// whose pinned definition moved.
type AcceptResponse struct {
	Orchestra Orchestra `json:"orchestra"`
	Accepted  []string  `json:"accepted"`
}
