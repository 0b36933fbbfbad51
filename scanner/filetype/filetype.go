// Package filetype identifies a file from its first bytes: MIME type, a
// human description and the usual extension, as file_info reports them.
package filetype

import (
	"strings"

	"github.com/gabriel-vasile/mimetype"
)

// HeadSize is how many leading bytes Detect looks at.
const HeadSize = 3072

func init() { mimetype.SetLimit(HeadSize) }

// Type is a detected file type.
type Type struct {
	MIME        string // "application/pdf"
	Description string // "Adobe Portable Document Format"
	Extension   string // "pdf", without the dot; "" when the type has none
}

// Detect identifies the file whose first bytes are head (HeadSize is enough).
func Detect(head []byte) Type {
	m := mimetype.Detect(head)
	mime, _, _ := strings.Cut(m.String(), ";")
	return Type{MIME: mime, Description: describe(m), Extension: strings.TrimPrefix(m.Extension(), ".")}
}

// describe names a type the way MetaDefender's file_type_description does,
// falling back to the nearest described parent type (a docx is a zip).
func describe(m *mimetype.MIME) string {
	for t := m; t != nil; t = t.Parent() {
		mime, _, _ := strings.Cut(t.String(), ";")
		if d, ok := descriptions[mime]; ok {
			return d
		}
	}
	return "Unknown"
}

var descriptions = map[string]string{
	"application/octet-stream":     "Binary data",
	"text/plain":                   "ASCII text",
	"text/html":                    "HTML document",
	"text/xml":                     "XML document",
	"application/xml":              "XML document",
	"application/json":             "JSON data",
	"text/csv":                     "Comma-separated values",
	"text/rtf":                     "Rich Text Format document",
	"image/svg+xml":                "Scalable Vector Graphics image",
	"application/pdf":              "Adobe Portable Document Format",
	"image/jpeg":                   "JPEG image",
	"image/png":                    "Portable Network Graphics image",
	"image/gif":                    "Graphics Interchange Format image",
	"image/bmp":                    "Windows bitmap image",
	"image/tiff":                   "Tagged Image File Format",
	"image/webp":                   "WebP image",
	"application/zip":              "ZIP compressed archive",
	"application/gzip":             "gzip compressed data",
	"application/x-tar":            "POSIX tar archive",
	"application/x-bzip2":          "bzip2 compressed data",
	"application/x-xz":             "XZ compressed data",
	"application/zstd":             "Zstandard compressed data",
	"application/x-7z-compressed":  "7-Zip archive",
	"application/x-rar-compressed": "RAR archive",
	"application/vnd.rar":          "RAR archive",
	"application/x-msdownload":     "Windows executable (PE)",
	"application/vnd.microsoft.portable-executable": "Windows executable (PE)",
	"application/x-elf":                             "ELF executable",
	"application/x-executable":                      "ELF executable",
	"application/x-sharedlib":                       "ELF shared object",
	"application/x-mach-binary":                     "Mach-O executable",
	"application/x-ole-storage":                     "Microsoft OLE2 compound document",
	"application/msword":                            "Microsoft Word document",
	"application/vnd.ms-excel":                      "Microsoft Excel spreadsheet",
	"application/vnd.ms-powerpoint":                 "Microsoft PowerPoint presentation",
	"application/vnd.openxmlformats-officedocument.wordprocessingml.document":   "Microsoft Word Open XML document",
	"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet":         "Microsoft Excel Open XML spreadsheet",
	"application/vnd.openxmlformats-officedocument.presentationml.presentation": "Microsoft PowerPoint Open XML presentation",
	"application/x-shockwave-flash":                                             "Adobe Flash file",
	"application/java-archive":                                                  "Java archive",
	"application/x-sh":                                                          "Shell script",
	"text/x-shellscript":                                                        "Shell script",
	"text/javascript":                                                           "JavaScript source",
	"application/javascript":                                                    "JavaScript source",
	"text/x-python":                                                             "Python script",
	"audio/mpeg":                                                                "MPEG audio",
	"video/mp4":                                                                 "MPEG-4 video",
}
