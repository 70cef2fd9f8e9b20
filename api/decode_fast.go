package api

import (
	"strconv"
	"sync"
	"unicode/utf8"
)

// The fast path of DecodeCheckRequest and DecodeBatchCheckRequest: a strict
// JSON parser written for the shape of a check request. It accepts only what
// the encoding/json-based decoder (the slow path) accepts, and produces the
// very same value; on anything unusual it gives up, and the slow path runs and
// has the last word, with its error messages. Giving up is always allowed,
// accepting more never is: FuzzDecodeCheckRequestFast checks it.
//
// It gives up on: a field name that is not spelled exactly as in the struct
// tag (encoding/json matches case-insensitively), a field given twice (which
// encoding/json merges), null or a wrong type for a field, an unknown field,
// a number encoding/json cannot convert, invalid UTF-8 or an escaped UTF-16
// surrogate in a string (which encoding/json replaces with U+FFFD), malformed
// JSON, trailing data and every limit of the request (size, nesting,
// collection length, action name).

// fastParser parses data from i on. The scratch stacks hold the elements of
// the arrays and objects being parsed, so that each array is allocated once
// at its final length and each map once with its final size.
type fastParser struct {
	data  []byte
	i     int
	items []any
	pairs []fastPair
	buf   []byte // unescaped strings

	// Where strings come from. For one check (shared), they are substrings
	// of text, the body copied once: a caller that keeps one of them keeps
	// the text of the whole request, at most MaxCheckRequestSize bytes. In
	// a batch, whose text can be much larger, each string is allocated on
	// its own, as encoding/json does, and cache shares the strings and
	// numbers that repeat from one check to the next. Escaped strings are
	// always allocated on their own. The values of maps and arrays, boxed
	// in interfaces, may also come from the boxes the process shares
	// (decode_box.go).
	shared bool
	text   string
	cache  *fastCache
}

// parsers recycles the scratch space of fastParsers. It is a cache, not
// state: what it holds is never observable.
var parsers = sync.Pool{New: func() any { return new(fastParser) }}

func getParser(data []byte) *fastParser {
	p := parsers.Get().(*fastParser)
	p.data, p.i = data, 0
	return p
}

// maxScratch keeps the scratch space of a rare huge request out of the pool.
const maxScratch = 1 << 12

func putParser(p *fastParser) {
	// A parser that gave up may still hold values on its stacks.
	clear(p.items)
	clear(p.pairs)
	if cap(p.items) > maxScratch || cap(p.pairs) > maxScratch || cap(p.buf) > 16*maxScratch {
		return
	}
	*p = fastParser{items: p.items[:0], pairs: p.pairs[:0], buf: p.buf[:0]}
	parsers.Put(p)
}

// fastCache holds the strings and numbers of a batch, which repeat from one
// check to the next: same subject, same context, same keys. Its size is
// bounded so that a batch of distinct values does not make it grow for
// nothing.
type fastCache struct {
	strs map[string]any // string(s) boxed
	nums map[string]any // float64 boxed, by the number's text
}

const (
	fastCacheEntries = 4096
	fastCacheLen     = 64
)

func newFastCache() *fastCache {
	return &fastCache{strs: make(map[string]any), nums: make(map[string]any)}
}

// str returns string(b) boxed, shared with earlier occurrences.
func (c *fastCache) str(b []byte) any {
	if v, ok := c.strs[string(b)]; ok {
		return v
	}
	s := string(b)
	var v any = s
	if len(b) <= fastCacheLen && len(c.strs) < fastCacheEntries {
		c.strs[s] = v
	}
	return v
}

type fastPair struct {
	key string
	val any
}

// decodeCheckFast decodes a whole body holding one check request.
func decodeCheckFast(data []byte) (*CheckRequest, bool) {
	p := getParser(data)
	defer putParser(p)
	p.shared, p.text = true, string(data)
	req := new(CheckRequest)
	p.space()
	if !p.check(req) {
		return nil, false
	}
	p.space()
	if p.i != len(p.data) {
		return nil, false
	}
	return req, true
}

// decodeBatchFast decodes a whole body holding {"checks": [...]}.
// With withRaw, raw holds each check's JSON, a slice of data.
func decodeBatchFast(data []byte, withRaw bool) (req *BatchCheckRequest, raw [][]byte, ok bool) {
	p := getParser(data)
	defer putParser(p)
	p.cache = newFastCache()
	req = new(BatchCheckRequest)
	p.space()
	if !p.byte('{') {
		return nil, nil, false
	}
	p.space()
	if !p.byte('}') {
		if key, ok := p.key(); !ok || string(key) != "checks" {
			return nil, nil, false
		}
		if !p.byte('[') {
			return nil, nil, false
		}
		checks := []CheckRequest{}
		p.space()
		if !p.byte(']') {
			for {
				p.space()
				start := p.i
				var c CheckRequest
				if len(checks) == MaxBatch || !p.check(&c) {
					return nil, nil, false
				}
				if len(checks) == 0 {
					// Items of a batch tend to look alike: size the slice
					// from the first one rather than growing it.
					checks = make([]CheckRequest, 0, min(MaxBatch, 1+(len(p.data)-p.i)/(p.i-start+1)))
					if withRaw {
						raw = make([][]byte, 0, cap(checks))
					}
				}
				checks = append(checks, c)
				if withRaw {
					raw = append(raw, data[start:p.i:p.i])
				}
				p.space()
				if p.byte(',') {
					continue
				}
				if p.byte(']') {
					break
				}
				return nil, nil, false
			}
		}
		req.Checks = checks
		p.space()
		if !p.byte('}') {
			return nil, nil, false
		}
	}
	p.space()
	if p.i != len(p.data) {
		return nil, nil, false
	}
	return req, raw, true
}

// The fields of a check request, to find one given twice.
const (
	fieldSubject = 1 << iota
	fieldAction
	fieldResource
	fieldContext
	fieldMinRevision
	fieldExplain
)

// check parses a check request object and enforces its limits.
func (p *fastParser) check(req *CheckRequest) bool {
	start := p.i
	if !p.byte('{') {
		return false
	}
	p.space()
	if !p.byte('}') {
		var seen int
		for {
			key, ok := p.key()
			if !ok {
				return false
			}
			var field int
			switch string(key) {
			case "subject":
				field, ok = fieldSubject, p.entity(&req.Subject)
			case "action":
				field, ok = fieldAction, p.action(&req.Action)
			case "resource":
				field, ok = fieldResource, p.entity(&req.Resource)
			case "context":
				field = fieldContext
				req.Context, ok = p.properties()
			case "min_revision":
				field = fieldMinRevision
				req.MinRevision, ok = p.uint()
			case "explain":
				field = fieldExplain
				req.Explain, ok = p.bool()
			default:
				return false
			}
			if !ok || seen&field != 0 {
				return false
			}
			seen |= field
			if !p.next() {
				if !p.byte('}') {
					return false
				}
				break
			}
		}
	}
	n := len(req.Action.Name)
	return n > 0 && n <= MaxActionNameLen && p.i-start <= MaxCheckRequestSize
}

// Fields of an entity and of an action.
const (
	fieldType = 1 << iota
	fieldID
	fieldName
	fieldProperties
)

func (p *fastParser) entity(e *Entity) bool {
	return p.fields(func(key []byte) (int, bool) {
		var ok bool
		switch string(key) {
		case "type":
			e.Type, ok = p.str()
			return fieldType, ok
		case "id":
			e.ID, ok = p.str()
			return fieldID, ok
		case "properties":
			e.Properties, ok = p.properties()
			return fieldProperties, ok
		}
		return 0, false
	})
}

func (p *fastParser) action(a *Action) bool {
	return p.fields(func(key []byte) (int, bool) {
		var ok bool
		switch string(key) {
		case "name":
			a.Name, ok = p.str()
			return fieldName, ok
		case "properties":
			a.Properties, ok = p.properties()
			return fieldProperties, ok
		}
		return 0, false
	})
}

// fields parses an object whose values field parses, each at most once.
func (p *fastParser) fields(field func(key []byte) (int, bool)) bool {
	if !p.byte('{') {
		return false
	}
	p.space()
	if p.byte('}') {
		return true
	}
	var seen int
	for {
		key, ok := p.key()
		if !ok {
			return false
		}
		f, ok := field(key)
		if !ok || seen&f != 0 {
			return false
		}
		seen |= f
		if !p.next() {
			return p.byte('}')
		}
	}
}

// key parses the name of a struct field, without escapes, and the colon
// after it. The result aliases data: callers compare it with the names they
// know (a switch on string(key) does not allocate).
func (p *fastParser) key() ([]byte, bool) {
	p.space()
	if !p.byte('"') {
		return nil, false
	}
	start := p.i
	for p.i < len(p.data) {
		c := p.data[p.i]
		if c == '"' {
			key := p.data[start:p.i]
			p.i++
			p.space()
			if !p.byte(':') {
				return nil, false
			}
			p.space()
			return key, true
		}
		if c == '\\' || c < ' ' || c >= utf8.RuneSelf {
			return nil, false
		}
		p.i++
	}
	return nil, false
}

// next consumes the comma between two members, reporting whether there was
// one.
func (p *fastParser) next() bool {
	p.space()
	if p.byte(',') {
		p.space()
		return true
	}
	return false
}

// properties parses a map[string]any field: an object (null is left to the
// slow path, which leaves the field unset).
func (p *fastParser) properties() (map[string]any, bool) {
	if p.i >= len(p.data) || p.data[p.i] != '{' {
		return nil, false
	}
	return p.object(1)
}

// object parses an object at depth (the depth checkValue gives it).
func (p *fastParser) object(depth int) (map[string]any, bool) {
	if depth > MaxNestingDepth || !p.byte('{') {
		return nil, false
	}
	mark := len(p.pairs)
	p.space()
	if !p.byte('}') {
		for {
			if p.i >= len(p.data) || p.data[p.i] != '"' {
				return nil, false
			}
			k, ok := p.str()
			if !ok {
				return nil, false
			}
			p.space()
			if !p.byte(':') {
				return nil, false
			}
			p.space()
			v, ok := p.value(depth + 1)
			if !ok || len(p.pairs)-mark == MaxCollectionLen {
				return nil, false
			}
			p.pairs = append(p.pairs, fastPair{k, v})
			if !p.next() {
				if !p.byte('}') {
					return nil, false
				}
				break
			}
		}
	}
	pairs := p.pairs[mark:]
	m := make(map[string]any, len(pairs))
	for i := range pairs {
		// A key given twice keeps its last value, as in encoding/json.
		m[pairs[i].key] = pairs[i].val
		pairs[i] = fastPair{}
	}
	p.pairs = p.pairs[:mark]
	return m, true
}

func (p *fastParser) array(depth int) ([]any, bool) {
	if depth > MaxNestingDepth || !p.byte('[') {
		return nil, false
	}
	mark := len(p.items)
	p.space()
	if !p.byte(']') {
		for {
			v, ok := p.value(depth + 1)
			if !ok || len(p.items)-mark == MaxCollectionLen {
				return nil, false
			}
			p.items = append(p.items, v)
			if !p.next() {
				if !p.byte(']') {
					return nil, false
				}
				break
			}
		}
	}
	a := make([]any, len(p.items)-mark)
	copy(a, p.items[mark:])
	clear(p.items[mark:])
	p.items = p.items[:mark]
	return a, true
}

// value parses any JSON value as encoding/json does into an interface.
func (p *fastParser) value(depth int) (any, bool) {
	if depth > MaxNestingDepth || p.i >= len(p.data) {
		return nil, false
	}
	switch c := p.data[p.i]; c {
	case '{':
		return p.object(depth)
	case '[':
		a, ok := p.array(depth)
		if ok && len(a) == 0 {
			return emptyArray, true
		}
		return a, ok
	case '"':
		return p.strValue()
	case 't', 'f':
		return p.bool()
	case 'n':
		if p.literal("null") {
			return nil, true
		}
		return nil, false
	default:
		start := p.i
		f, ok := p.number()
		if !ok {
			return nil, false
		}
		if v, ok := smallNumber(f); ok {
			return v, true
		}
		if p.cache == nil {
			return f, true
		}
		num := p.data[start:p.i]
		if v, ok := p.cache.nums[string(num)]; ok {
			return v, true
		}
		var v any = f
		if len(num) <= fastCacheLen && len(p.cache.nums) < fastCacheEntries {
			p.cache.nums[string(num)] = v
		}
		return v, true
	}
}

func (p *fastParser) bool() (bool, bool) {
	if p.literal("true") {
		return true, true
	}
	if p.literal("false") {
		return false, true
	}
	return false, false
}

func (p *fastParser) literal(s string) bool {
	if len(p.data)-p.i >= len(s) && string(p.data[p.i:p.i+len(s)]) == s {
		p.i += len(s)
		return true
	}
	return false
}

// number parses a JSON number into a float64 as encoding/json does, giving
// up where encoding/json fails (out of range).
func (p *fastParser) number() (float64, bool) {
	start := p.i
	neg := p.byte('-')
	digits := p.i
	var n uint64
	switch {
	case p.i >= len(p.data):
		return 0, false
	case p.data[p.i] == '0':
		p.i++
	case '1' <= p.data[p.i] && p.data[p.i] <= '9':
		for p.i < len(p.data) && '0' <= p.data[p.i] && p.data[p.i] <= '9' {
			n = n*10 + uint64(p.data[p.i]-'0')
			p.i++
		}
	default:
		return 0, false
	}
	integer := true
	if p.byte('.') {
		integer = false
		if !p.digits() {
			return 0, false
		}
	}
	if p.i < len(p.data) && (p.data[p.i] == 'e' || p.data[p.i] == 'E') {
		integer = false
		p.i++
		if p.i < len(p.data) && (p.data[p.i] == '+' || p.data[p.i] == '-') {
			p.i++
		}
		if !p.digits() {
			return 0, false
		}
	}
	if integer && p.i-digits <= 15 {
		// Exact: below 2^53, as ParseFloat would give it.
		f := float64(n)
		if neg {
			f = -f
		}
		return f, true
	}
	f, err := strconv.ParseFloat(string(p.data[start:p.i]), 64)
	return f, err == nil
}

// digits consumes one or more decimal digits.
func (p *fastParser) digits() bool {
	start := p.i
	for p.i < len(p.data) && '0' <= p.data[p.i] && p.data[p.i] <= '9' {
		p.i++
	}
	return p.i > start
}

// uint parses a whole number into a uint64 as encoding/json does, giving up
// on a sign, a fraction, an exponent and overflow (all errors there).
func (p *fastParser) uint() (uint64, bool) {
	if p.i >= len(p.data) {
		return 0, false
	}
	if p.data[p.i] == '0' {
		p.i++
		return 0, true
	}
	start := p.i
	var n uint64
	for p.i < len(p.data) && '0' <= p.data[p.i] && p.data[p.i] <= '9' {
		d := uint64(p.data[p.i] - '0')
		if n > (1<<64-1-d)/10 {
			return 0, false
		}
		n = n*10 + d
		p.i++
	}
	return n, p.i > start
}

// scan scans a string from its opening quote. It returns where its content
// starts and, for a string without escapes, leaves p.i after the closing
// quote; for a string with escapes (esc), at the first backslash.
func (p *fastParser) scan() (start int, esc, ok bool) {
	if !p.byte('"') {
		return 0, false, false
	}
	start = p.i
	ascii := true
	for p.i < len(p.data) {
		switch c := p.data[p.i]; {
		case c == '"':
			if !ascii && !utf8.Valid(p.data[start:p.i]) {
				return 0, false, false
			}
			p.i++
			return start, false, true
		case c == '\\':
			return start, true, true
		case c < ' ':
			return 0, false, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
		p.i++
	}
	return 0, false, false
}

// str parses a string, as encoding/json unquotes it when it is valid UTF-8
// and has no escaped surrogate.
func (p *fastParser) str() (string, bool) {
	start, esc, ok := p.scan()
	switch {
	case !ok:
		return "", false
	case esc:
		return p.unescape(start)
	case p.shared:
		return p.text[start : p.i-1], true
	case p.cache != nil:
		return p.cache.str(p.data[start : p.i-1]).(string), true
	}
	return string(p.data[start : p.i-1]), true
}

// strValue is str for a value of a map or an array.
func (p *fastParser) strValue() (any, bool) {
	start, esc, ok := p.scan()
	switch {
	case !ok:
		return nil, false
	case esc:
		return p.unescape(start)
	case p.shared:
		return boxString(p.text[start : p.i-1]), true
	case p.cache != nil:
		return p.cache.str(p.data[start : p.i-1]), true
	}
	return string(p.data[start : p.i-1]), true
}

// unescape finishes a string with escapes, from its first escape at p.i.
func (p *fastParser) unescape(start int) (string, bool) {
	b := append(p.buf[:0], p.data[start:p.i]...)
	for p.i < len(p.data) {
		c := p.data[p.i]
		switch {
		case c == '"':
			p.i++
			p.buf = b
			if !utf8.Valid(b) {
				return "", false
			}
			return string(b), true
		case c < ' ':
			return "", false
		case c != '\\':
			b = append(b, c)
			p.i++
			continue
		}
		if p.i+1 >= len(p.data) {
			return "", false
		}
		switch e := p.data[p.i+1]; e {
		case '"', '\\', '/':
			b = append(b, e)
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			r := hex4(p.data[p.i+2:])
			if r < 0 || 0xD800 <= r && r < 0xE000 {
				return "", false
			}
			b = utf8.AppendRune(b, r)
			p.i += 4
		default:
			return "", false
		}
		p.i += 2
	}
	return "", false
}

// hex4 decodes the four hex digits of a \u escape, or returns -1.
func hex4(b []byte) rune {
	if len(b) < 4 {
		return -1
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}

// byte consumes c if it is next.
func (p *fastParser) byte(c byte) bool {
	if p.i < len(p.data) && p.data[p.i] == c {
		p.i++
		return true
	}
	return false
}

// space skips JSON white space.
func (p *fastParser) space() {
	for p.i < len(p.data) {
		switch p.data[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}
