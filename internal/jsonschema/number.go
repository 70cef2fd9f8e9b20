package jsonschema

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"
)

// decimal is an exact JSON number: 0.digits × 10^exp, with no leading or
// trailing zeros in digits ("" is zero). Comparing decimals is exact for any
// size of integer or fraction, which float64 is not (2^53+1 and 2^53 are
// one double), and it costs no allocation beyond the parse.
type decimal struct {
	neg    bool
	digits string
	exp    int64
	text   string // as written, for messages
}

// maxExp bounds exponents so that absurd ones ("1e99999999999999999999")
// saturate instead of overflowing; no real number comes near it.
const maxExp = 1 << 50

// parseDecimal reads a number in JSON syntax (also accepting a leading '+'
// and Go's "1e+21" form, which strconv produces).
func parseDecimal(s string) (decimal, bool) {
	d := decimal{text: s}
	i := 0
	if i < len(s) && (s[i] == '-' || s[i] == '+') {
		d.neg = s[i] == '-'
		i++
	}
	var intPart, frac string
	start := i
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	intPart = s[start:i]
	if i < len(s) && s[i] == '.' {
		i++
		start = i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		frac = s[start:i]
		if frac == "" {
			return decimal{}, false
		}
	}
	if intPart == "" {
		return decimal{}, false
	}
	var e int64
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		eneg := false
		if i < len(s) && (s[i] == '-' || s[i] == '+') {
			eneg = s[i] == '-'
			i++
		}
		if i == len(s) {
			return decimal{}, false
		}
		for ; i < len(s); i++ {
			if s[i] < '0' || s[i] > '9' {
				return decimal{}, false
			}
			if e < maxExp {
				e = e*10 + int64(s[i]-'0')
			}
		}
		if eneg {
			e = -e
		}
	}
	if i != len(s) {
		return decimal{}, false
	}
	all := intPart + frac
	lead := len(all) - len(strings.TrimLeft(all, "0"))
	all = strings.TrimRight(all[lead:], "0")
	if all == "" {
		return decimal{text: s}, true // zero, of either sign
	}
	d.digits = all
	d.exp = e + int64(len(intPart)) - int64(lead)
	return d, true
}

func decimalFromFloat(f float64) (decimal, bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return decimal{}, false
	}
	return parseDecimal(strconv.FormatFloat(f, 'g', -1, 64))
}

// toDecimal reads the numeric Go types a JSON decoder or a caller produces.
func toDecimal(v any) (decimal, bool) {
	switch n := v.(type) {
	case json.Number:
		return parseDecimal(string(n))
	case float64:
		return decimalFromFloat(n)
	case float32:
		return decimalFromFloat(float64(n))
	case int:
		return parseDecimal(strconv.FormatInt(int64(n), 10))
	case int64:
		return parseDecimal(strconv.FormatInt(n, 10))
	case int32:
		return parseDecimal(strconv.FormatInt(int64(n), 10))
	case uint64:
		return parseDecimal(strconv.FormatUint(n, 10))
	case uint:
		return parseDecimal(strconv.FormatUint(uint64(n), 10))
	case uint32:
		return parseDecimal(strconv.FormatUint(uint64(n), 10))
	}
	return decimal{}, false
}

func isNumber(v any) bool {
	switch v.(type) {
	case json.Number, float64, float32, int, int64, int32, uint64, uint, uint32:
		return true
	}
	return false
}

func (d decimal) sign() int {
	switch {
	case d.digits == "":
		return 0
	case d.neg:
		return -1
	}
	return 1
}

func (d decimal) cmp(o decimal) int {
	ds, os := d.sign(), o.sign()
	if ds != os || ds == 0 {
		return cmpInt(int64(ds), int64(os))
	}
	c := cmpInt(d.exp, o.exp)
	if c == 0 {
		c = strings.Compare(d.digits, o.digits)
	}
	return c * ds
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (d decimal) isInteger() bool { return d.digits == "" || int64(len(d.digits)) <= d.exp }

// key is the same string for equal numbers however they were written.
func (d decimal) key() string {
	if d.digits == "" {
		return "0"
	}
	s := "0." + d.digits + "e" + strconv.FormatInt(d.exp, 10)
	if d.neg {
		return "-" + s
	}
	return s
}

func (d decimal) String() string { return d.text }
