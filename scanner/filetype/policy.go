package filetype

import (
	"mime"
	"path"
	"strings"

	"github.com/gabriel-vasile/mimetype"
)

// aliases are extensions that name the same type.
var aliases = map[string]string{"jpeg": "jpg", "jpe": "jpg", "htm": "html", "tif": "tiff", "yml": "yaml", "mpeg": "mpg"}

func canonical(ext string) string {
	ext = strings.ToLower(strings.TrimPrefix(ext, "."))
	if a, ok := aliases[ext]; ok {
		return a
	}
	return ext
}

// Mismatch reports whether a file named name claims, by its extension, a
// type its content contradicts. It only speaks when it is sure: no
// extension, an extension nobody maps to a type, or content it cannot
// identify are never a mismatch, and text content may carry any text
// extension (.csv, .log, .json ...).
func Mismatch(name string, head []byte) bool {
	ext := canonical(path.Ext(name))
	if ext == "" {
		return false
	}
	claimed := mime.TypeByExtension("." + ext)
	if claimed == "" {
		return false
	}
	m := mimetype.Detect(head)
	if m.Is("application/octet-stream") {
		return false
	}
	text := false
	for t := m; t != nil; t = t.Parent() {
		if canonical(t.Extension()) == ext {
			return false
		}
		if t.Is("text/plain") {
			text = true
		}
	}
	if text && (strings.HasPrefix(claimed, "text/") || strings.Contains(claimed, "json") ||
		strings.Contains(claimed, "xml") || strings.Contains(claimed, "javascript")) {
		return false
	}
	return true
}

// Blocked reports whether the content's type (or any type it is a kind of)
// is on a workflow's block list of MIME types and extensions.
func Blocked(head []byte, list []string) bool {
	if len(list) == 0 {
		return false
	}
	for t := mimetype.Detect(head); t != nil; t = t.Parent() {
		mt, _, _ := strings.Cut(t.String(), ";")
		for _, b := range list {
			b = strings.ToLower(strings.TrimSpace(b))
			if b == mt || (b != "" && canonical(b) == canonical(t.Extension())) {
				return true
			}
		}
	}
	return false
}
