package client_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"testing"

	"github.com/scangate/scangate/internal/node"
	"github.com/scangate/scangate/pkg/auth"
	"github.com/scangate/scangate/pkg/config"
)

// scangateURL is the node the examples and tests talk to. A program uses
// its own server's address, e.g. client.DefaultServer
// (http://127.0.0.1:8008, where `scangate serve` listens).
var scangateURL string

// The test user TestMain configures (anonymous requests stay allowed).
const (
	testUser     = "alice"
	testPassword = "secret"
)

// TestMain runs one real scangate node, every role in this process, for
// the whole package: the examples run against it.
func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "scangate-client-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	cfg := config.Default()
	cfg.DataDir = dir
	cfg.Listen = "127.0.0.1:0"
	cfg.Log.Level = "error"
	cfg.Limits.DiskReserve = 1 << 20
	hash, err := auth.HashPassword(testPassword)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cfg.Auth.Users = []config.User{{Name: testUser, Role: config.RoleUser, PasswordHash: hash}}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	n, err := node.Start(context.Background(), cfg, node.All, "test", io.Discard)
	if err != nil {
		fmt.Fprintln(os.Stderr, "start scangate:", err)
		return 1
	}
	defer n.Close()
	scangateURL = n.URL("")
	return m.Run()
}
