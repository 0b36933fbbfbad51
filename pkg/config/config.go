// Package config loads scangate's configuration: the built-in defaults
// (configs/scangate.yaml), then an operator's YAML file, then SCANGATE_*
// environment variables, then command-line flags. Each layer overrides the
// one before it; unknown keys and unparsable values stop start-up with a
// message that names the file and line.
package config

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/dustin/go-humanize"
	"go.yaml.in/yaml/v3"

	"github.com/scangate/scangate/configs"
)

// Config is the whole of scangate's configuration. Field tags are the YAML
// keys; environment names are derived from them (see applyEnv).
type Config struct {
	Listen    string          `yaml:"listen"`
	DataDir   string          `yaml:"data_dir"`
	Ops       OpsConfig       `yaml:"ops"`
	Log       LogConfig       `yaml:"log"`
	NATS      NATSConfig      `yaml:"nats"`
	Blob      BlobConfig      `yaml:"blob"`
	Assembler AssemblerConfig `yaml:"assembler"`
	Limits    LimitsConfig    `yaml:"limits"`
	Scanner   ScannerConfig   `yaml:"scanner"`
	Engines   EnginesConfig   `yaml:"engines"`
	Webhooks  WebhooksConfig  `yaml:"webhooks"`
	Retention RetentionConfig `yaml:"retention"`
	Workflows []Workflow      `yaml:"workflows"`
	Debug     DebugConfig     `yaml:"debug"`
	Auth      AuthConfig      `yaml:"auth"`
	Batches   BatchesConfig   `yaml:"batches"`
	Sources   SourcesConfig   `yaml:"sources"`
	Presigned PresignedConfig `yaml:"presigned"`
}

// BatchesConfig is how batch reports are signed. Both paths or neither:
// without them, a key pair is generated into data_dir on first start. A
// deployment with several ingest nodes configures the same pair on every
// node, or each signs with its own.
type BatchesConfig struct {
	SigningKey  string `yaml:"signing_key"` // PEM private key (ECDSA or RSA)
	Certificate string `yaml:"certificate"` // PEM certificate of its public key
}

// AuthConfig is who may use the API and how much.
type AuthConfig struct {
	// Anonymous lets requests without an apikey act as the user
	// "anonymous". A key that is sent must be valid either way.
	Anonymous bool `yaml:"anonymous"`
	// SessionTTL is how long a login session lives after its last use.
	SessionTTL time.Duration `yaml:"session_ttl"`
	// ScanLimit is files per minute per user (0: no limit); a user's own
	// scan_limit overrides it. Anonymous requests share one limit.
	ScanLimit int    `yaml:"scan_limit"`
	Users     []User `yaml:"users"`
}

// User is one account.
type User struct {
	Name string `yaml:"name"`
	Role string `yaml:"role"` // admin | user
	// PasswordHash is a bcrypt hash (scangate passwd); empty: no login,
	// API keys only.
	PasswordHash string   `yaml:"password_hash"`
	APIKeys      []string `yaml:"apikeys"`
	// ScanLimit overrides auth.scan_limit for this user when set; 0 here
	// means unlimited, and leaving it out takes the default.
	ScanLimit *int `yaml:"scan_limit"`
}

// Roles.
const (
	RoleAdmin = "admin"
	RoleUser  = "user"
)

// AnonymousUser is who requests without an apikey act as.
const AnonymousUser = "anonymous"

// MinAPIKeyLength keeps static keys out of guessing range.
const MinAPIKeyLength = 16

// OpsConfig is the operator's address of a process: probes and metrics.
type OpsConfig struct {
	// Listen serves /livez, /readyz and /metrics ("" = off), on every role
	// process; the HTTP API answers them too.
	Listen string `yaml:"listen"`
}

// DebugConfig holds what operators switch on to look inside a live node.
type DebugConfig struct {
	// Pprof is an address for net/http/pprof ("" = off). It has no
	// authentication: bind it to loopback.
	Pprof string `yaml:"pprof"`
}

type LogConfig struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

type NATSConfig struct {
	URL      string `yaml:"url"`
	Listen   string `yaml:"listen"`
	Sync     string `yaml:"sync"`
	Replicas int    `yaml:"replicas"`
}

// SyncInterval is the JetStream fsync interval; zero means fsync every write.
func (n NATSConfig) SyncInterval() (always bool, every time.Duration, err error) {
	if n.Sync == "always" {
		return true, 0, nil
	}
	d, err := time.ParseDuration(n.Sync)
	if err != nil || d <= 0 {
		return false, 0, fmt.Errorf(`nats.sync: want "always" or a positive duration, got %q`, n.Sync)
	}
	return false, d, nil
}

type BlobConfig struct {
	Store string `yaml:"store"`
}

type AssemblerConfig struct {
	Partitions int `yaml:"partitions"`
}

type LimitsConfig struct {
	DiskReserve ByteSize `yaml:"disk_reserve"`
	MaxQueued   int64    `yaml:"max_queued"`
	// MaxQueueWait bounds how long a new file is expected to wait for a
	// scanner; uploads past it are refused (503) before their body is read.
	MaxQueueWait   time.Duration `yaml:"max_queue_wait"`
	MinPartSize    ByteSize      `yaml:"min_part_size"`
	MaxRanges      int           `yaml:"max_ranges"`
	MaxConnections int           `yaml:"max_connections"`
	// MaxConnectionsPerClient caps the open connections of one client
	// address, so no single client holds every connection.
	MaxConnectionsPerClient int `yaml:"max_connections_per_client"`
	// Memory is the Go runtime's soft memory limit for the process (0:
	// none, or GOMEMLIMIT). The garbage collector works harder as the heap
	// nears it instead of letting it grow to twice what is live, which is
	// what bounds RSS under many concurrent uploads.
	Memory ByteSize `yaml:"memory"`
}

type ScannerConfig struct {
	Workers int           `yaml:"workers"`
	Timeout time.Duration `yaml:"timeout"`
	// MemoryBudget is the most memory one decoder of a scan may ask for:
	// an archive's dictionary or window, a decoded image, a PDF. Input
	// that needs more gets a verdict instead of the allocation.
	MemoryBudget ByteSize `yaml:"memory_budget"`
}

// MinMemoryBudget is the smallest scanner.memory_budget accepted: below it
// even the default settings of 7-Zip and xz could not be opened.
const MinMemoryBudget = 16 << 20

type EnginesConfig struct {
	ClamAV     ClamAVConfig     `yaml:"clamav"`
	Signatures SignaturesConfig `yaml:"signatures"`
	HashList   HashListConfig   `yaml:"hashlist"`
}

type ClamAVConfig struct {
	Address         string        `yaml:"address"`
	Timeout         time.Duration `yaml:"timeout"`
	StreamMaxLength ByteSize      `yaml:"stream_max_length"`
}

type SignaturesConfig struct {
	Paths []string `yaml:"paths"`
}

type HashListConfig struct {
	Path string `yaml:"path"`
}

type WebhooksConfig struct {
	AllowPrivateTargets bool          `yaml:"allow_private_targets"`
	Secret              string        `yaml:"secret"`
	MaxAttempts         int           `yaml:"max_attempts"`
	Timeout             time.Duration `yaml:"timeout"`
	Retry               RetryConfig   `yaml:"retry"`
}

type RetryConfig struct {
	InitialInterval time.Duration `yaml:"initial_interval"`
	MaxInterval     time.Duration `yaml:"max_interval"`
}

// Workflow is what the `rule` header names: which engines run and which
// limits apply to a file.
type Workflow struct {
	Name        string          `yaml:"name"`
	Default     bool            `yaml:"default"`
	UserAgents  []string        `yaml:"user_agents"`
	MaxFileSize ByteSize        `yaml:"max_file_size"`
	Engines     []string        `yaml:"engines"`
	Multipart   MultipartConfig `yaml:"multipart"`
	Archive     ArchiveConfig   `yaml:"archive"`
	FileType    FileTypeConfig  `yaml:"filetype"`
	Sanitize    SanitizeConfig  `yaml:"sanitize"`
	Block       []string        `yaml:"block"`
}

type SanitizeConfig struct {
	Enabled bool `yaml:"enabled"`
	// BlockUnsanitized gives verdict 30 (Blocked Verdict by Deep CDR) to a
	// file that could not be sanitized: an unsupported type or a failure.
	BlockUnsanitized bool `yaml:"block_unsanitized"`
}

type ArchiveConfig struct {
	Enabled      bool          `yaml:"enabled"`
	MaxDepth     int           `yaml:"max_depth"`
	MaxSize      ByteSize      `yaml:"max_size"`
	MaxFiles     int           `yaml:"max_files"`
	MaxExpansion float64       `yaml:"max_expansion"`
	Timeout      time.Duration `yaml:"timeout"`
}

type FileTypeConfig struct {
	DetectMismatch bool     `yaml:"detect_mismatch"`
	Block          []string `yaml:"block"`
}

// BlockFamilies are the verdict families a workflow's block list may name.
var BlockFamilies = []string{"infected", "suspicious", "unwanted", "blocklisted", "failed", "encrypted",
	"archive_limits", "mismatch", "filetype", "timeout"}

type MultipartConfig struct {
	Enabled bool          `yaml:"enabled"`
	TTL     time.Duration `yaml:"ttl"`
}

// ByteSize is a size in bytes that YAML and the environment may also give as
// "512MiB", "1GiB" or "10 MB".
type ByteSize int64

func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	var i int64
	if err := n.Decode(&i); err == nil {
		if i < 0 {
			return fmt.Errorf("line %d: size must not be negative", n.Line)
		}
		*b = ByteSize(i)
		return nil
	}
	v, err := humanize.ParseBytes(n.Value)
	if err != nil || v > math.MaxInt64 {
		return fmt.Errorf("line %d: invalid size %q (want bytes or e.g. 512MiB)", n.Line, n.Value)
	}
	*b = ByteSize(v)
	return nil
}

// Load builds the configuration from the built-in defaults and, when path is
// not empty, the YAML file at path, then applies SCANGATE_* environment
// variables. Flags are applied by the caller (see Override) before Validate.
func Load(path string) (*Config, error) {
	var c Config
	if err := decodeStrict(configs.Default, &c); err != nil {
		return nil, fmt.Errorf("built-in defaults: %w", err)
	}
	if path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		// The workflow list replaces the default one as a whole (merging
		// items by position would surprise anyone who reorders them), but
		// each workflow starts from the built-in one's settings, so a
		// workflow that gives only a name still has multipart on with the
		// documented time to live.
		template := c.Workflows[0]
		template.Name, template.Default, template.UserAgents = "", false, nil
		if err := decodeStrict(raw, &c); err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
		if err := applyWorkflowTemplate(raw, template, &c); err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
	}
	if err := applyEnv(reflect.ValueOf(&c).Elem(), "SCANGATE", os.LookupEnv); err != nil {
		return nil, err
	}
	return &c, nil
}

// applyWorkflowTemplate decodes each workflow of the user's file again,
// this time over a copy of template. (Unknown keys were already refused by
// the strict decode.)
func applyWorkflowTemplate(raw []byte, template Workflow, c *Config) error {
	var doc struct {
		Workflows []yaml.Node `yaml:"workflows"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil || doc.Workflows == nil {
		return err
	}
	c.Workflows = make([]Workflow, len(doc.Workflows))
	for i := range doc.Workflows {
		w := template
		w.Engines = append([]string(nil), template.Engines...)
		if err := doc.Workflows[i].Decode(&w); err != nil {
			return err
		}
		c.Workflows[i] = w
	}
	return nil
}

// Default returns the built-in configuration alone — no file, no
// environment — validated.
func Default() *Config {
	var c Config
	if err := decodeStrict(configs.Default, &c); err != nil {
		panic(err) // configs/scangate.yaml is tested; this cannot happen in a release
	}
	if err := c.Validate(); err != nil {
		panic(err)
	}
	return &c
}

func decodeStrict(raw []byte, out any) error {
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	// An empty file is "no settings", not an error.
	if err := dec.Decode(out); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// applyEnv walks the struct and, for every scalar field, looks up
// PREFIX_<YAML_KEY_PATH>; a value is parsed with the same YAML rules as the
// file so "5s", "1GiB" and "true" mean the same in both places. Lists are
// file-only.
func applyEnv(v reflect.Value, prefix string, lookup func(string) (string, bool)) error {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		key := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if key == "" || key == "-" {
			continue
		}
		name := prefix + "_" + strings.ToUpper(key)
		fv := v.Field(i)
		switch {
		case fv.Kind() == reflect.Struct:
			if err := applyEnv(fv, name, lookup); err != nil {
				return err
			}
		case fv.Kind() == reflect.Slice:
			continue
		default:
			s, ok := lookup(name)
			if !ok {
				continue
			}
			node := &yaml.Node{Kind: yaml.ScalarNode, Value: s, Line: 1}
			if fv.Kind() == reflect.String {
				node.Tag = "!!str"
			}
			if err := node.Decode(fv.Addr().Interface()); err != nil {
				return fmt.Errorf("environment %s=%q: %w", name, s, err)
			}
		}
	}
	return nil
}

// Validate checks values that parse but make no sense, and fills in what
// follows from others (the default workflow).
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen: %v", err)
	}
	if c.DataDir == "" {
		bad("data_dir: must not be empty")
	}
	if c.Ops.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Ops.Listen); err != nil {
			bad("ops.listen: %v", err)
		}
	}
	switch c.Log.Level {
	case "trace", "debug", "info", "warn", "error":
	default:
		bad("log.level: unknown level %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "console":
	default:
		bad("log.format: want json or console, got %q", c.Log.Format)
	}
	if _, _, err := c.NATS.SyncInterval(); err != nil {
		bad("%v", err)
	}
	if c.NATS.Replicas < 1 || c.NATS.Replicas > 5 {
		bad("nats.replicas: want 1..5, got %d", c.NATS.Replicas)
	}
	if c.NATS.Listen != "" {
		if _, _, err := net.SplitHostPort(c.NATS.Listen); err != nil {
			bad("nats.listen: %v", err)
		}
	}
	if c.Blob.Store != "fs" && c.Blob.Store != "jetstream" {
		bad("blob.store: unknown store %q (want fs or jetstream)", c.Blob.Store)
	}
	if c.Assembler.Partitions < 1 || c.Assembler.Partitions > 1024 {
		bad("assembler.partitions: want 1..1024, got %d", c.Assembler.Partitions)
	}
	if c.Limits.MaxQueued < 1 {
		bad("limits.max_queued: must be at least 1")
	}
	if c.Limits.MaxQueueWait < 0 {
		bad("limits.max_queue_wait: must not be negative (0 turns it off), got %v", c.Limits.MaxQueueWait)
	} else if c.Limits.MaxQueueWait > 0 && c.Limits.MaxQueueWait < time.Second {
		bad("limits.max_queue_wait: want 0 (off) or at least 1s, got %v", c.Limits.MaxQueueWait)
	}
	if c.Limits.MinPartSize < 1 {
		bad("limits.min_part_size: must be at least 1 byte")
	}
	if c.Limits.MaxRanges < 1 || c.Limits.MaxRanges > 100000 {
		bad("limits.max_ranges: want 1..100000, got %d", c.Limits.MaxRanges)
	}
	if c.Limits.MaxConnections < 1 {
		bad("limits.max_connections: must be at least 1")
	}
	if c.Limits.MaxConnectionsPerClient < 1 {
		bad("limits.max_connections_per_client: must be at least 1")
	}
	errs = append(errs, c.Auth.validate()...)
	if (c.Batches.SigningKey == "") != (c.Batches.Certificate == "") {
		bad("batches: signing_key and certificate go together (both, or neither to generate a pair)")
	}
	errs = append(errs, c.Sources.validate()...)
	if c.Scanner.Workers < 1 {
		bad("scanner.workers: must be at least 1")
	}
	if a := c.Engines.ClamAV.Address; a != "" && !strings.HasPrefix(a, "tcp://") && !strings.HasPrefix(a, "unix://") {
		bad("engines.clamav.address: want tcp://host:port or unix:///path, got %q", a)
	}
	if c.Engines.ClamAV.Timeout <= 0 {
		bad("engines.clamav.timeout: must be positive")
	}
	if c.Scanner.Timeout <= 0 {
		bad("scanner.timeout: must be positive")
	}
	if c.Scanner.MemoryBudget < MinMemoryBudget {
		bad("scanner.memory_budget: want at least 16MiB, got %d bytes", c.Scanner.MemoryBudget)
	}
	if c.Webhooks.Secret != "" {
		if _, err := WebhookKey(c.Webhooks.Secret); err != nil {
			bad("webhooks.secret: %v", err)
		}
	}
	if c.Webhooks.MaxAttempts < 1 {
		bad("webhooks.max_attempts: must be at least 1")
	}
	if c.Webhooks.Timeout <= 0 {
		bad("webhooks.timeout: must be positive")
	}
	r := c.Webhooks.Retry
	if r.InitialInterval <= 0 || r.MaxInterval < r.InitialInterval {
		bad("webhooks.retry: want 0 < initial_interval <= max_interval")
	}

	if len(c.Workflows) == 0 {
		bad("workflows: at least one workflow is required")
	}
	names := map[string]bool{}
	defaults := 0
	for i, w := range c.Workflows {
		switch {
		case strings.TrimSpace(w.Name) == "":
			bad("workflows[%d].name: must not be empty", i)
		case strings.TrimSpace(w.Name) != w.Name:
			bad("workflows[%d].name: %q has leading or trailing spaces", i, w.Name)
		case strings.Contains(w.Name, ","):
			bad("workflows[%d].name: %q must not contain a comma (the rule header lists names with commas)", i, w.Name)
		case names[w.Name]:
			bad("workflows[%d].name: %q is used twice", i, w.Name)
		}
		names[w.Name] = true
		if w.Default {
			defaults++
		}
		if w.Multipart.Enabled && w.Multipart.TTL <= 0 {
			bad("workflows[%d].multipart.ttl: must be positive", i)
		}
		for _, e := range w.Engines {
			if !slices.Contains(EngineNames, e) {
				bad("workflows[%d].engines: unknown engine %q (want one of %v)", i, e, EngineNames)
			}
		}
		for _, f := range w.Block {
			if !slices.Contains(BlockFamilies, f) {
				bad("workflows[%d].block: unknown verdict family %q (want one of %v)", i, f, BlockFamilies)
			}
		}
		if a := w.Archive; a.Enabled && (a.MaxDepth < 1 || a.MaxFiles < 1 || a.MaxSize < 1 || a.MaxExpansion < 1 || a.Timeout <= 0) {
			bad("workflows[%d].archive: max_depth, max_files, max_size, max_expansion (>= 1) and timeout must be positive", i)
		}
	}
	if defaults > 1 {
		bad("workflows: more than one is marked default")
	}
	if defaults == 0 && len(c.Workflows) > 0 {
		c.Workflows[0].Default = true
	}
	c.validateRetention(bad)
	c.Presigned.validate(bad)
	return errors.Join(errs...)
}

// EngineNames are the engines a workflow may list, in the order they are reported.
var EngineNames = []string{"signatures", "hashlist", "clamav"}

// WebhookKey decodes a Standard Webhooks secret ("whsec_<base64>").
func WebhookKey(secret string) ([]byte, error) {
	b64, ok := strings.CutPrefix(secret, "whsec_")
	if !ok {
		return nil, errors.New(`must start with "whsec_"`)
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(key) < 16 {
		return nil, errors.New("want whsec_ followed by base64 of at least 16 random bytes")
	}
	return key, nil
}

func (a *AuthConfig) validate() []error {
	var errs []error
	bad := func(format string, v ...any) { errs = append(errs, fmt.Errorf(format, v...)) }
	if a.SessionTTL < time.Minute {
		bad("auth.session_ttl: want at least 1m, got %v", a.SessionTTL)
	}
	if a.ScanLimit < 0 {
		bad("auth.scan_limit: must not be negative (0: no limit)")
	}
	names := map[string]bool{}
	keys := map[string]bool{}
	for i, u := range a.Users {
		where := fmt.Sprintf("auth.users[%d]", i)
		switch {
		case u.Name == "":
			bad("%s.name: must not be empty", where)
		case u.Name == AnonymousUser:
			bad("%s.name: %q is reserved for requests without an apikey", where, u.Name)
		case len(u.Name) > 64 || strings.ContainsFunc(u.Name, func(r rune) bool { return r < 0x20 || r == 0x7f }):
			bad("%s.name: at most 64 bytes, no control characters", where)
		case names[u.Name]:
			bad("%s.name: %q appears twice", where, u.Name)
		}
		names[u.Name] = true
		if u.Role != RoleAdmin && u.Role != RoleUser {
			bad("%s.role: want admin or user, got %q", where, u.Role)
		}
		if u.PasswordHash != "" {
			if _, err := bcrypt.Cost([]byte(u.PasswordHash)); err != nil {
				bad("%s.password_hash: not a bcrypt hash (make one with `scangate passwd`): %v", where, err)
			}
		}
		for j, k := range u.APIKeys {
			switch {
			case len(k) < MinAPIKeyLength:
				bad("%s.apikeys[%d]: want at least %d characters", where, j, MinAPIKeyLength)
			case keys[k]:
				bad("%s.apikeys[%d]: the same key is configured twice", where, j)
			}
			keys[k] = true
		}
		if u.ScanLimit != nil && *u.ScanLimit < 0 {
			bad("%s.scan_limit: must not be negative (0: no limit)", where)
		}
	}
	return errs
}
