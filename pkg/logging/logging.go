// Package logging builds scangate's zerolog logger from config.
package logging

import (
	"io"
	"time"

	"github.com/rs/zerolog"

	"github.com/scangate/scangate/pkg/config"
)

// zerolog's time format is a package global: set once, not by every New
// (nodes start concurrently in one process).
func init() { zerolog.TimeFieldFormat = time.RFC3339Nano }

// New returns a logger writing JSON lines (or console text) to w at the
// configured level. Lines about a file carry "data_id"; lines from a role
// carry "role".
func New(c config.LogConfig, w io.Writer) zerolog.Logger {
	level, err := zerolog.ParseLevel(c.Level)
	if err != nil {
		level = zerolog.InfoLevel
	}
	if c.Format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339}
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger()
}
