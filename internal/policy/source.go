package policy

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/aibos/kernel/api"
)

// IsBundleFile reports whether a file name is a bundle document by its
// extension: .yaml, .yml or .json.
func IsBundleFile(name string) bool {
	switch strings.ToLower(path.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// ReadPath reads a bundle's source from a file or, recursively, from a
// directory (its .yaml, .yml and .json files, in lexical order; names are
// relative to the directory, with '/' separators).
func ReadPath(p string) ([]api.File, error) {
	info, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("read bundle: %w", err)
	}
	if !info.IsDir() {
		data, err := readLimited(p)
		if err != nil {
			return nil, err
		}
		return []api.File{{Name: filepath.Base(p), Data: data}}, nil
	}
	var files []api.File
	err = filepath.WalkDir(p, func(fp string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if fp != p && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		if !IsBundleFile(fp) {
			return nil
		}
		if len(files) >= MaxFiles {
			return fmt.Errorf("read bundle %s: more than %d files", p, MaxFiles)
		}
		data, err := readLimited(fp)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(p, fp)
		files = append(files, api.File{Name: filepath.ToSlash(rel), Data: data})
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("read bundle %s: no .yaml, .yml or .json files in the directory", p)
	}
	return files, nil
}

func readLimited(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("read bundle: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read bundle %s: %w", p, err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("read bundle %s: file larger than %d bytes", p, MaxFileSize)
	}
	return data, nil
}

// ErrNotTar is returned by ReadTar for input that is not a tar archive.
var ErrNotTar = errors.New("not a tar archive")

var errTarTooLarge = fmt.Errorf("read tar: archive larger than %d bytes", MaxBundleSize)

// ReadTar reads a bundle's source from a tar archive of a directory. Only
// regular .yaml, .yml and .json files are taken; names are cleaned and must
// stay inside the archive, and each may appear once. It reads at most
// MaxBundleSize bytes of the archive (headers and skipped entries
// included), and keeps at most MaxBundleSize bytes of files.
func ReadTar(r io.Reader) ([]api.File, error) {
	lr := &io.LimitedReader{R: r, N: MaxBundleSize + 1}
	// over reports whether the archive went past what ReadTar reads, which
	// explains the truncation the tar reader then sees.
	over := func() bool { return lr.N <= 0 }
	tr := tar.NewReader(lr)
	var files []api.File
	seen := map[string]bool{}
	var total int
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			switch {
			case over():
				return nil, errTarTooLarge
			case len(files) == 0:
				return nil, fmt.Errorf("%w: %v", ErrNotTar, err)
			}
			return nil, fmt.Errorf("read tar: %w", err)
		}
		if h.Typeflag != tar.TypeReg || !IsBundleFile(h.Name) {
			continue
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		if name == "." || strings.HasPrefix(name, "../") || path.IsAbs(name) {
			return nil, fmt.Errorf("read tar: file name %q leaves the archive", h.Name)
		}
		if seen[name] {
			return nil, fmt.Errorf("read tar: %s is in the archive more than once", name)
		}
		seen[name] = true
		if h.Size > MaxFileSize {
			return nil, fmt.Errorf("read tar: %s is %d bytes; at most %d are allowed", name, h.Size, MaxFileSize)
		}
		if len(files) >= MaxFiles {
			return nil, fmt.Errorf("read tar: more than %d files", MaxFiles)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			if over() {
				return nil, errTarTooLarge
			}
			return nil, fmt.Errorf("read tar %s: %w", name, err)
		}
		total += len(data)
		if total > MaxBundleSize {
			return nil, fmt.Errorf("read tar: bundle larger than %d bytes", MaxBundleSize)
		}
		files = append(files, api.File{Name: name, Data: data})
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("read tar: no .yaml, .yml or .json files in the archive")
	}
	slices.SortFunc(files, func(a, b api.File) int { return strings.Compare(a.Name, b.Name) })
	return files, nil
}
