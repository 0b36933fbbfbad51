// Package configs holds scangate's built-in configuration: the default
// config file, which is also the documentation of every key.
package configs

import _ "embed"

// Default is configs/scangate.yaml, the base every loaded config starts from.
//
//go:embed scangate.yaml
var Default []byte
