package config

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// writeConfig writes body to a config file in a fresh temp dir and returns its path.
func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "scangate.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// load is Load(path) that fails the test on error.
func load(t *testing.T, path string) *Config {
	t.Helper()
	c, err := Load(path)
	if err != nil {
		t.Fatalf("Load(%q): %v", path, err)
	}
	return c
}

// validConfig is the built-in configuration, for Validate cases to spoil.
func validConfig(t *testing.T) *Config {
	t.Helper()
	c := load(t, "")
	if err := c.Validate(); err != nil {
		t.Fatalf("built-in defaults do not validate: %v", err)
	}
	return c
}

func TestDefaultsLoadAndValidate(t *testing.T) {
	c := load(t, "")
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"listen", c.Listen, "127.0.0.1:8008"},
		{"data_dir", c.DataDir, "./data"},
		{"log.level", c.Log.Level, "info"},
		{"log.format", c.Log.Format, "json"},
		{"nats.sync", c.NATS.Sync, "always"},
		{"nats.replicas", c.NATS.Replicas, 1},
		{"blob.store", c.Blob.Store, "fs"},
		{"limits.disk_reserve", c.Limits.DiskReserve, ByteSize(256 << 20)},
		{"limits.max_connections", c.Limits.MaxConnections, 10000},
		{"limits.max_queued", c.Limits.MaxQueued, int64(10000)},
		{"limits.max_queue_wait", c.Limits.MaxQueueWait, 10 * time.Second},
		{"scanner.timeout", c.Scanner.Timeout, 10 * time.Minute},
		{"presigned.key", c.Presigned.Key, ""},
		{"presigned.url_ttl", c.Presigned.URLTTL, time.Hour},
		{"presigned.min_part_size", c.Presigned.MinPartSize, ByteSize(5 << 20)},
		{"presigned.max_parts", c.Presigned.MaxParts, 1000},
		{"scanner.memory_budget", c.Scanner.MemoryBudget, ByteSize(256 << 20)},
		{"webhooks.allow_private_targets", c.Webhooks.AllowPrivateTargets, false},
		{"webhooks.secret", c.Webhooks.Secret, ""},
		{"webhooks.max_attempts", c.Webhooks.MaxAttempts, 10},
		{"webhooks.timeout", c.Webhooks.Timeout, 30 * time.Second},
		{"webhooks.retry.initial_interval", c.Webhooks.Retry.InitialInterval, 5 * time.Second},
		{"webhooks.retry.max_interval", c.Webhooks.Retry.MaxInterval, time.Hour},
		{"len(workflows)", len(c.Workflows), 1},
		{"sources.filepath.allowed_dirs", len(c.Sources.FilePath.AllowedDirs), 0},
		{"sources.downloadfrom.enabled", c.Sources.DownloadFrom.Enabled, false},
		{"sources.downloadfrom.allow_private_targets", c.Sources.DownloadFrom.AllowPrivateTargets, false},
		{"sources.downloadfrom.max_size", c.Sources.DownloadFrom.MaxSize, ByteSize(1 << 30)},
		{"sources.downloadfrom.connect_timeout", c.Sources.DownloadFrom.ConnectTimeout, 10 * time.Second},
		{"sources.downloadfrom.timeout", c.Sources.DownloadFrom.Timeout, 5 * time.Minute},
		{"sources.downloadfrom.max_redirects", c.Sources.DownloadFrom.MaxRedirects, 5},
		{"sources.downloadfrom.max_concurrent", c.Sources.DownloadFrom.MaxConcurrent, 4},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %v, want %v", ck.name, ck.got, ck.want)
		}
	}
	if len(c.Workflows) != 1 {
		t.FailNow()
	}
	w := c.Workflows[0]
	if w.Name != "File process" || !w.Default {
		t.Errorf("workflow = %q default=%v, want \"File process\" default=true", w.Name, w.Default)
	}
	if !w.Multipart.Enabled || w.Multipart.TTL != 60*time.Minute {
		t.Errorf("multipart = %+v, want enabled with ttl 60m", w.Multipart)
	}
	if w.MaxFileSize != 0 || len(w.Engines) != 0 {
		t.Errorf("max_file_size=%d engines=%v, want unlimited and every engine", w.MaxFileSize, w.Engines)
	}
	if always, _, err := c.NATS.SyncInterval(); err != nil || !always {
		t.Errorf("SyncInterval() = always %v, err %v; want always", always, err)
	}
}

func TestDefaultMatchesLoad(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("Default() does not validate: %v", err)
	}
	if c.Listen != "127.0.0.1:8008" || len(c.Workflows) != 1 {
		t.Errorf("Default() = listen %q, %d workflows; want the built-in file", c.Listen, len(c.Workflows))
	}
}

func TestUserFileOverridesOnlyWhatItSets(t *testing.T) {
	c := load(t, writeConfig(t, `
listen: 0.0.0.0:9000
webhooks:
  max_attempts: 3
  retry:
    initial_interval: 2s
`))
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if c.Listen != "0.0.0.0:9000" {
		t.Errorf("listen = %q, want the file's 0.0.0.0:9000", c.Listen)
	}
	if c.Webhooks.MaxAttempts != 3 || c.Webhooks.Retry.InitialInterval != 2*time.Second {
		t.Errorf("webhooks = %+v, want max_attempts 3 and initial_interval 2s", c.Webhooks)
	}
	// Siblings of overridden keys keep their defaults.
	if c.Webhooks.Timeout != 30*time.Second || c.Webhooks.Retry.MaxInterval != time.Hour {
		t.Errorf("webhooks.timeout=%v retry.max_interval=%v, want defaults 30s and 1h",
			c.Webhooks.Timeout, c.Webhooks.Retry.MaxInterval)
	}
	if c.DataDir != "./data" || c.Log.Level != "info" || c.Limits.DiskReserve != 256<<20 {
		t.Errorf("untouched keys changed: data_dir=%q log.level=%q disk_reserve=%d", c.DataDir, c.Log.Level, c.Limits.DiskReserve)
	}
	if len(c.Workflows) != 1 || c.Workflows[0].Name != "File process" {
		t.Errorf("workflows = %+v, want the default list kept", c.Workflows)
	}
}

func TestEmptyUserFileChangesNothing(t *testing.T) {
	c := load(t, writeConfig(t, "# nothing set\n"))
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if c.Listen != "127.0.0.1:8008" || len(c.Workflows) != 1 {
		t.Errorf("got listen %q and %d workflows, want defaults", c.Listen, len(c.Workflows))
	}
}

func TestUserWorkflowsReplaceDefaultList(t *testing.T) {
	c := load(t, writeConfig(t, `
workflows:
  - name: Strict
    engines: [signatures, hashlist]
    max_file_size: 10MiB
  - name: Quick
    default: true
    user_agents: [mobile]
    engines: [signatures]
`))
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	var names []string
	for _, w := range c.Workflows {
		names = append(names, w.Name)
	}
	if strings.Join(names, "|") != "Strict|Quick" {
		t.Fatalf("workflows = %v, want exactly [Strict Quick] (the default list replaced)", names)
	}
	if c.Workflows[0].Default || !c.Workflows[1].Default {
		t.Errorf("default flags = %v,%v; want only Quick", c.Workflows[0].Default, c.Workflows[1].Default)
	}
	if c.Workflows[0].MaxFileSize != 10<<20 {
		t.Errorf("Strict max_file_size = %d, want %d", c.Workflows[0].MaxFileSize, 10<<20)
	}
	if got := c.Workflows[1].UserAgents; len(got) != 1 || got[0] != "mobile" {
		t.Errorf("Quick user_agents = %v, want [mobile]", got)
	}
}

func TestLoadErrorsNameTheLine(t *testing.T) {
	tests := []struct {
		name, body string
		want       []string // substrings of the error
	}{
		{
			name: "unknown top-level key",
			body: "listen: 127.0.0.1:8008\ndata_dir: /tmp\nlisten_addr: x\n",
			want: []string{"line 3", "listen_addr"},
		},
		{
			name: "unknown nested key",
			body: "webhooks:\n  max_attempts: 3\n  retries: 4\n",
			want: []string{"line 3", "retries"},
		},
		{
			name: "unknown key in a workflow",
			body: "workflows:\n  - name: A\n    engine: [signatures]\n",
			want: []string{"line 3", "engine"},
		},
		{
			name: "string for an int",
			body: "# webhooks\nwebhooks: {max_attempts: \"x\"}\n",
			want: []string{"line 2"},
		},
		{
			name: "bare number for a duration",
			body: "log:\n  level: info\nscanner:\n  timeout: 30\n",
			want: []string{"line 4"},
		},
		{
			name: "bad size",
			body: "limits:\n  disk_reserve: lots\n",
			want: []string{"line 2", "lots"},
		},
		{
			name: "negative size",
			body: "\n\nlimits:\n  disk_reserve: -1\n",
			want: []string{"line 4", "negative"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, tt.body)
			_, err := Load(path)
			if err == nil {
				t.Fatalf("Load accepted:\n%s", tt.body)
			}
			for _, w := range append(tt.want, path) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "nope.yaml")); err == nil {
		t.Fatal("Load of a missing file succeeded")
	}
}

func TestEnvOverrides(t *testing.T) {
	t.Setenv("SCANGATE_LISTEN", "0.0.0.0:9999")
	t.Setenv("SCANGATE_WEBHOOKS_MAX_ATTEMPTS", "3")
	t.Setenv("SCANGATE_WEBHOOKS_RETRY_INITIAL_INTERVAL", "2s")
	t.Setenv("SCANGATE_LIMITS_DISK_RESERVE", "1GiB")
	t.Setenv("SCANGATE_WEBHOOKS_ALLOW_PRIVATE_TARGETS", "true")
	t.Setenv("SCANGATE_LOG_LEVEL", "debug")
	t.Setenv("SCANGATE_SCANNER_MEMORY_BUDGET", "64MiB")
	t.Setenv("SCANGATE_LIMITS_MAX_QUEUE_WAIT", "0s")

	c := load(t, "")
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"listen", c.Listen, "0.0.0.0:9999"},
		{"webhooks.max_attempts", c.Webhooks.MaxAttempts, 3},
		{"webhooks.retry.initial_interval", c.Webhooks.Retry.InitialInterval, 2 * time.Second},
		{"limits.disk_reserve", c.Limits.DiskReserve, ByteSize(1 << 30)},
		{"webhooks.allow_private_targets", c.Webhooks.AllowPrivateTargets, true},
		{"log.level", c.Log.Level, "debug"},
		{"scanner.memory_budget", c.Scanner.MemoryBudget, ByteSize(64 << 20)},
		{"limits.max_queue_wait", c.Limits.MaxQueueWait, time.Duration(0)},
		// Not set in the environment: unchanged.
		{"webhooks.retry.max_interval", c.Webhooks.Retry.MaxInterval, time.Hour},
		{"data_dir", c.DataDir, "./data"},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %v, want %v", ck.name, ck.got, ck.want)
		}
	}
}

func TestEnvOverridesFile(t *testing.T) {
	t.Setenv("SCANGATE_WEBHOOKS_MAX_ATTEMPTS", "7")
	c := load(t, writeConfig(t, "webhooks:\n  max_attempts: 3\n  timeout: 5s\n"))
	if c.Webhooks.MaxAttempts != 7 {
		t.Errorf("max_attempts = %d, want the environment's 7 over the file's 3", c.Webhooks.MaxAttempts)
	}
	if c.Webhooks.Timeout != 5*time.Second {
		t.Errorf("timeout = %v, want the file's 5s", c.Webhooks.Timeout)
	}
}

func TestEnvStringStaysString(t *testing.T) {
	// YAML would read these as a number, a bool and null; a string field
	// must take them literally.
	for _, v := range []string{"8008", "true", "null", "~"} {
		t.Run(v, func(t *testing.T) {
			t.Setenv("SCANGATE_DATA_DIR", v)
			c := load(t, "")
			if c.DataDir != v {
				t.Errorf("data_dir = %q, want %q", c.DataDir, v)
			}
		})
	}
}

func TestEnvBadValue(t *testing.T) {
	tests := []struct{ name, value string }{
		{"SCANGATE_WEBHOOKS_MAX_ATTEMPTS", "x"},
		{"SCANGATE_WEBHOOKS_RETRY_INITIAL_INTERVAL", "soon"},
		{"SCANGATE_LIMITS_DISK_RESERVE", "-1"},
		{"SCANGATE_WEBHOOKS_ALLOW_PRIVATE_TARGETS", "maybe"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(tt.name, tt.value)
			_, err := Load("")
			if err == nil {
				t.Fatalf("Load accepted %s=%q", tt.name, tt.value)
			}
			if !strings.Contains(err.Error(), tt.name) {
				t.Errorf("error %q does not name the variable %s", err, tt.name)
			}
		})
	}
}

func TestByteSize(t *testing.T) {
	tests := []struct {
		yaml    string
		want    ByteSize
		wantErr bool
	}{
		{"1GiB", 1 << 30, false},
		{"512MiB", 512 << 20, false},
		{"10 MB", 10_000_000, false},
		{"1024", 1024, false},
		{"0", 0, false},
		{"-1", 0, true},
		{"-5MiB", 0, true},
		{"lots", 0, true},
		{`""`, 0, true},
		{"7EiB", 7 << 60, false},
	}
	for _, tt := range tests {
		t.Run(tt.yaml, func(t *testing.T) {
			var v struct {
				Size ByteSize `yaml:"size"`
			}
			err := yaml.Unmarshal([]byte("size: "+tt.yaml), &v)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("accepted %s as %d", tt.yaml, v.Size)
				}
				return
			}
			if err != nil {
				t.Fatalf("error: %v", err)
			}
			if v.Size != tt.want {
				t.Errorf("got %d, want %d", v.Size, tt.want)
			}
		})
	}
}

// BUG (config.go:129-133): a size above math.MaxInt64 passes
// humanize.ParseBytes (it is below MaxUint64) and is converted to a negative
// ByteSize, so `disk_reserve: 8EiB` silently disables the disk reserve and
// `max_file_size: 8EiB` reads as "unlimited". It should be refused like any
// other negative size.
func TestByteSizeTooLargeIsRefused(t *testing.T) {
	for _, in := range []string{"8EiB", "10EiB", "9223372036854775808"} {
		var v struct {
			Size ByteSize `yaml:"size"`
		}
		if err := yaml.Unmarshal([]byte("size: "+in), &v); err == nil {
			t.Errorf("accepted %s as %d; want an error (larger than an int64)", in, v.Size)
		}
	}
}

func TestValidateErrors(t *testing.T) {
	tests := []struct {
		name  string
		spoil func(c *Config)
		want  string // substring of the error
	}{
		{"secret without whsec_", func(c *Config) {
			c.Webhooks.Secret = base64.StdEncoding.EncodeToString(make([]byte, 32))
		}, "webhooks.secret"},
		{"secret not base64", func(c *Config) { c.Webhooks.Secret = "whsec_not*base64!" }, "webhooks.secret"},
		{"secret too short", func(c *Config) {
			c.Webhooks.Secret = "whsec_" + base64.StdEncoding.EncodeToString([]byte("short"))
		}, "webhooks.secret"},
		{"max_attempts 0", func(c *Config) { c.Webhooks.MaxAttempts = 0 }, "webhooks.max_attempts"},
		{"max_connections 0", func(c *Config) { c.Limits.MaxConnections = 0 }, "limits.max_connections"},
		{"max_queue_wait negative", func(c *Config) { c.Limits.MaxQueueWait = -time.Second }, "limits.max_queue_wait"},
		{"max_queue_wait below a second", func(c *Config) { c.Limits.MaxQueueWait = 100 * time.Millisecond }, "limits.max_queue_wait"},
		{"retry initial above max", func(c *Config) {
			c.Webhooks.Retry.InitialInterval = 2 * time.Hour
		}, "webhooks.retry"},
		{"bad listen", func(c *Config) { c.Listen = "8008" }, "listen"},
		{"bad ops listen", func(c *Config) { c.Ops.Listen = "9090" }, "ops.listen"},
		{"unknown log level", func(c *Config) { c.Log.Level = "loud" }, "log.level"},
		{"bad nats sync", func(c *Config) { c.NATS.Sync = "sometimes" }, "nats.sync"},
		{"no workflows", func(c *Config) { c.Workflows = nil }, "workflows"},
		{"two default workflows", func(c *Config) {
			c.Workflows = append(c.Workflows, Workflow{Name: "Other", Default: true})
		}, "more than one"},
		{"duplicate names", func(c *Config) {
			c.Workflows = append(c.Workflows, Workflow{Name: "File process"})
		}, "used twice"},
		{"comma in name", func(c *Config) {
			c.Workflows = append(c.Workflows, Workflow{Name: "a,b"})
		}, "comma"},
		{"empty name", func(c *Config) {
			c.Workflows = append(c.Workflows, Workflow{Name: "  "})
		}, "workflows[1].name"},
		{"unknown engine", func(c *Config) {
			c.Workflows[0].Engines = []string{"signatures", "mcafee"}
		}, `"mcafee"`},
		{"multipart without ttl", func(c *Config) {
			c.Workflows[0].Multipart.TTL = 0
		}, "multipart.ttl"},
		{"memory budget 0", func(c *Config) { c.Scanner.MemoryBudget = 0 }, "scanner.memory_budget"},
		{"memory budget in KiB", func(c *Config) { c.Scanner.MemoryBudget = 256 << 10 }, "scanner.memory_budget"},
		{"relative allowed dir", func(c *Config) { c.Sources.FilePath.AllowedDirs = []string{"scans"} }, "sources.filepath.allowed_dirs[0]"},
		{"root as allowed dir", func(c *Config) { c.Sources.FilePath.AllowedDirs = []string{"/srv", "//"} }, "sources.filepath.allowed_dirs[1]"},
		{"download timeout 0", func(c *Config) { c.Sources.DownloadFrom.Timeout = 0 }, "sources.downloadfrom"},
		{"download max_size 0", func(c *Config) { c.Sources.DownloadFrom.MaxSize = 0 }, "sources.downloadfrom.max_size"},
		{"download redirects negative", func(c *Config) { c.Sources.DownloadFrom.MaxRedirects = -1 }, "sources.downloadfrom.max_redirects"},
		{"download max_concurrent 0", func(c *Config) { c.Sources.DownloadFrom.MaxConcurrent = 0 }, "sources.downloadfrom.max_concurrent"},
		{"presigned key too short", func(c *Config) { c.Presigned.Key = "short" }, "presigned.key"},
		{"presigned url_ttl 0", func(c *Config) { c.Presigned.URLTTL = 0 }, "presigned.url_ttl"},
		{"presigned max_parts too many", func(c *Config) { c.Presigned.MaxParts = 10000 }, "presigned.max_parts"},
		{"presigned min_part_size 0", func(c *Config) { c.Presigned.MinPartSize = 0 }, "presigned.min_part_size"},
		{"presigned base_url with a query", func(c *Config) { c.Presigned.BaseURL = "https://x.example/?a=1" }, "presigned.base_url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig(t)
			tt.spoil(c)
			err := c.Validate()
			if err == nil {
				t.Fatal("Validate accepted the config")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := validConfig(t)
	c.Webhooks.MaxAttempts = 0
	c.Log.Format = "xml"
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate accepted the config")
	}
	for _, w := range []string{"webhooks.max_attempts", "log.format"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}

func TestValidateAcceptsGoodSecret(t *testing.T) {
	c := validConfig(t)
	c.Webhooks.Secret = "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123"))
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
}

func TestValidateMarksFirstWorkflowDefault(t *testing.T) {
	c := load(t, writeConfig(t, `
workflows:
  - name: First
  - name: Second
`))
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if !c.Workflows[0].Default || c.Workflows[1].Default {
		t.Errorf("default flags = %v,%v; want First only", c.Workflows[0].Default, c.Workflows[1].Default)
	}
}

func TestWebhookKeyRoundTrip(t *testing.T) {
	key := []byte("a 24-byte signing key!!!")
	got, err := WebhookKey("whsec_" + base64.StdEncoding.EncodeToString(key))
	if err != nil {
		t.Fatalf("WebhookKey: %v", err)
	}
	if string(got) != string(key) {
		t.Errorf("WebhookKey = %q, want %q", got, key)
	}

	for _, bad := range []string{
		"",
		"whsec_",
		base64.StdEncoding.EncodeToString(key), // no prefix
		"WHSEC_" + base64.StdEncoding.EncodeToString(key), // prefix is case-sensitive
		"whsec_%%%%",
		"whsec_" + base64.StdEncoding.EncodeToString(key[:15]), // under 16 bytes
	} {
		if k, err := WebhookKey(bad); err == nil {
			t.Errorf("WebhookKey(%q) = %q, want an error", bad, k)
		}
	}
}

func TestSyncInterval(t *testing.T) {
	tests := []struct {
		sync    string
		always  bool
		every   time.Duration
		wantErr bool
	}{
		{"always", true, 0, false},
		{"2m", false, 2 * time.Minute, false},
		{"0s", false, 0, true},
		{"-1s", false, 0, true},
		{"never", false, 0, true},
		{"", false, 0, true},
	}
	for _, tt := range tests {
		always, every, err := NATSConfig{Sync: tt.sync}.SyncInterval()
		if (err != nil) != tt.wantErr || always != tt.always || every != tt.every {
			t.Errorf("SyncInterval(%q) = %v, %v, %v; want %v, %v, err=%v",
				tt.sync, always, every, err, tt.always, tt.every, tt.wantErr)
		}
	}
}

func TestAuthValidation(t *testing.T) {
	neg := -1
	for _, c := range []struct {
		users []User
		want  string
	}{
		{[]User{{Name: "", Role: RoleUser}}, "name: must not be empty"},
		{[]User{{Name: AnonymousUser, Role: RoleUser}}, "reserved"},
		{[]User{{Name: "a", Role: RoleUser}, {Name: "a", Role: RoleUser}}, "appears twice"},
		{[]User{{Name: "a", Role: "root"}}, "want admin or user"},
		{[]User{{Name: "a", Role: RoleUser, PasswordHash: "plaintext"}}, "not a bcrypt hash"},
		{[]User{{Name: "a", Role: RoleUser, APIKeys: []string{"short"}}}, "at least 16"},
		{[]User{{Name: "a", Role: RoleUser, APIKeys: []string{"0123456789abcdef"}}, {Name: "b", Role: RoleUser, APIKeys: []string{"0123456789abcdef"}}}, "configured twice"},
		{[]User{{Name: "a", Role: RoleUser, ScanLimit: &neg}}, "scan_limit"},
	} {
		cfg := Default()
		cfg.Auth.Users = c.users
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("users %+v: %v, want %q", c.users, err, c.want)
		}
	}
	cfg := Default()
	cfg.Auth.SessionTTL = time.Second
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "auth.session_ttl") {
		t.Errorf("session_ttl 1s: %v", err)
	}
}

// Allowed directories are cleaned, so a trailing slash changes nothing;
// the download size limit is the workflow's when it has one.
func TestSources(t *testing.T) {
	c := validConfig(t)
	c.Sources.FilePath.AllowedDirs = []string{"/srv/scans/", "/data//in"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := c.Sources.FilePath.AllowedDirs; got[0] != "/srv/scans" || got[1] != "/data/in" {
		t.Errorf("allowed_dirs %v, want them cleaned", got)
	}
	dl := c.Sources.DownloadFrom
	if dl.Limit(0) != 1<<30 || dl.Limit(10<<20) != 10<<20 {
		t.Errorf("Limit(0) = %d, Limit(10MiB) = %d; want max_size, then the workflow's", dl.Limit(0), dl.Limit(10<<20))
	}
}
