package archive

import (
	"compress/bzip2"
	"compress/gzip"
	"fmt"
	"io"
	"strings"
)

// walkStream handles the single-stream compressors: one entry, the
// decompressed stream.
func (w *walker) walkStream(r io.Reader) error {
	var head [DetectLen]byte
	n, _ := io.ReadFull(r, head[:])
	if k, ok := Detect(head[:n]); !ok || k != w.kind {
		if cerr := w.ctx.Err(); cerr != nil {
			return cerr
		}
		return fmt.Errorf("%w: not a %s stream", ErrCorrupt, w.kind)
	}
	r = io.MultiReader(strings.NewReader(string(head[:n])), r)
	name := ""
	var body io.Reader
	switch w.kind {
	case KindGzip:
		zr, err := gzip.NewReader(r)
		if err != nil {
			return fmt.Errorf("%w: gzip: %w", ErrCorrupt, err)
		}
		defer zr.Close()
		name, body = zr.Name, zr
	case KindBzip2:
		body = bzip2.NewReader(r)
	case KindXz:
		xr, err := w.newXz(r)
		if err != nil {
			if cerr := w.ctx.Err(); cerr != nil {
				return cerr
			}
			return fmt.Errorf("xz: %w", classify(err))
		}
		body = xr
	case KindZstd:
		zr, err := newZstd(r, w.opts.MaxDictSize)
		if err != nil {
			return fmt.Errorf("zstd: %w", classify(err))
		}
		defer zr.Close()
		body = zr
	default:
		return fmt.Errorf("%w: archive kind %q", ErrUnsupported, w.kind)
	}
	if name == "" {
		name = StreamEntryName(w.kind, w.opts.Name)
	}
	return w.deliver(Entry{Name: SanitizeName(name), Size: -1}, body)
}

// streamExts maps each compressor to its file extensions; a non-empty value
// replaces the extension (".tgz" -> ".tar").
var streamExts = map[Kind][][2]string{
	KindGzip:  {{".tgz", ".tar"}, {".taz", ".tar"}, {".gz", ""}, {".gzip", ""}, {".z", ""}},
	KindBzip2: {{".tbz2", ".tar"}, {".tbz", ".tar"}, {".tb2", ".tar"}, {".bz2", ""}, {".bz", ""}, {".bzip2", ""}},
	KindXz:    {{".txz", ".tar"}, {".xz", ""}},
	KindZstd:  {{".tzst", ".tar"}, {".tzstd", ".tar"}, {".zst", ""}, {".zstd", ""}},
}

// StreamEntryName is the name Walk gives the only entry of a gzip, bzip2,
// xz or zstd stream that carries no name of its own: the archive's display
// name without the compressor's extension ("a.tar.gz" -> "a.tar",
// "b.tgz" -> "b.tar", "c.xz" -> "c"). A name without such an extension is
// returned unchanged; an empty name gives "data".
func StreamEntryName(kind Kind, archiveName string) string {
	lower := strings.ToLower(archiveName)
	for _, ext := range streamExts[kind] {
		if strings.HasSuffix(lower, ext[0]) && len(archiveName) > len(ext[0]) {
			return archiveName[:len(archiveName)-len(ext[0])] + ext[1]
		}
	}
	if archiveName == "" {
		return "data"
	}
	return archiveName
}
