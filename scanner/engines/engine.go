// Package engines holds scangate's scan engines. An engine either reads the
// file's bytes as they stream past (StreamEngine) or decides from what is
// already known about the file, such as its hashes (HashEngine). The scanner
// runs them all on one read of the file.
package engines

import (
	"context"
	"io"
	"time"

	"github.com/scangate/scangate/pkg/events"
)

// Info describes an engine in results and in GET /stat/engines.
type Info struct {
	ID      string // eng_id, stable
	Name    string // key in scan_details
	Version string // eng_ver
	DefTime string // def_time: when its definitions were made, ISO 8601
	// Loaded is when this process took up the definitions it uses now
	// (download_time): when the files were read, or when clamd was first
	// seen serving its current database.
	Loaded time.Time
}

// Refresher is an engine whose definitions can change under a running
// process (clamd reloads its database); the scanner calls Refresh
// periodically so Info stays current.
type Refresher interface {
	Refresh(ctx context.Context) error
}

// Input is what the scanner knows about a file when it asks an engine.
type Input struct {
	DataID      string
	Size        int64
	DisplayName string
	MIME        string
	Hashes      events.Hashes // complete for HashEngines
}

// Finding is an engine's verdict on one file.
type Finding struct {
	Code   int    // result code (0 No Threat Detected, 1 Infected, ...)
	Threat string // threat name, "" when none
}

// Engine is anything that gives a verdict.
type Engine interface {
	Info() Info
}

// StreamEngine reads the file's bytes from r, from offset 0. It may stop
// reading early once it has its answer; the scanner keeps feeding the others.
type StreamEngine interface {
	Engine
	ScanStream(ctx context.Context, in *Input, r io.Reader) (Finding, error)
}

// HashEngine decides from the file's hashes; it never reads the bytes.
type HashEngine interface {
	Engine
	ScanHashes(ctx context.Context, in *Input) (Finding, error)
}
