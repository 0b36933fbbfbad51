package config

import (
	"fmt"
	"path/filepath"
	"time"
)

// SourcesConfig is where POST /file may take a file from besides its body:
// a path on the server's disk (header filepath) or a URL scangate fetches
// (header downloadfrom). Both are off unless configured: each lets a client
// make scangate read something the client could not send itself.
type SourcesConfig struct {
	FilePath     FilePathConfig     `yaml:"filepath"`
	DownloadFrom DownloadFromConfig `yaml:"downloadfrom"`
}

// FilePathConfig governs the filepath header.
type FilePathConfig struct {
	// AllowedDirs are the directories whose regular files may be scanned in
	// place. Symbolic links, "..", devices and anything outside them are
	// refused. Empty: filepath is refused.
	AllowedDirs []string `yaml:"allowed_dirs"`
}

// DownloadFromConfig governs the downloadfrom header. The scanner that takes
// the file fetches it, so scanner nodes need the same settings as ingest.
type DownloadFromConfig struct {
	Enabled bool `yaml:"enabled"`
	// AllowPrivateTargets lets URLs reach loopback, private and link-local
	// addresses, like webhooks.allow_private_targets.
	AllowPrivateTargets bool `yaml:"allow_private_targets"`
	// MaxSize caps a download when its workflow's max_file_size is 0
	// (unlimited): a URL can name an endless stream.
	MaxSize ByteSize `yaml:"max_size"`
	// ConnectTimeout bounds establishing each connection (TCP and TLS).
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// Timeout bounds a whole download, redirects and body included, so a
	// slow or stalled server holds a scan slot for at most this long.
	Timeout time.Duration `yaml:"timeout"`
	// MaxRedirects is how many redirects are followed, each checked like
	// the first URL.
	MaxRedirects int `yaml:"max_redirects"`
	// MaxConcurrent bounds the downloads one scanner process runs at once.
	MaxConcurrent int `yaml:"max_concurrent"`
}

// Limit is the most bytes a download for a workflow with maxFileSize may
// bring: the workflow's limit when it has one, else MaxSize.
func (d DownloadFromConfig) Limit(maxFileSize ByteSize) int64 {
	if maxFileSize > 0 {
		return int64(maxFileSize)
	}
	return int64(d.MaxSize)
}

// validate checks the sources and cleans the allowed directories (so that
// a trailing slash or a doubled one does not change which paths match).
func (s *SourcesConfig) validate() []error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	for i, d := range s.FilePath.AllowedDirs {
		switch {
		case d == "" || !filepath.IsAbs(d):
			bad("sources.filepath.allowed_dirs[%d]: want an absolute path, got %q", i, d)
		case filepath.Clean(d) == "/":
			bad("sources.filepath.allowed_dirs[%d]: %q would expose the whole file system; name the directories to scan", i, d)
		default:
			s.FilePath.AllowedDirs[i] = filepath.Clean(d)
		}
	}
	dl := s.DownloadFrom
	if dl.MaxSize < 1 {
		bad("sources.downloadfrom.max_size: must be at least 1 byte")
	}
	if dl.ConnectTimeout <= 0 || dl.Timeout <= 0 {
		bad("sources.downloadfrom: connect_timeout and timeout must be positive")
	}
	if dl.MaxRedirects < 0 || dl.MaxRedirects > 20 {
		bad("sources.downloadfrom.max_redirects: want 0..20, got %d", dl.MaxRedirects)
	}
	if dl.MaxConcurrent < 1 {
		bad("sources.downloadfrom.max_concurrent: must be at least 1")
	}
	return errs
}
