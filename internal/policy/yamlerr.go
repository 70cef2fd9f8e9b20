package policy

import (
	"regexp"
	"strconv"
	"strings"
)

var yamlLine = regexp.MustCompile(`^yaml: (?:line (\d+): )?`)

// yamlParserProblems are the problems that yaml.v3's parser (as opposed to
// its scanner) reports. For these, the line in the message is 0-based (the
// scanner's is 1-based), and a missing line means the first line.
var yamlParserProblems = []string{
	"did not find expected ',' or ']'",
	"did not find expected ',' or '}'",
	"did not find expected '-' indicator",
	"did not find expected <document start>",
	"did not find expected <stream-start>",
	"did not find expected key",
	"did not find expected node content",
	"found duplicate %TAG directive",
	"found duplicate %YAML directive",
	"found incompatible YAML document",
	"found undefined tag handle",
}

// yamlErrPos extracts the line a YAML syntax error names: where the
// construct that could not be completed starts.
func yamlErrPos(file string, err error) Pos {
	m := yamlLine.FindStringSubmatch(err.Error())
	if m == nil {
		return Pos{File: file}
	}
	line, _ := strconv.Atoi(m[1]) // 0 when the message has no line
	msg := yamlErrMsg(err)
	for _, p := range yamlParserProblems {
		if msg == p {
			line++
			break
		}
	}
	return Pos{File: file, Line: line}
}

// yamlErrMsg drops the "yaml: line N:" prefix that the position already says.
func yamlErrMsg(err error) string {
	s := err.Error()
	if loc := yamlLine.FindStringIndex(s); loc != nil {
		s = s[loc[1]:]
	}
	return strings.TrimSpace(s)
}
