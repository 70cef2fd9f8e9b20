package auth

import (
	"fmt"
	"net/http"
	"strings"
)

// maxCredential bounds the credential of a header: far above any token
// the kernel issues or an OIDC JWT, so a huge header costs nothing more.
const maxCredential = 8 << 10

// ParseAuthorization parses an Authorization header value of the Bearer
// scheme (RFC 6750 §2.1, RFC 9110 §11.4): the scheme is matched without
// regard to case, one or more spaces separate it from the credential,
// which is a token68 (letters, digits and -._~+/ followed by optional =).
// An empty value is ErrNoCredential; anything else not of this form is
// ErrMalformed, with the reason.
func ParseAuthorization(h string) (string, error) {
	if h == "" {
		return "", ErrNoCredential
	}
	scheme, rest, ok := strings.Cut(h, " ")
	if !ok {
		return "", fmt.Errorf("%w: the Authorization header has no scheme; send \"Authorization: Bearer TOKEN\"", ErrMalformed)
	}
	if !strings.EqualFold(scheme, "Bearer") {
		return "", fmt.Errorf("%w: Authorization scheme %.20q is not supported; send \"Authorization: Bearer TOKEN\"", ErrMalformed, scheme)
	}
	cred := strings.TrimLeft(rest, " ")
	cred = strings.TrimRight(cred, " \t")
	if cred == "" {
		return "", fmt.Errorf("%w: the Bearer credential is empty", ErrMalformed)
	}
	if len(cred) > maxCredential {
		return "", fmt.Errorf("%w: the Bearer credential is longer than %d bytes", ErrMalformed, maxCredential)
	}
	if !isToken68(cred) {
		return "", fmt.Errorf("%w: the Bearer credential has characters a token cannot have", ErrMalformed)
	}
	return cred, nil
}

// isToken68 reports whether s is a token68: 1*( ALPHA / DIGIT / "-" / "." /
// "_" / "~" / "+" / "/" ) *"=".
func isToken68(s string) bool {
	i := 0
	for i < len(s) && token68[s[i]] {
		i++
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}

// token68 marks the bytes of a token68 before its padding: a table, as
// every authenticated request runs it over its credential.
var token68 = func() (t [256]bool) {
	for c := range 256 {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/'
	}
	return t
}()

// Credential is the Bearer credential of r (see ParseAuthorization). Two
// Authorization headers are malformed: which one counts would depend on
// the proxy in between.
func Credential(r *http.Request) (string, error) {
	vs := r.Header["Authorization"] // canonical: as Values("Authorization"), without canonicalizing it again
	switch len(vs) {
	case 0:
		return "", ErrNoCredential
	case 1:
		return ParseAuthorization(vs[0])
	default:
		return "", fmt.Errorf("%w: %d Authorization headers; send one", ErrMalformed, len(vs))
	}
}
