package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
)

// defaultTokenFile is where `aibos serve` with no flags writes the root
// token of a new cluster, relative to the directory it runs in.
const defaultTokenFile = "data/root-token"

// credential is the operator token a command sends, from the first of:
// --token-file, $AIBOS_TOKEN, ./data/root-token (so that the quick start
// works in the directory `aibos serve` runs in). None at all is "": the
// server then says what is missing.
func credential(fs *flag.FlagSet) (string, error) {
	if f := fs.Lookup("token-file"); f != nil && f.Value.String() != "" {
		tok, err := readTokenFile(f.Value.String())
		if err != nil {
			return "", fmt.Errorf("--token-file: %w", err)
		}
		return tok, nil
	}
	if tok := strings.TrimSpace(os.Getenv("AIBOS_TOKEN")); tok != "" {
		return tok, nil
	}
	tok, err := readTokenFile(defaultTokenFile)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	return tok, err
}

// readTokenFile reads a token: the file's first line, trimmed.
func readTokenFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	tok := strings.TrimSpace(line)
	if tok == "" {
		return "", fmt.Errorf("%s holds no token", path)
	}
	return tok, nil
}
