package policy

import (
	"regexp"
	"strconv"
	"strings"
)

var yamlLine = regexp.MustCompile(`^yaml: (?:line (\d+): )?`)

// yamlErrPos extracts the line a YAML syntax error names.
func yamlErrPos(file string, err error) Pos {
	m := yamlLine.FindStringSubmatch(err.Error())
	if len(m) == 2 && m[1] != "" {
		line, _ := strconv.Atoi(m[1])
		return Pos{File: file, Line: line}
	}
	return Pos{File: file}
}

// yamlErrMsg drops the "yaml: line N:" prefix that the position already says.
func yamlErrMsg(err error) string {
	s := err.Error()
	if loc := yamlLine.FindStringIndex(s); loc != nil {
		s = s[loc[1]:]
	}
	return strings.TrimSpace(s)
}
