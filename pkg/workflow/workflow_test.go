package workflow

import (
	"errors"
	"strings"
	"testing"

	"github.com/scangate/scangate/pkg/config"
)

// testSet: "Default" is the default and mapped to no agent, "Mobile" is
// for two agents, "Strict" for one, "Archive" for none.
func testSet() *Set {
	return NewSet([]config.Workflow{
		{Name: "Strict", UserAgents: []string{"batch-client"}},
		{Name: "Default", Default: true},
		{Name: "Mobile", UserAgents: []string{"ios", "android"}},
		{Name: "Archive"},
	})
}

func TestSelect(t *testing.T) {
	tests := []struct {
		name, rule, userAgent string
		want                  string
		wantErr               error
	}{
		{"no rule, no agent: default", "", "", "Default", nil},
		{"blank rule: default", "   ", "", "Default", nil},
		{"rule", "Archive", "", "Archive", nil},
		{"rule with spaces", "  Archive ", "", "Archive", nil},
		{"rule wins over agent", "Archive", "ios", "Archive", nil},
		{"comma list: first wins", "Mobile,Strict", "", "Mobile", nil},
		{"comma list with spaces", "Strict , Archive", "", "Strict", nil},
		{"unknown rule", "Nope", "", "", ErrUnknownRule},
		{"unknown rule with agent", "Nope", "ios", "", ErrUnknownRule},
		{"comma list, later name unknown", "Strict,Nope", "", "", ErrUnknownRule},
		{"comma list, first name unknown", "Nope,Strict", "", "", ErrUnknownRule},
		{"empty name in list", "Strict,,Archive", "", "", ErrUnknownRule},
		{"trailing comma", "Strict,", "", "", ErrUnknownRule},
		{"names are case-sensitive", "strict", "", "", ErrUnknownRule},
		{"agent mapping", "", "android", "Mobile", nil},
		{"agent mapping, other workflow", "", "batch-client", "Strict", nil},
		{"unmapped agent: default", "", "curl/8.0", "Default", nil},
		{"agent must match exactly", "", "iOS", "Default", nil},
	}
	s := testSet()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := s.Select(tt.rule, tt.userAgent)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Select(%q, %q) = %v, %v; want error %v", tt.rule, tt.userAgent, w, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Select(%q, %q): %v", tt.rule, tt.userAgent, err)
			}
			if w.Name != tt.want {
				t.Errorf("Select(%q, %q) = %q, want %q", tt.rule, tt.userAgent, w.Name, tt.want)
			}
		})
	}
}

func TestErrUnknownRuleMessage(t *testing.T) {
	// API.md: 400 {"err":"Unknown rule."}; the handler sends the error text.
	if ErrUnknownRule.Error() != "Unknown rule." {
		t.Errorf("ErrUnknownRule = %q, want %q", ErrUnknownRule, "Unknown rule.")
	}
}

func TestSelectDefaultIsFirstWhenValidated(t *testing.T) {
	// config.Validate marks the first workflow default when none is.
	c := config.Default()
	c.Workflows = []config.Workflow{{Name: "A"}, {Name: "B"}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	w, err := NewSet(c.Workflows).Select("", "")
	if err != nil || w.Name != "A" {
		t.Errorf("Select = %v, %v; want A", w, err)
	}
}

func TestGet(t *testing.T) {
	s := testSet()
	w, ok := s.Get("Mobile")
	if !ok || w.Name != "Mobile" || len(w.UserAgents) != 2 {
		t.Errorf("Get(Mobile) = %+v, %v", w, ok)
	}
	if w, ok := s.Get("mobile"); ok {
		t.Errorf("Get(mobile) = %+v, want not found", w)
	}
}

func TestAvailable(t *testing.T) {
	tests := []struct {
		userAgent string
		want      string // names joined by |
	}{
		{"", "Strict|Default|Mobile|Archive"},
		{"ios", "Default|Mobile|Archive"},
		{"batch-client", "Strict|Default|Archive"},
		{"curl/8.0", "Default|Archive"},
	}
	s := testSet()
	for _, tt := range tests {
		var names []string
		for _, w := range s.Available(tt.userAgent) {
			names = append(names, w.Name)
		}
		if got := strings.Join(names, "|"); got != tt.want {
			t.Errorf("Available(%q) = %s, want %s", tt.userAgent, got, tt.want)
		}
	}
}
