package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/aibos/kernel/api"
)

// Search asks for one page of an AuthZEN search: kind is "subject",
// "resource" or "action".
func (c *Client) Search(ctx context.Context, kind string, req api.SearchRequest) (api.SearchResponse, error) {
	switch kind {
	case "subject", "resource", "action":
	default:
		return api.SearchResponse{}, fmt.Errorf("search kind %q: want subject, resource or action", kind)
	}
	var resp api.SearchResponse
	body, err := json.Marshal(req)
	if err != nil {
		return resp, err
	}
	// A search only reads: it is retried as a GET would be.
	err = c.doH(ctx, http.MethodPost, "/access/v1/search/"+kind, "application/json", body, nil, &resp,
		func(_, path string, err error) bool { return safeToRetry(http.MethodGet, path, err) })
	return resp, err
}

// SearchAll follows the pages of a search to the end and returns every
// result. A write between two pages makes the server refuse the next one
// (page_token_stale); SearchAll then returns that error.
func (c *Client) SearchAll(ctx context.Context, kind string, req api.SearchRequest) ([]api.SearchResult, error) {
	var out []api.SearchResult
	page := api.PageRequest{}
	if req.Page != nil {
		page = *req.Page
	}
	for {
		req.Page = &page
		resp, err := c.Search(ctx, kind, req)
		if err != nil {
			return out, err
		}
		out = append(out, resp.Results...)
		if resp.Page.NextToken == "" {
			return out, nil
		}
		page.Token = resp.Page.NextToken
	}
}
