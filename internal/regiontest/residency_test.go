package regiontest

import (
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func gzipped(t *testing.T, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestScanResidency(t *testing.T) {
	dir := t.TempDir()
	other := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.log"), []byte("x tenant-eu-7 y tenant-eu-7"))
	writeFile(t, filepath.Join(dir, "sub", "b.db"), []byte("\x00\x01secret-record\x00"))
	// A snapshot compressed: the marker is not in its raw bytes.
	snap := gzipped(t, append(bytes.Repeat([]byte("padding "), 1000), "tenant-eu-7"...))
	if bytes.Contains(snap, []byte("tenant-eu-7")) {
		t.Fatal("the marker survived compression: the test shows nothing")
	}
	writeFile(t, filepath.Join(dir, "snapshots", "1-2-3", "state.bin"), snap)
	// Larger than one chunk, the marker across the chunk boundary.
	big := bytes.Repeat([]byte{'.'}, 2*scanChunk)
	copy(big[scanChunk-5:], "secret-record")
	writeFile(t, filepath.Join(other, "big"), big)
	writeFile(t, filepath.Join(other, "clean"), []byte("nothing to see"))

	got, err := ScanResidency([]string{dir, other}, []string{"tenant-eu-7", "secret-record"})
	if err != nil {
		t.Fatal(err)
	}
	want := []Finding{
		{filepath.Join(dir, "a.log"), "tenant-eu-7", 2},
		{filepath.Join(dir, "a.log"), "tenant-eu-7", 16},
		{filepath.Join(dir, "snapshots", "1-2-3", "state.bin") + GunzippedSuffix, "tenant-eu-7", 8000},
		{filepath.Join(dir, "sub", "b.db"), "secret-record", 2},
		{filepath.Join(other, "big"), "secret-record", scanChunk - 5},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got\n%v\nwant\n%v", got, want)
	}
}

func TestScanResidencyClean(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a"), []byte("tenant-us-1 data"))
	writeFile(t, filepath.Join(dir, "s", "snap.gz"), gzipped(t, []byte("tenant-us-1 snapshot")))
	if err := os.Symlink(filepath.Join(dir, "a"), filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	got, err := ScanResidency([]string{dir}, []string{"tenant-eu-7"})
	if err != nil || len(got) != 0 {
		t.Fatalf("got %v, %v; want no findings", got, err)
	}
}

func TestScanResidencyErrors(t *testing.T) {
	dir := t.TempDir()
	// A gzip stream cut short, as a snapshot still being written.
	z := gzipped(t, bytes.Repeat([]byte("tenant-eu-7 "), 10000))
	writeFile(t, filepath.Join(dir, "torn.gz"), z[:len(z)/2])
	writeFile(t, filepath.Join(dir, "plain"), []byte("tenant-eu-7"))

	got, err := ScanResidency([]string{dir, filepath.Join(dir, "missing")}, []string{"tenant-eu-7"})
	if err == nil {
		t.Fatal("a torn gzip stream and a missing root scanned without error")
	}
	for _, want := range []string{"torn.gz", "missing"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s: %v", want, err)
		}
	}
	// What could be read is still reported.
	if !slices.ContainsFunc(got, func(f Finding) bool { return f.Path == filepath.Join(dir, "plain") }) {
		t.Fatalf("findings %v lack the plain file's", got)
	}
	if _, err := ScanResidency([]string{dir}, nil); err == nil {
		t.Fatal("no markers accepted")
	}
	if _, err := ScanResidency([]string{dir}, []string{"x", ""}); err == nil {
		t.Fatal("an empty marker accepted")
	}
}

// TestScanStreamBoundaries puts markers at every position across chunk
// boundaries of small chunks, overlapping each other and at the ends.
func TestScanStreamBoundaries(t *testing.T) {
	markers := []string{"abcab", "ca", "b"}
	for chunk := 1; chunk <= 9; chunk++ {
		for _, text := range []string{"", "abcabcab", "xxabcabyyca", "cab", "abcababcab", strings.Repeat("ab", 13) + "c"} {
			got, err := scanStream(strings.NewReader(text), "p", markers, chunk)
			if err != nil {
				t.Fatal(err)
			}
			var want []Finding
			for i, m := range markers {
				for at := 0; at+len(m) <= len(text); at++ {
					if text[at:at+len(m)] == m {
						want = append(want, Finding{"p", markers[i], int64(at)})
					}
				}
			}
			sortFindings(got)
			sortFindings(want)
			if !slices.Equal(got, want) {
				t.Errorf("chunk %d, %q: got %v, want %v", chunk, text, got, want)
			}
		}
	}
}

func sortFindings(fs []Finding) {
	slices.SortFunc(fs, func(a, b Finding) int {
		if a.Marker != b.Marker {
			return strings.Compare(a.Marker, b.Marker)
		}
		return int(a.Offset - b.Offset)
	})
}
