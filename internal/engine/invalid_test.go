package engine

import (
	"bufio"
	"cmp"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aibos/kernel/internal/policy"
)

// TestInvalidCorpus prepares every bundle of testdata/invalid (a .yaml file
// or a directory) as a publish would, and compares its errors with the
// golden NAME.errors: one line per error, in order, "file:line:col:
// substring of the message" (lines starting with # are comments).
func TestInvalidCorpus(t *testing.T) {
	entries, err := os.ReadDir("../../testdata/invalid")
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, e := range entries {
		if e.IsDir() || strings.HasSuffix(e.Name(), ".yaml") {
			files = append(files, filepath.Join("../../testdata/invalid", e.Name()))
		}
	}
	if len(files) == 0 {
		t.Fatal("no corpus files in testdata/invalid")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			got := bundleErrors(t, f)
			if !slices.IsSortedFunc(got, compareErrors) {
				t.Errorf("errors are not sorted:\n%s", policy.ErrorList(got).Error())
			}
			want := readGolden(t, strings.TrimSuffix(f, ".yaml")+".errors")
			if len(want) == 0 {
				t.Fatal("the golden file lists no errors")
			}
			if len(got) != len(want) {
				t.Errorf("got %d errors, want %d:\n%s", len(got), len(want), policy.ErrorList(got).Error())
			}
			for i := range min(len(got), len(want)) {
				pos, sub, _ := strings.Cut(want[i], ": ")
				if got[i].Pos.String() != pos || !strings.Contains(got[i].Msg, sub) {
					t.Errorf("error %d:\n\tgot  %s\n\twant %s", i+1, got[i].Error(), want[i])
				}
			}
		})
	}
}

// bundleErrors prepares a bundle that must fail, as a publish does, and
// returns its errors. It checks that nothing is returned along with them,
// by Prepare, Parse or Compile.
func bundleErrors(t *testing.T, path string) []policy.Error {
	t.Helper()
	files, err := policy.ReadPath(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Prepare(files, Options{}, corpusNow)
	if b != nil {
		t.Errorf("Prepare returned a bundle with errors")
	}
	var list policy.ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("want a policy.ErrorList, got %T: %v", err, err)
	}
	if src, err := policy.Parse(files); err != nil {
		if src != nil {
			t.Errorf("Parse returned a bundle with errors")
		}
	} else if cb, err := Compile(src, Options{}); cb != nil || err == nil {
		t.Errorf("Compile of a bad bundle returned %v, %v", cb, err)
	}
	return list
}

func compareErrors(a, b policy.Error) int {
	return cmp.Or(
		strings.Compare(a.Pos.File, b.Pos.File),
		cmp.Compare(a.Pos.Line, b.Pos.Line),
		cmp.Compare(a.Pos.Col, b.Pos.Col),
		strings.Compare(a.Msg, b.Msg),
	)
}

func readGolden(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("golden file: %v", err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	return lines
}
