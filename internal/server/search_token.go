package server

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/aibos/kernel/api"
)

// A search page token is opaque to callers. Inside, it is
// base64url("s1|KIND|VERSION|REVISION|DIGEST|AFTER"): the search, the
// bundle version and the revision the first page was decided at, a digest
// of the query (so that a token is refused for another query, as the
// specification asks), and the last candidate examined (the next page
// starts after it, in id order). It is not signed: a forged token can only
// start a page elsewhere in the same result set, or be refused.

// codePageStale answers a page token whose bundle version or revision is
// not the node's any more.
const codePageStale = api.CodePageStale

type pageToken struct {
	kind              string
	version, revision uint64
	digest            string
	after             string
}

func (t pageToken) String() string {
	raw := "s1|" + t.kind + "|" + strconv.FormatUint(t.version, 10) + "|" + strconv.FormatUint(t.revision, 10) + "|" + t.digest + "|" + t.after
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

var errBadToken = errors.New("page.token is not a token this kernel issued: send the next_token of the previous page unchanged, or leave page.token out to start a new search")

func parsePageToken(s string) (pageToken, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return pageToken{}, errBadToken
	}
	parts := strings.SplitN(string(raw), "|", 6)
	if len(parts) != 6 || parts[0] != "s1" {
		return pageToken{}, errBadToken
	}
	t := pageToken{kind: parts[1], digest: parts[4], after: parts[5]}
	if t.version, err = strconv.ParseUint(parts[2], 10, 64); err != nil {
		return pageToken{}, errBadToken
	}
	if t.revision, err = strconv.ParseUint(parts[3], 10, 64); err != nil {
		return pageToken{}, errBadToken
	}
	return t, nil
}

// queryDigest identifies a search's query and page size: its members as
// encoding/json writes them (map keys sorted), hashed.
func queryDigest(q *searchQuery) string {
	b, err := json.Marshal(struct {
		Kind  string `json:"k"`
		Req   any    `json:"r"`
		Limit int    `json:"l"`
	}{q.kind, q.tmpl, q.limit})
	if err != nil {
		// Decoded JSON always encodes again.
		b = fmt.Appendf(nil, "%v", q.tmpl)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}
