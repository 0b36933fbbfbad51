package config

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestRetentionDefaults(t *testing.T) {
	c := validConfig(t)
	want := RetentionConfig{Results: 168 * time.Hour, Webhooks: 168 * time.Hour, Originals: 24 * time.Hour, Sanitized: 24 * time.Hour}
	if c.Retention != want {
		t.Errorf("retention = %+v, want %+v", c.Retention, want)
	}
	if d := c.Webhooks.LongestDelivery(); d != 9*time.Hour+5*time.Minute {
		t.Errorf("LongestDelivery() = %v, want 9h5m (what the default file says)", d)
	}
}

func TestRetentionFromFileAndEnv(t *testing.T) {
	t.Setenv("SCANGATE_RETENTION_SANITIZED", "2h")
	c := load(t, writeConfig(t, "retention:\n  originals: 36h\n"))
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Retention.Originals != 36*time.Hour || c.Retention.Sanitized != 2*time.Hour || c.Retention.Results != 168*time.Hour {
		t.Errorf("retention = %+v, want originals 36h from the file, sanitized 2h from the environment, results 168h", c.Retention)
	}
}

func TestRetentionValidation(t *testing.T) {
	tests := []struct {
		name  string
		spoil func(c *Config)
		want  []string // substrings of the error; nil: valid
	}{
		{"zero results", func(c *Config) { c.Retention.Results = 0 }, []string{"retention.results: want at least 1s"}},
		{"negative sanitized", func(c *Config) { c.Retention.Sanitized = -time.Hour }, []string{"retention.sanitized: want at least 1s"}},
		{"below a second", func(c *Config) { c.Retention.Webhooks = 500 * time.Millisecond }, []string{"retention.webhooks"}},
		{"originals within an upload and a scan", func(c *Config) { c.Retention.Originals = 70 * time.Minute }, []string{
			"retention.originals: 1h10m0s is too short",
			"workflows[0].multipart.ttl, 1h0m0s", "scanner.timeout (10m0s)",
			"so a file still uploading or waiting to be scanned never loses its bytes", "want more than 1h10m0s",
		}},
		{"originals just past an upload and a scan", func(c *Config) { c.Retention.Originals = 70*time.Minute + time.Second }, nil},
		{"the longest workflow counts", func(c *Config) {
			c.Workflows = append(c.Workflows, Workflow{Name: "slow", Multipart: MultipartConfig{Enabled: true, TTL: 30 * time.Hour}})
		}, []string{"retention.originals", "workflows[1].multipart.ttl, 30h0m0s"}},
		{"chunked uploads live an hour without a multipart ttl", func(c *Config) {
			c.Workflows[0].Multipart = MultipartConfig{}
			c.Scanner.Timeout = time.Minute
			c.Retention.Originals = time.Hour
		}, []string{"retention.originals: 1h0m0s is too short", "want more than 1h1m0s"}},
		{"results within an upload session", func(c *Config) { c.Retention.Results = time.Hour }, []string{
			"retention.results: 1h0m0s is too short: an upload session's status", "want more than 1h0m0s",
		}},
		{"results shorter than webhook retries", func(c *Config) { c.Retention.Results = 8 * time.Hour }, []string{
			"retention.results: 8h0m0s is too short: a webhook delivery reads", "want at least 9h5m0s",
		}},
		{"webhooks shorter than their retries", func(c *Config) { c.Retention.Webhooks = 2 * time.Hour }, []string{
			"retention.webhooks: 2h0m0s is too short", "want at least 9h5m0s",
		}},
		{"tiny retentions with tiny timeouts", func(c *Config) {
			c.Workflows[0].Multipart.TTL = time.Second
			c.Scanner.Timeout = time.Second
			c.Webhooks.MaxAttempts, c.Webhooks.Timeout = 1, time.Second
			c.Retention = RetentionConfig{Results: 2 * time.Second, Webhooks: time.Second, Originals: 3 * time.Second, Sanitized: time.Second}
		}, nil},
		{"huge retry budget saturates", func(c *Config) { c.Webhooks.MaxAttempts = math.MaxInt }, []string{"retention.webhooks", "retention.results"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig(t)
			tt.spoil(c)
			err := c.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate accepted the config")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}
