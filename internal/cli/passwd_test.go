package cli_test

import (
	"bytes"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/scangate/scangate/internal/cli"
	"github.com/scangate/scangate/pkg/config"
)

// scangate passwd turns a password piped on stdin into a password_hash
// the config accepts and login checks.
func TestPasswd(t *testing.T) {
	var out, errb bytes.Buffer
	if code := cli.Run(testContext(t), []string{"passwd"}, strings.NewReader("s3cret pass\n"), &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	hash := strings.TrimSpace(out.String())
	if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte("s3cret pass")); err != nil {
		t.Errorf("the hash does not match the password: %v", err)
	}
	cfg := config.Default()
	cfg.Auth.Users = []config.User{{Name: "ops", Role: config.RoleAdmin, PasswordHash: hash}}
	if err := cfg.Validate(); err != nil {
		t.Errorf("the config refuses the hash: %v", err)
	}
	for _, in := range []string{"", "\n", strings.Repeat("x", 73) + "\n"} {
		out.Reset()
		if code := cli.Run(testContext(t), []string{"passwd"}, strings.NewReader(in), &out, &errb); code == 0 || out.Len() > 0 {
			t.Errorf("password %q: exit %d, printed %q", in, code, out.String())
		}
	}
}
