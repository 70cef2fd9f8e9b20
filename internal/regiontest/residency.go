package regiontest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// GunzippedSuffix ends the Path of a Finding in the decompressed content
// of a gzip file.
const GunzippedSuffix = " (gunzipped)"

// scanChunk is how much of a file is held at once, besides the overlap
// with the chunk before it.
const scanChunk = 1 << 20

// Finding is one occurrence of a marker in a file.
type Finding struct {
	// Path is the file's; for a gzip file's decompressed content it ends
	// with GunzippedSuffix.
	Path   string
	Marker string
	// Offset is where the marker starts, in bytes from the start of the
	// file (of the decompressed content, for a gunzipped Finding).
	Offset int64
}

func (f Finding) String() string {
	return fmt.Sprintf("%s: %q at offset %d", f.Path, f.Marker, f.Offset)
}

// ScanResidency reports every occurrence of every marker in every regular
// file under roots, sorted by path and offset. A file that starts as a
// gzip stream (as hashicorp/raft's snapshots and the kernel's do) is also
// scanned decompressed, since a marker compressed away would go unseen.
// Files are read in chunks, so a file of any size is scanned in constant
// memory. A file that cannot be read, or a gzip stream that cannot be
// decompressed, is an error naming it, returned with the findings of
// everything else: a residency check must not pass over what it could not
// read.
func ScanResidency(roots []string, markers []string) ([]Finding, error) {
	if len(markers) == 0 {
		return nil, errors.New("regiontest: scan residency: no markers: give the strings that must not appear (tenant ids, record contents)")
	}
	for i, m := range markers {
		if m == "" {
			return nil, fmt.Errorf("regiontest: scan residency: marker %d is empty: every file would match it", i)
		}
	}
	var found []Finding
	var errs []error
	for _, root := range roots {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				errs = append(errs, fmt.Errorf("regiontest: scan residency: %w", err))
				return nil
			}
			if !d.Type().IsRegular() {
				return nil
			}
			in, err := scanFile(path, markers, scanChunk)
			found = append(found, in...)
			if err != nil {
				errs = append(errs, err)
			}
			return nil
		})
		if err != nil {
			errs = append(errs, err)
		}
	}
	slices.SortFunc(found, func(a, b Finding) int {
		if c := strings.Compare(a.Path, b.Path); c != 0 {
			return c
		}
		if a.Offset != b.Offset {
			return int(min(max(a.Offset-b.Offset, -1), 1))
		}
		return strings.Compare(a.Marker, b.Marker)
	})
	return found, errors.Join(errs...)
}

// scanFile scans one file, and its decompressed content if it is gzip.
func scanFile(path string, markers []string, chunk int) ([]Finding, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("regiontest: scan residency: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, chunk)
	// gzip's magic, and deflate, the only method gzip defines: the two
	// bytes alone would take many binary files for gzip.
	head, _ := br.Peek(3)
	isGzip := bytes.Equal(head, []byte{0x1f, 0x8b, 0x08})
	found, err := scanStream(br, path, markers, chunk)
	if err != nil {
		return found, fmt.Errorf("regiontest: scan residency: read %s: %w", path, err)
	}
	if !isGzip {
		return found, nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return found, fmt.Errorf("regiontest: scan residency: rewind %s: %w", path, err)
	}
	zr, err := gzip.NewReader(bufio.NewReaderSize(f, chunk))
	if err != nil {
		return found, fmt.Errorf("regiontest: scan residency: %s starts like gzip but is not: %w", path, err)
	}
	defer zr.Close()
	more, err := scanStream(zr, path+GunzippedSuffix, markers, chunk)
	found = append(found, more...)
	if err != nil {
		return found, fmt.Errorf("regiontest: scan residency: decompress %s (a truncated or corrupt gzip stream: was it still being written?): %w", path, err)
	}
	return found, nil
}

// scanStream reports the markers in r, read chunk bytes at a time. Each
// window is the chunk with the last len(longest marker)-1 bytes before it,
// so a marker split between two chunks is in one window; a match is
// reported in the first window it ends in, so none is reported twice.
func scanStream(r io.Reader, path string, markers []string, chunk int) ([]Finding, error) {
	overlap := 0
	pats := make([][]byte, len(markers))
	for i, m := range markers {
		pats[i] = []byte(m)
		overlap = max(overlap, len(m)-1)
	}
	buf := make([]byte, overlap+chunk)
	var found []Finding
	var start int64 // offset in r of buf[0]
	kept := 0       // bytes of buf carried over from the window before
	for {
		n, err := fill(r, buf[kept:kept+chunk])
		win := buf[:kept+n]
		if n > 0 {
			for i, pat := range pats {
				for at := 0; ; {
					j := bytes.Index(win[at:], pat)
					if j < 0 {
						break
					}
					at += j
					if at+len(pat) > kept {
						found = append(found, Finding{Path: path, Marker: markers[i], Offset: start + int64(at)})
					}
					at++
				}
			}
			carry := min(overlap, len(win))
			copy(buf, win[len(win)-carry:])
			start += int64(len(win) - carry)
			kept = carry
		}
		if err == io.EOF {
			return found, nil
		}
		if err != nil {
			return found, err
		}
	}
}

// fill reads into b until it is full or r ends. Unlike io.ReadFull it
// tells the end of r (io.EOF) from r's own io.ErrUnexpectedEOF, which is
// how a truncated gzip stream fails.
func fill(r io.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		k, err := r.Read(b[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
