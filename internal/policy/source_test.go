package policy

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"path"
	"slices"
	"strings"
	"testing"
)

type tarEntry struct {
	name string
	typ  byte
	data string
}

func makeTar(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		h := &tar.Header{Name: e.name, Typeflag: typ, Mode: 0o644}
		if typ == tar.TypeReg {
			h.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			if _, err := tw.Write([]byte(e.data)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

const tarPolicy = "kind: Policy\nname: p\nlayer: tenant\nrules:\n  - {name: r, effect: allow, actions: [\"*\"]}\n"

func TestReadTar(t *testing.T) {
	files, err := ReadTar(bytes.NewReader(makeTar(t,
		tarEntry{name: "./policies/", typ: tar.TypeDir},
		tarEntry{name: "./policies/b.yaml", data: tarPolicy},
		tarEntry{name: "./a.json", data: "{}"},
		tarEntry{name: "README.md", data: "not a bundle file"},
		tarEntry{name: "link.yaml", typ: tar.TypeSymlink},
	)))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, f.Name)
	}
	if !slices.Equal(names, []string{"a.json", "policies/b.yaml"}) || string(files[1].Data) != tarPolicy {
		t.Fatalf("files %q", names)
	}
}

func TestReadTarRefuses(t *testing.T) {
	big := func(size int64) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		if err := tw.WriteHeader(&tar.Header{Name: "big.bin", Typeflag: tar.TypeReg, Size: size, Mode: 0o644}); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes() // the header; its data follows
	}
	tests := []struct {
		name string
		r    io.Reader
		want string
	}{
		{"not a tar", strings.NewReader(strings.Repeat("x", 1024)), "not a tar archive"},
		{"no bundle files", bytes.NewReader(makeTar(t, tarEntry{name: "README.md", data: "hi"})), "no .yaml, .yml or .json files"},
		{"leaves the archive", bytes.NewReader(makeTar(t, tarEntry{name: "a/../../x.yaml", data: tarPolicy})), "leaves the archive"},
		{"absolute", bytes.NewReader(makeTar(t, tarEntry{name: "/etc/x.yaml", data: tarPolicy})), "leaves the archive"},
		{"twice", bytes.NewReader(makeTar(t, tarEntry{name: "a.yaml", data: tarPolicy}, tarEntry{name: "./a.yaml", data: tarPolicy})), "a.yaml is in the archive more than once"},
		{"truncated", bytes.NewReader(makeTar(t, tarEntry{name: "a.yaml", data: tarPolicy})[:540]), "read tar a.yaml: unexpected EOF"},
		// An endless archive: a skipped entry larger than any bundle.
		{"archive too large", io.MultiReader(bytes.NewReader(big(2*MaxBundleSize)), zeros{}), "archive larger than 67108864 bytes"},
	}
	for _, tt := range tests {
		files, err := ReadTar(tt.r)
		if err == nil {
			t.Errorf("%s: ReadTar = %d files, want an error", tt.name, len(files))
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: ReadTar error %q, want %q", tt.name, err, tt.want)
		}
	}
	var h bytes.Buffer
	tw := tar.NewWriter(&h)
	if err := tw.WriteHeader(&tar.Header{Name: "a.yaml", Typeflag: tar.TypeReg, Size: MaxFileSize + 1, Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadTar(io.MultiReader(&h, zeros{})); err == nil || !strings.Contains(err.Error(), "a.yaml is 8388609 bytes; at most 8388608") {
		t.Errorf("a bundle file too large: %v", err)
	}
}

// zeros is an endless reader of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// FuzzReadTar feeds arbitrary bytes to ReadTar, as PUT /v1/policies does
// with a tar body. It must never panic, must read no more than its bound,
// and keeps its promises: files, sorted, unique, named inside the archive
// and within the limits; or a clear error.
func FuzzReadTar(f *testing.F) {
	f.Add(makeTar(f, tarEntry{name: "policy.yaml", data: tarPolicy}))
	f.Add(makeTar(f,
		tarEntry{name: "./policies/", typ: tar.TypeDir},
		tarEntry{name: "./policies/b.yaml", data: tarPolicy},
		tarEntry{name: "./policies/a.yml", data: tarPolicy},
		tarEntry{name: "./c.json", data: `{"kind": "Policy"}`},
		tarEntry{name: "README.md", data: "not a bundle file"},
		tarEntry{name: "link.yaml", typ: tar.TypeSymlink},
	))
	f.Add(makeTar(f, tarEntry{name: "a.yaml", data: tarPolicy}, tarEntry{name: "a.yaml", data: tarPolicy}))
	f.Add(makeTar(f, tarEntry{name: "../x.yaml", data: tarPolicy}))
	f.Add(makeTar(f, tarEntry{name: strings.Repeat("long/", 40) + "name.yaml", data: tarPolicy})) // PAX path
	f.Add(makeTar(f, tarEntry{name: "a.yaml", data: tarPolicy})[:700])
	f.Add([]byte("kind: Policy\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cr := &countingReader{r: bytes.NewReader(data)}
		files, err := ReadTar(cr)
		if cr.n > MaxBundleSize+1 {
			t.Fatalf("ReadTar read %d bytes", cr.n)
		}
		if err != nil {
			if files != nil {
				t.Fatalf("ReadTar returned %d files and error %v", len(files), err)
			}
			if msg := err.Error(); !errors.Is(err, ErrNotTar) && !strings.HasPrefix(msg, "read tar") {
				t.Fatalf("unclear error %q", msg)
			}
			return
		}
		if len(files) == 0 || len(files) > MaxFiles {
			t.Fatalf("ReadTar returned %d files", len(files))
		}
		total := 0
		for i, f := range files {
			if !IsBundleFile(f.Name) || f.Name != path.Clean(f.Name) || path.IsAbs(f.Name) || f.Name == ".." || strings.HasPrefix(f.Name, "../") {
				t.Fatalf("file name %q", f.Name)
			}
			if i > 0 && files[i-1].Name >= f.Name {
				t.Fatalf("files not sorted and unique: %q before %q", files[i-1].Name, f.Name)
			}
			if len(f.Data) > MaxFileSize {
				t.Fatalf("%s is %d bytes", f.Name, len(f.Data))
			}
			total += len(f.Data)
		}
		if total > MaxBundleSize {
			t.Fatalf("files of %d bytes", total)
		}
	})
}
