package engines

import (
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/result"
)

func writeList(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "bad-hashes.txt")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// hashesOf is what the scanner would pass for content.
func hashesOf(content string) events.Hashes {
	m, s1, s256 := md5.Sum([]byte(content)), sha1.Sum([]byte(content)), sha256.Sum256([]byte(content))
	return events.Hashes{
		MD5:    hex.EncodeToString(m[:]),
		SHA1:   hex.EncodeToString(s1[:]),
		SHA256: hex.EncodeToString(s256[:]),
		SHA512: strings.Repeat("0", 128),
	}
}

func TestHashList(t *testing.T) {
	byMD5, bySHA1, bySHA256 := hashesOf("listed by md5"), hashesOf("listed by sha1"), hashesOf("listed by sha256")
	upper := hashesOf("listed in upper case")
	path := writeList(t, fmt.Sprintf(`# known-bad hashes

%s Trojan.ByMD5
   # an indented comment
%s	Worm.BySHA1
%s Ransom.BySHA256 (variant B)
%s Upper.Case
`, byMD5.MD5, bySHA1.SHA1, bySHA256.SHA256, strings.ToUpper(upper.SHA256)))

	h, err := LoadHashList(path)
	if err != nil {
		t.Fatalf("LoadHashList: %v", err)
	}
	if h.Len() != 4 {
		t.Errorf("Len() = %d, want 4", h.Len())
	}

	tests := []struct {
		name   string
		hashes events.Hashes
		code   int
		threat string
	}{
		{"md5", byMD5, result.Infected, "Trojan.ByMD5"},
		{"sha1 (tab separated)", bySHA1, result.Infected, "Worm.BySHA1"},
		{"sha256, name with spaces", bySHA256, result.Infected, "Ransom.BySHA256 (variant B)"},
		{"listed in upper case", upper, result.Infected, "Upper.Case"},
		{"not listed", hashesOf("a clean file"), result.NoThreat, ""},
		{"no hashes", events.Hashes{}, result.NoThreat, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := h.ScanHashes(context.Background(), &Input{Hashes: tt.hashes})
			if err != nil {
				t.Fatalf("ScanHashes: %v", err)
			}
			if f.Code != tt.code || f.Threat != tt.threat {
				t.Errorf("ScanHashes = %+v, want code %d threat %q", f, tt.code, tt.threat)
			}
		})
	}
}

func TestHashListPrefersStrongestHash(t *testing.T) {
	x := hashesOf("on the list twice")
	h, err := LoadHashList(writeList(t, x.MD5+" Old.Name\n"+x.SHA256+" New.Name\n"))
	if err != nil {
		t.Fatal(err)
	}
	f, _ := h.ScanHashes(context.Background(), &Input{Hashes: x})
	if f.Threat != "New.Name" {
		t.Errorf("threat = %q, want the sha256 entry's New.Name", f.Threat)
	}
}

func TestHashListInfo(t *testing.T) {
	path := writeList(t, "")
	mtime := time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	h, err := LoadHashList(path)
	if err != nil {
		t.Fatalf("LoadHashList of an empty list: %v", err)
	}
	if h.Len() != 0 {
		t.Errorf("Len() = %d, want 0", h.Len())
	}
	if got := h.Info().DefTime; got != "2026-02-03T04:05:06.000Z" {
		t.Errorf("def_time = %q, want the list's modification time", got)
	}
}

func TestHashListMalformed(t *testing.T) {
	md5Hex := strings.Repeat("a", 32)
	tests := []struct {
		name string
		body string
		line int
	}{
		{"bad hex", "# ok\n" + strings.Repeat("z", 32) + " Bad.Hex\n", 2},
		{"sha512", md5Hex + " Fine\n\n" + strings.Repeat("b", 128) + " Too.Long\n", 3},
		{"odd length", strings.Repeat("c", 33) + " Odd\n", 1},
		{"missing name", md5Hex + " Fine\n" + md5Hex + "\n", 2},
		{"missing name, trailing space", md5Hex + "   \n", 1},
		{"name only", "Trojan.Generic\n", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeList(t, tt.body)
			h, err := LoadHashList(path)
			if err == nil {
				t.Fatalf("LoadHashList accepted %q (%d entries)", tt.body, h.Len())
			}
			want := fmt.Sprintf("%s:%d", path, tt.line)
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not name %s", err, want)
			}
		})
	}
}

func TestHashListMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.txt")
	if _, err := LoadHashList(path); err == nil || !strings.Contains(err.Error(), "nope.txt") {
		t.Fatalf("LoadHashList of a missing file = %v, want an error naming it", err)
	}
}

var _ HashEngine = (*HashList)(nil)
