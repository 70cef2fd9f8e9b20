package api

// The AuthZEN 1.0 Search APIs (POST /access/v1/search/subject, /resource,
// /action), as the SDK and the CLI send and read them.

// SearchRequest asks which subjects (of Subject.Type), resources (of
// Resource.Type) or actions are allowed. The searched member's id is left
// empty; Action is left out of an action search.
type SearchRequest struct {
	Subject  Entity         `json:"subject"`
	Action   *Action        `json:"action,omitempty"`
	Resource Entity         `json:"resource"`
	Context  map[string]any `json:"context,omitempty"`
	Page     *PageRequest   `json:"page,omitempty"`
}

// PageRequest asks for one page: Token is the NextToken of the previous
// page (empty for the first), Limit the most results the page may hold (0:
// the server's default).
type PageRequest struct {
	Token string `json:"token,omitempty"`
	Limit int    `json:"limit,omitempty"`
}

// SearchResponse is one page of results. Page.NextToken is empty on the
// last page.
type SearchResponse struct {
	Page    SearchPage     `json:"page"`
	Results []SearchResult `json:"results"`
}

// SearchPage says whether more results follow.
type SearchPage struct {
	NextToken string `json:"next_token"`
	Count     int    `json:"count"`
}

// SearchResult is a subject or resource {type, id}, or an action {name}.
type SearchResult struct {
	Type string `json:"type,omitempty"`
	ID   string `json:"id,omitempty"`
	Name string `json:"name,omitempty"`
}
